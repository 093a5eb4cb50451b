"""actions.yaml: the protective action (a freeze request to the wallet's backend) and when it is
asked for; templates/protect.yaml: what the customer is told of it. See docs/cases.md."""

from __future__ import annotations

from pydantic import Field

from router.core.envelope import Urgency
from router.operator_files.schemas.common import Category, Strict
from router.operator_files.schemas.templates import Reply


class FreezeAction(Strict):
    """A freeze request, sent once per case, for a report of these categories at this urgency
    or above; retried with backoff (doubling from `backoff_seconds` up to the maximum)."""

    enabled: bool = True
    categories: list[Category] = Field(default_factory=lambda: ["unauthorized_transaction"])
    urgency: Urgency = Urgency.CRITICAL
    timeout_seconds: float = Field(default=10, gt=0, le=120)
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_seconds: float = Field(default=2, gt=0)
    backoff_max_seconds: float = Field(default=300, gt=0)


class ActionsConfig(Strict):
    version: int
    freeze: FreezeAction = FreezeAction()


class ProtectTemplates(Strict):
    """What the customer is told, on the channel they last wrote on, in their language: when the
    backend holds the wallet, and when an agent confirms or lifts the hold. Placeholder {ticket}."""

    version: int
    held: Reply
    confirmed: Reply
    lifted: Reply
