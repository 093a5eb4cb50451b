"""Operators' files under config/: loaded, validated, and refused with file, line and reason.

Each file is YAML with a `version:` key, checked by a typed model that forbids unknown keys.
Every problem in every file is collected into one ConfigError; nothing here exits the process.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from router.core.envelope import Channel, Urgency
from router.operator_files.expression import Expression, ExpressionError

CATEGORIES = (
    "unauthorized_transaction",
    "transaction_failed",
    "password_reset",
    "account_security",
    "multi_device",
    "data_loss",
    "general",
)
LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- classifier.yaml -------------------------------------------------------------------------


class Bilingual(_Strict):
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.zh, *self.en]


def _compile_all(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
    return patterns


class CategoryRules(_Strict):
    description: str = ""
    urgency: Urgency
    keywords: Bilingual = Bilingual()
    patterns: list[str] = Field(default_factory=list)
    negative_patterns: list[str] = Field(default_factory=list)
    examples: Bilingual = Bilingual()

    _check_patterns = field_validator("patterns", "negative_patterns")(_compile_all)


class UrgencyRule(_Strict):
    """Sets the urgency of the listed categories when its keywords or patterns match.

    A rule raises by default; `lowers: true` lets it set a lower urgency than the category's
    own (never for unauthorized_transaction). `urgent_lane: true` makes it part of the gateway's
    pre-screen, whatever the category turns out to be.
    """

    name: str
    categories: list[Category]
    urgency: Urgency
    lowers: bool = False
    urgent_lane: bool = False
    keywords: Bilingual = Bilingual()
    patterns: list[str] = Field(default_factory=list)
    negative_patterns: list[str] = Field(default_factory=list)

    _check_patterns = field_validator("patterns", "negative_patterns")(_compile_all)

    @model_validator(mode="after")
    def _fraud_never_lowered(self) -> UrgencyRule:
        if self.lowers and "unauthorized_transaction" in self.categories:
            raise ValueError("a rule may not lower the urgency of unauthorized_transaction")
        return self


Category = Literal[CATEGORIES]  # type: ignore[valid-type]


class ModelSettings(_Strict):
    """How the model trained from the examples and the rules are weighed together."""

    regularization: float = Field(
        default=8.0, gt=0
    )  # LogisticRegression C: higher fits the examples closer
    rule_weight: float = Field(
        default=1.5, ge=0
    )  # log-odds each rule that fired adds to its category
    fraud_rule_weight: float | None = Field(
        default=None, ge=0
    )  # the same for unauthorized_transaction (default: rule_weight)
    max_rule_hits: int = Field(default=3, ge=1)
    fraud_floor: float = Field(
        default=0.35, gt=0, le=1
    )  # model probability that alone makes it fraud


class ClassifierConfig(_Strict):
    version: int
    fallback_category: Category = "general"
    triage_below_confidence: float = Field(default=0.5, ge=0, le=1)
    triage_queue: str | None = "triage"
    model: ModelSettings = ModelSettings()
    categories: dict[Category, CategoryRules]
    urgency_rules: list[UrgencyRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _enough_to_learn_from(self) -> ClassifierConfig:
        taught = [name for name, rules in self.categories.items() if rules.examples.all()]
        if len(taught) < 2:
            raise ValueError("examples are needed for at least two categories to train the model")
        if self.fallback_category not in self.categories:
            raise ValueError(
                f"fallback_category {self.fallback_category!r} is not among the categories"
            )
        return self


# --- routing.yaml ----------------------------------------------------------------------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHANNELS = tuple(Channel)
Day = Literal[DAYS]  # type: ignore[valid-type]
Language = Literal[LANGUAGES]  # type: ignore[valid-type]
_INTERVAL = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-(([01]\d|2[0-3]):([0-5]\d)|24:00)$")


def _custom(reason: str) -> PydanticCustomError:
    # A reason without pydantic's "Value error, " prefix: operators read these.
    return PydanticCustomError("config", reason)


class BusinessHours(_Strict):
    """When a queue is staffed, in its own time zone. No `weekly`: open around the clock."""

    timezone: str = "UTC"
    weekly: dict[Day, list[str]] | None = None  # a day left out is closed
    closed_on: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _custom(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from None
        return value

    @field_validator("weekly")
    @classmethod
    def _intervals(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for day, spans in (value or {}).items():
            for span in spans:
                match = _INTERVAL.match(span)
                if not match or span[:5] >= span[6:]:
                    raise _custom(f"{day}: {span!r} is not an opening time like 09:00-18:00")
        if value is not None and not any(value.values()):
            raise _custom("these hours are never open: give at least one day an opening time")
        return value


class Queue(_Strict):
    description: str = ""
    first_response_sla_seconds: int = Field(gt=0)
    skills: list[str] = Field(default_factory=list)  # an agent needs every one of them
    languages: list[Language] = Field(default_factory=lambda: list(LANGUAGES))
    hours: str | None = None  # a name under business_hours; none: always open
    overflow: str | None = (
        None  # where new conversations go while this queue is closed or unstaffed
    )
    on_sla_breach: Literal["escalate", "raise_priority"] = "escalate"
    breach_priority_raise: int = Field(default=10, ge=0)
    expected_handle_seconds: int = Field(default=300, gt=0)  # for the wait quoted to customers


class Target(_Strict):
    """One step of an escalation ladder: a queue, a priority, and how long before the next step."""

    queue: str
    priority: int = Field(default=0, ge=-1000, le=1000)
    timeout: int | None = Field(default=None, gt=0)  # seconds waiting here before the next step
    skip_if_no_agent: bool = False  # go straight to the next step when no agent can take it now


class WorkflowFilter(_Strict):
    name: str = Field(min_length=1, max_length=60)
    filter: str
    targets: list[Target] = Field(min_length=1)
    _expression: Expression = PrivateAttr()

    @field_validator("filter")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            Expression(value)
        except ExpressionError as exc:
            raise _custom(str(exc)) from None
        return value

    def model_post_init(self, context: Any) -> None:
        self._expression = Expression(self.filter)

    @property
    def expression(self) -> Expression:
        return self._expression


class Route(_Strict):
    """Shorthand for a one-step filter `category == X`; routes come after the workflow and triage."""

    category: Category
    queue: str
    priority: int = Field(default=0, ge=-1000, le=1000)


class AssignmentRules(_Strict):
    accept_timeout_seconds: int | None = Field(
        default=120, gt=0
    )  # offered, not claimed: reassigned
    answer_timeout_seconds: int | None = Field(
        default=900, gt=0
    )  # held, customer not answered: reassigned
    return_to_last_agent_seconds: int = Field(default=86400, ge=0)  # 0: never
    away_after_missed_offer: bool = (
        True  # an agent who lets an offer time out stops getting new ones
    )


class RoutingConfig(_Strict):
    version: int
    business_hours: dict[str, BusinessHours] = Field(default_factory=dict)
    queues: dict[str, Queue]
    workflow: list[WorkflowFilter] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    default_target: Target | None = None
    default_queue: str | None = None  # shorthand for default_target: {queue: ...}
    assignment: AssignmentRules = AssignmentRules()

    @model_validator(mode="after")
    def _one_default_and_unique_names(self) -> RoutingConfig:
        if (self.default_target is None) == (self.default_queue is None):
            raise _custom("give exactly one of default_target and default_queue")
        names = [f.name for f in self.workflow]
        if len(names) != len(set(names)):
            raise _custom(
                f"workflow filter names must be unique: {sorted({n for n in names if names.count(n) > 1})}"
            )
        return self

    @property
    def default(self) -> Target:
        return self.default_target or Target(queue=self.default_queue or "")


# --- templates/replies.yaml ------------------------------------------------------------------

_PLACEHOLDERS = {"ticket", "wait"}


class Texts(_Strict):
    """One text per language."""

    zh: str
    en: str

    @model_validator(mode="after")
    def _known_placeholders(self) -> Texts:
        for text in (self.zh, self.en):
            try:
                names = {
                    name for _, name, _, _ in string.Formatter().parse(text) if name is not None
                }
            except ValueError as exc:
                raise _custom(
                    f"{text[:40]!r}...: {exc} (write {{{{ and }}}} for a literal brace)"
                ) from None
            unknown = names - _PLACEHOLDERS
            if unknown:
                raise _custom(
                    f"unknown placeholder {{{sorted(unknown)[0]}}}; known: {{ticket}}, {{wait}}"
                )
        return self


class Reply(_Strict):
    """A reply in each form: `short` (SMS-sized) and `full` (email); a channel may have its own.

    Given as just `zh:` and `en:`, the same text goes out on every channel.
    """

    short: Texts
    full: Texts | None = None
    sms: Texts | None = None
    whatsapp: Texts | None = None
    voice: Texts | None = None
    email: Texts | None = None
    chat: Texts | None = None
    telegram: Texts | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_texts(cls, data: Any) -> Any:
        if isinstance(data, dict) and data and set(data) <= {"zh", "en"}:
            return {"short": data}
        return data

    def texts(self, channel: str, form: str) -> Texts:
        own = getattr(self, channel, None) if channel in CHANNELS else None
        return own or (self.full if form == "full" and self.full else self.short)


class WaitTexts(_Strict):
    """How the expected wait ({wait} in a template) reads."""

    minutes: dict[Language, str] = Field(
        default_factory=lambda: {"zh": "约 {minutes} 分钟", "en": "about {minutes} minutes"}
    )
    opens: dict[Language, str] = Field(
        default_factory=lambda: {"zh": "在 {opens} 开始办公后", "en": "after we open at {opens}"}
    )


class TemplatesConfig(_Strict):
    version: int
    forms: dict[Channel, Literal["short", "full"]] = Field(
        default_factory=lambda: {c: ("full" if c == Channel.EMAIL else "short") for c in Channel}
    )
    acknowledgement: dict[str, Reply]  # a category, or "default"
    self_service: dict[Category, Reply] = Field(default_factory=dict)
    secret_warning: Reply
    wait: WaitTexts = WaitTexts()

    def form(self, channel: str) -> str:
        return self.forms.get(channel, "short")  # type: ignore[call-overload]


# --- agents.yaml -----------------------------------------------------------------------------


class Agent(_Strict):
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,40}$")
    name: str = ""
    role: Literal["agent", "supervisor"] = "agent"
    queues: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=lambda: list(LANGUAGES))
    skills: list[str] = Field(default_factory=list)
    capacity: dict[Channel, int] = Field(default_factory=dict)  # open conversations per channel

    @field_validator("capacity")
    @classmethod
    def _not_negative(cls, value: dict) -> dict:
        if any(n < 0 for n in value.values()):
            raise _custom("a capacity is a number of conversations, 0 or more")
        return value


class AgentsConfig(_Strict):
    version: int
    agents: list[Agent]
    default_capacity: dict[Channel, int] = Field(
        default_factory=lambda: {
            Channel.VOICE: 1,
            Channel.CHAT: 3,
            Channel.TELEGRAM: 3,
            Channel.WHATSAPP: 3,
            Channel.SMS: 5,
            Channel.EMAIL: 10,
        }
    )

    def capacity(self, agent: Agent, channel: str) -> int:
        return agent.capacity.get(channel, self.default_capacity.get(channel, 0))  # type: ignore[call-overload]


# --- the whole directory ---------------------------------------------------------------------


@dataclass(frozen=True)
class RouterConfig:
    classifier: ClassifierConfig
    routing: RoutingConfig
    templates: TemplatesConfig
    agents: AgentsConfig
    version: str  # a digest of every file, recorded on each routing decision

    def queue_for(
        self, category: str, confidence: float | None = None, urgency: str | None = None
    ) -> str:
        # A doubtful classification goes to people who read it first, not to a guessed queue;
        # but never a fraud report or a critical message: their own queue is the fastest.
        triage = self.classifier.triage_queue
        if (
            triage
            and confidence is not None
            and confidence < self.classifier.triage_below_confidence
            and category != "unauthorized_transaction"
            and urgency != Urgency.CRITICAL
        ):
            return triage
        for route in self.routing.routes:
            if route.category == category:
                return route.queue
        return self.routing.default.queue

    def agent(self, username: str) -> Agent | None:
        return next((a for a in self.agents.agents if a.username == username), None)


_FILES: dict[str, type[_Strict]] = {
    "classifier.yaml": ClassifierConfig,
    "routing.yaml": RoutingConfig,
    "templates/replies.yaml": TemplatesConfig,
    "agents.yaml": AgentsConfig,
}


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping key and sequence item."""


def _load_with_lines(text: str) -> tuple[Any, dict[tuple, int]]:
    lines: dict[tuple, int] = {}
    root = yaml.compose(text, Loader=_LineLoader)
    if root is None:
        return None, lines

    def walk(node: yaml.Node, path: tuple) -> Any:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                key = key_node.value
                lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = walk(value_node, (*path, key))
                lines[(*path, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(item, (*path, i)) for i, item in enumerate(node.value)]
        return _scalar(node)

    return walk(root, ()), lines


def _scalar(node: yaml.Node) -> Any:
    loader = _LineLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _line_for(loc: tuple, lines: dict[tuple, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _load_file(
    path: Path, model: type[BaseModel], name: str, problems: list[Problem], lines: dict[tuple, int]
):
    if not path.is_file():
        problems.append(Problem(name, None, "file is missing"))
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(name, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"))
        return None
    try:
        data, found = _load_with_lines(text)
        lines.update(found)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        problems.append(Problem(name, line, f"YAML syntax: {exc.problem}"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(name, 1, "expected a mapping with a 'version:' key"))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "(top)"
            reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(Problem(name, _line_for(loc, lines), f"{field}: {reason}"))
        return None


def load_model_file(path: Path | str, model: type[BaseModel], name: str | None = None):
    """Load one more operators' file (a channel's own, say) with the same checks and errors."""
    path = Path(path)
    problems: list[Problem] = []
    loaded = _load_file(path, model, name or path.name, problems, {})
    if problems:
        raise ConfigError(problems)
    return loaded


def _cross_check(
    parts: dict[str, Any], lines: dict[str, dict[tuple, int]], problems: list[Problem]
) -> None:
    """What no single file can check: names one file gives that another must know."""

    def problem(name: str, loc: tuple, reason: str) -> None:
        field = ".".join(str(p) for p in loc)
        problems.append(Problem(name, _line_for(loc, lines[name]), f"{field}: {reason}"))

    routing: RoutingConfig | None = parts.get("routing.yaml")
    classifier: ClassifierConfig | None = parts.get("classifier.yaml")
    templates: TemplatesConfig | None = parts.get("templates/replies.yaml")
    agents: AgentsConfig | None = parts.get("agents.yaml")
    if routing:
        _check_routing_names(routing, lambda loc, reason: problem("routing.yaml", loc, reason))
    if (
        classifier
        and routing
        and classifier.triage_queue
        and classifier.triage_queue not in routing.queues
    ):
        problem(
            "classifier.yaml",
            ("triage_queue",),
            f"unknown queue {classifier.triage_queue!r} (add it to routing.yaml)",
        )
    if templates and "default" not in templates.acknowledgement:
        problem("templates/replies.yaml", ("acknowledgement",), "a 'default' entry is required")
    if agents and routing:
        for i, agent in enumerate(agents.agents):
            for queue in sorted(set(agent.queues) - set(routing.queues)):
                problem(
                    "agents.yaml",
                    ("agents", i, "queues"),
                    f"agent {agent.username}: unknown queue {queue!r}",
                )


def _check_routing_names(routing: RoutingConfig, problem: Callable[[tuple, str], None]) -> None:
    """Every queue and business-hours name routing.yaml uses is one it defines."""

    def queue(loc: tuple, name: str | None) -> None:
        if name is not None and name not in routing.queues:
            problem(loc, f"unknown queue {name!r}")

    for i, route in enumerate(routing.routes):
        queue(("routes", i, "queue"), route.queue)
    for i, step in enumerate(routing.workflow):
        for j, target in enumerate(step.targets):
            queue(("workflow", i, "targets", j, "queue"), target.queue)
    if routing.default_target is not None:
        queue(("default_target", "queue"), routing.default_target.queue)
    queue(("default_queue",), routing.default_queue)
    for name, q in routing.queues.items():
        queue(("queues", name, "overflow"), q.overflow)
        if q.overflow == name:
            problem(("queues", name, "overflow"), "a queue cannot overflow into itself")
        if q.hours is not None and q.hours not in routing.business_hours:
            problem(("queues", name, "hours"), f"unknown business hours {q.hours!r}")


def load_config(directory: Path | str) -> RouterConfig:
    directory = Path(directory)
    problems: list[Problem] = []
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), None, "config directory does not exist")])
    lines: dict[str, dict[tuple, int]] = {name: {} for name in _FILES}
    parts = {
        name: _load_file(directory / name, model, name, problems, lines[name])
        for name, model in _FILES.items()
    }
    _cross_check(parts, lines, problems)
    if problems:
        raise ConfigError(problems)
    digest = hashlib.sha256()
    for name in sorted(_FILES):
        digest.update((directory / name).read_bytes())
    return RouterConfig(
        classifier=parts["classifier.yaml"],
        routing=parts["routing.yaml"],
        templates=parts["templates/replies.yaml"],
        agents=parts["agents.yaml"],
        version=digest.hexdigest()[:12],
    )
