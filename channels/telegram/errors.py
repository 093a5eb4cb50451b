"""Telegram's errors as the channel reports them: safe to log, why a set-up was refused, how long
a flood wait lasts."""

from __future__ import annotations

import warnings
from datetime import timedelta

from telegram.error import InvalidToken, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

# PTB 22 builds RetryAfter by reading its own deprecated int `retry_after`, which warns (a
# DeprecationWarning, silent outside tests) on every 429 unless the process sets PTB_TIMEDELTA=true;
# the channel does not set the process's environment, and reads either type.


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
