"""templates/replies.yaml: the acknowledgement, self-service and secret-warning replies, each in
Chinese and English, per form (short, full) or per channel; how the expected wait reads."""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import Field, model_validator

from router.core.envelope import Channel
from router.operator_files.schemas.common import (
    CHANNELS,
    Category,
    Language,
    Strict,
    operator_error,
)

_PLACEHOLDERS = {"ticket", "wait"}


class Texts(Strict):
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
                raise operator_error(
                    f"{text[:40]!r}...: {exc} (write {{{{ and }}}} for a literal brace)"
                ) from None
            unknown = names - _PLACEHOLDERS
            if unknown:
                raise operator_error(
                    f"unknown placeholder {{{sorted(unknown)[0]}}}; known: {{ticket}}, {{wait}}"
                )
        return self


class Reply(Strict):
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


class WaitTexts(Strict):
    """How the expected wait ({wait} in a template) reads: a clause that fits after a semicolon.
    `opens` when the queue is closed; `unstaffed` when nobody who could take it is available
    now and the agents' hours say when someone will be; `unstaffed_unknown` when they do not."""

    minutes: dict[Language, str] = Field(
        default_factory=lambda: {
            "zh": "预计等待约 {minutes} 分钟",
            "en": "expected wait about {minutes} minutes",
        }
    )
    opens: dict[Language, str] = Field(
        default_factory=lambda: {
            "zh": "预计 {opens}开始办公后回复",
            "en": "we open at {opens} and will reply then",
        }
    )
    unstaffed: dict[Language, str] = Field(
        default_factory=lambda: {
            "zh": "预计 {opens}起有专员处理",
            "en": "one will be available from {opens}",
        }
    )
    unstaffed_unknown: dict[Language, str] = Field(
        default_factory=lambda: {
            "zh": "专员一上线即优先处理",
            "en": "the first one to come online will take it",
        }
    )


class TemplatesConfig(Strict):
    version: int
    forms: dict[Channel, Literal["short", "full"]] = Field(
        default_factory=lambda: {c: ("full" if c == Channel.EMAIL else "short") for c in Channel}
    )
    acknowledgement: dict[str, Reply]  # a category, or "default"
    # Said instead when no eligible agent is available now (a category, or "default"); a
    # category without one falls back to `acknowledgement`.
    acknowledgement_unstaffed: dict[str, Reply] = Field(default_factory=dict)
    self_service: dict[Category, Reply] = Field(default_factory=dict)
    secret_warning: Reply
    # Replies agents pick in the console (name -> zh/en); {ticket} is filled, {wait} is not used.
    canned: dict[str, Texts] = Field(default_factory=dict)
    wait: WaitTexts = WaitTexts()

    def form(self, channel: str) -> str:
        return self.forms.get(channel, "short")  # type: ignore[call-overload]
