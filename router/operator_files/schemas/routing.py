"""routing.yaml: queues and their business hours, the workflow (filters and escalation ladders),
routes by category, the default target, and the rules of assignment."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, field_validator, model_validator

from router.operator_files.expression import Expression, ExpressionError
from router.operator_files.schemas.common import (
    LANGUAGES,
    Category,
    Language,
    Strict,
    operator_error,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal[DAYS]  # type: ignore[valid-type]
_INTERVAL = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-(([01]\d|2[0-3]):([0-5]\d)|24:00)$")


class BusinessHours(Strict):
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
            raise operator_error(
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
                    raise operator_error(f"{day}: {span!r} is not an opening time like 09:00-18:00")
        if value is not None and not any(value.values()):
            raise operator_error(
                "these hours are never open: give at least one day an opening time"
            )
        return value


class Queue(Strict):
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


class Target(Strict):
    """One step of an escalation ladder: a queue, a priority, and how long before the next step."""

    queue: str
    priority: int = Field(default=0, ge=-1000, le=1000)
    timeout: int | None = Field(default=None, gt=0)  # seconds waiting here before the next step
    skip_if_no_agent: bool = False  # go straight to the next step when no agent can take it now


class WorkflowFilter(Strict):
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
            raise operator_error(str(exc)) from None
        return value

    def model_post_init(self, context: Any) -> None:
        self._expression = Expression(self.filter)

    @property
    def expression(self) -> Expression:
        return self._expression


class Route(Strict):
    """Shorthand for a one-step filter `category == X`; routes come after the workflow and triage."""

    category: Category
    queue: str
    priority: int = Field(default=0, ge=-1000, le=1000)


class AssignmentRules(Strict):
    accept_timeout_seconds: int | None = Field(
        default=120, gt=0
    )  # offered, not claimed: reassigned
    answer_timeout_seconds: int | None = Field(
        default=900, gt=0
    )  # held, customer not answered: reassigned
    return_to_last_agent_seconds: int = Field(default=86400, ge=0)  # 0: never
    # An agent whose last N offers all lapsed is set away, and told; 0: never. One lapse is not
    # enough: the only agent who can take a critical conversation must get it again.
    away_after_lapses: int = Field(default=3, ge=0)


class CaseRules(Strict):
    """When conversations of one customer (one phone number) join one case: router/store/cases.py."""

    window_minutes: int = Field(default=30, ge=0)  # unauthorized reports this close; 0: never
    transaction_days: int = Field(default=30, gt=0)  # the same transaction id named this close


class RoutingConfig(Strict):
    version: int
    business_hours: dict[str, BusinessHours] = Field(default_factory=dict)
    queues: dict[str, Queue]
    workflow: list[WorkflowFilter] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    default_target: Target | None = None
    default_queue: str | None = None  # shorthand for default_target: {queue: ...}
    assignment: AssignmentRules = AssignmentRules()
    cases: CaseRules = CaseRules()

    @model_validator(mode="after")
    def _one_default_and_unique_names(self) -> RoutingConfig:
        if (self.default_target is None) == (self.default_queue is None):
            raise operator_error("give exactly one of default_target and default_queue")
        names = [f.name for f in self.workflow]
        if len(names) != len(set(names)):
            raise operator_error(
                f"workflow filter names must be unique: {sorted({n for n in names if names.count(n) > 1})}"
            )
        return self

    @property
    def default(self) -> Target:
        return self.default_target or Target(queue=self.default_queue or "")
