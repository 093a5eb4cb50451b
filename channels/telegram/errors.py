"""Telegram's errors as the channel reports them: safe to log, why a set-up was refused, how long
a flood wait lasts."""

from __future__ import annotations

import os
import warnings
from datetime import timedelta

from telegram.error import InvalidToken, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

# PTB 22 builds RetryAfter by reading its own deprecated int `retry_after`, which warns on every
# 429 unless the process opts into the coming timedelta type; we read either. PTB reads the
# variable whenever such a value is read, so setting it on import of the channel is in time.
os.environ.setdefault("PTB_TIMEDELTA", "true")


def safe_error(exc: BaseException | None) -> str:
    # PTB's own messages never carry the token, except InvalidToken's from Bot.initialize.
    if isinstance(exc, InvalidToken):
        return "InvalidToken: the Bot API rejected TELEGRAM_BOT_TOKEN"
    return f"{type(exc).__name__}: {exc}"[:300]


def refusal(exc: TelegramError) -> str:
    if isinstance(exc, InvalidToken):
        return "Telegram: the Bot API rejected TELEGRAM_BOT_TOKEN (getMe answered 401/404)"
    return f"Telegram refused the channel's set-up: {exc.message}"


def retry_after_seconds(exc: RetryAfter) -> float:
    # PTB 22 warns on reading retry_after unless PTB_TIMEDELTA opts into timedelta; take either.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
