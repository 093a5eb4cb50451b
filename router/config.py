"""Operators' files under config/: loaded, validated, and refused with file, line and reason.

Each file is YAML with a `version:` key, checked by a typed model that forbids unknown keys.
Every problem in every file is collected into one ConfigError; nothing here exits the process.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from router.envelope import Urgency

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
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from exc
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

    regularization: float = Field(default=8.0, gt=0)  # LogisticRegression C: higher fits the examples closer
    rule_weight: float = Field(default=1.5, ge=0)  # log-odds each rule that fired adds to its category
    max_rule_hits: int = Field(default=3, ge=1)
    fraud_floor: float = Field(default=0.35, gt=0, le=1)  # model probability that alone makes it fraud


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
            raise ValueError(f"fallback_category {self.fallback_category!r} is not among the categories")
        return self


# --- routing.yaml ----------------------------------------------------------------------------


class Queue(_Strict):
    description: str = ""
    first_response_sla_seconds: int = Field(gt=0)


class Route(_Strict):
    category: Category
    queue: str


class RoutingConfig(_Strict):
    version: int
    queues: dict[str, Queue]
    routes: list[Route]
    default_queue: str


# --- templates/*.yaml ------------------------------------------------------------------------


class Texts(_Strict):
    """One text per language."""

    zh: str
    en: str


class TemplatesConfig(_Strict):
    version: int
    acknowledgement: dict[str, Texts]
    secret_warning: Texts


# --- agents.yaml -----------------------------------------------------------------------------


class Agent(_Strict):
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,40}$")
    name: str = ""
    role: Literal["agent", "supervisor"] = "agent"
    queues: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=lambda: list(LANGUAGES))


class AgentsConfig(_Strict):
    version: int
    agents: list[Agent]


# --- the whole directory ---------------------------------------------------------------------


@dataclass(frozen=True)
class RouterConfig:
    classifier: ClassifierConfig
    routing: RoutingConfig
    templates: TemplatesConfig
    agents: AgentsConfig
    version: str  # a digest of every file, recorded on each routing decision

    def queue_for(self, category: str, confidence: float | None = None, urgency: str | None = None) -> str:
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
        return self.routing.default_queue

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


def _scalar(node: yaml.ScalarNode) -> Any:
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


def _load_file(path: Path, model: type[BaseModel], name: str, problems: list[Problem], lines: dict[tuple, int]):
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


def _cross_check(parts: dict[str, Any], lines: dict[str, dict[tuple, int]], problems: list[Problem]) -> None:
    """What no single file can check: names one file gives that another must know."""

    def problem(name: str, loc: tuple, reason: str) -> None:
        field = ".".join(str(p) for p in loc)
        problems.append(Problem(name, _line_for(loc, lines[name]), f"{field}: {reason}"))

    routing: RoutingConfig | None = parts.get("routing.yaml")
    classifier: ClassifierConfig | None = parts.get("classifier.yaml")
    templates: TemplatesConfig | None = parts.get("templates/replies.yaml")
    agents: AgentsConfig | None = parts.get("agents.yaml")
    if routing:
        for i, route in enumerate(routing.routes):
            if route.queue not in routing.queues:
                problem("routing.yaml", ("routes", i, "queue"), f"unknown queue {route.queue!r}")
        if routing.default_queue not in routing.queues:
            problem("routing.yaml", ("default_queue",), f"unknown queue {routing.default_queue!r}")
    if classifier and routing and classifier.triage_queue and classifier.triage_queue not in routing.queues:
        problem("classifier.yaml", ("triage_queue",), f"unknown queue {classifier.triage_queue!r} (add it to routing.yaml)")
    if templates and "default" not in templates.acknowledgement:
        problem("templates/replies.yaml", ("acknowledgement",), "a 'default' entry is required")
    if agents and routing:
        for i, agent in enumerate(agents.agents):
            for queue in sorted(set(agent.queues) - set(routing.queues)):
                problem("agents.yaml", ("agents", i, "queues"), f"agent {agent.username}: unknown queue {queue!r}")


def load_config(directory: Path | str) -> RouterConfig:
    directory = Path(directory)
    problems: list[Problem] = []
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), None, "config directory does not exist")])
    lines: dict[str, dict[tuple, int]] = {name: {} for name in _FILES}
    parts = {name: _load_file(directory / name, model, name, problems, lines[name]) for name, model in _FILES.items()}
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
