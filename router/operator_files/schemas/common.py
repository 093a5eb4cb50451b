"""What every schema shares: strict models, reasons worded for operators, and the names of the
categories, languages and channels the files may use."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from router.core.envelope import Channel

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
CHANNELS = tuple(Channel)
Category = Literal[CATEGORIES]  # type: ignore[valid-type]
Language = Literal[LANGUAGES]  # type: ignore[valid-type]


class Strict(BaseModel):
    """A file's model: unknown keys are refused, and nothing changes once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def operator_error(reason: str) -> PydanticCustomError:
    # A reason without pydantic's "Value error, " prefix: operators read these.
    return PydanticCustomError("config", reason)
