"""Operators' files under config/: loaded, validated, and refused with file, line and reason.

Each file is YAML with a `version:` key, checked by a typed model that forbids unknown keys (one
module per file in `router.operator_files.schemas`). This module is the loader: it reads the YAML
remembering the line of every key, turns each validation error into a `Problem` at that line,
checks what no single file can (names one file gives that another must know), and collects
every problem in every file into one ConfigError; nothing here exits the process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from router.core.envelope import Urgency
from router.operator_files.schemas.actions import ActionsConfig, ProtectTemplates
from router.operator_files.schemas.agents import Agent, AgentsConfig
from router.operator_files.schemas.classifier import ClassifierConfig
from router.operator_files.schemas.common import Strict
from router.operator_files.schemas.routing import RoutingConfig
from router.operator_files.schemas.templates import TemplatesConfig


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


# --- the whole directory ---------------------------------------------------------------------


@dataclass(frozen=True)
class RouterConfig:
    classifier: ClassifierConfig
    routing: RoutingConfig
    templates: TemplatesConfig
    agents: AgentsConfig
    actions: ActionsConfig
    protect_templates: ProtectTemplates
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


_FILES: dict[str, type[Strict]] = {
    "classifier.yaml": ClassifierConfig,
    "routing.yaml": RoutingConfig,
    "templates/replies.yaml": TemplatesConfig,
    "agents.yaml": AgentsConfig,
    "actions.yaml": ActionsConfig,
    "templates/protect.yaml": ProtectTemplates,
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
            if agent.hours is not None and agent.hours not in routing.business_hours:
                problem(
                    "agents.yaml",
                    ("agents", i, "hours"),
                    f"agent {agent.username}: unknown business_hours {agent.hours!r}",
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
        actions=parts["actions.yaml"],
        protect_templates=parts["templates/protect.yaml"],
        version=digest.hexdigest()[:12],
    )
