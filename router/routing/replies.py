"""The replies the router sends by itself, written from config/templates/replies.yaml.

An acknowledgement carries the ticket and the expected wait; for problems customers can often
fix alone (password reset, several devices, restoring a backup) the steps come with it, unless
the conversation is critical; whenever a secret was masked, the warning never to send one.
SMS-sized channels get the short form, email the full one.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from router.core.envelope import Urgency
from router.operator_files.schemas.common import LANGUAGES
from router.operator_files.schemas.templates import Reply, TemplatesConfig

_WEEKDAYS = {
    "zh": ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_ZONES_ZH = {"Asia/Shanghai": "北京时间", "Asia/Hong_Kong": "香港时间", "Asia/Taipei": "台北时间"}


@dataclass(frozen=True)
class Wait:
    """The expected wait: minutes from now, or a moment (when a closed queue opens, or when the
    first agent who could take it starts work), read on `timezone`'s clock.

    `staffed` is False when no eligible agent is available now: the acknowledgement then says
    so (`acknowledgement_unstaffed`) and promises `opens` if known, never "taking it now"."""

    seconds: float | None = None
    opens: datetime | None = None
    timezone: str = "UTC"
    now: datetime | None = None  # what "today" and "tomorrow" are counted from
    staffed: bool = True


@functools.lru_cache(maxsize=256)
def moment(at: datetime, timezone: str, reference: datetime | None, language: str) -> str:
    """`at` as a customer reads it: "周三 09:00（北京时间）", "tomorrow 09:00 (Asia/Shanghai)".
    Kept for the last few questions: a dispatcher's batch quotes the same moment, from the
    same reference (the batch's), in each acknowledgement of a queue."""
    zone = ZoneInfo(timezone)
    local = at.astimezone(zone)
    days = (local.date() - (reference or at).astimezone(zone).date()).days
    zh = language == "zh"
    if days == 0:
        day = "今天" if zh else "today"
    elif days == 1:
        day = "明天" if zh else "tomorrow"
    elif days < 7:
        day = _WEEKDAYS["zh" if zh else "en"][local.weekday()]
    else:
        day = f"{local.month}月{local.day}日" if zh else local.strftime("%d %b").lstrip("0")
    if zh:
        return f"{day} {local:%H:%M}（{_ZONES_ZH.get(timezone, timezone)}）"
    return f"{day} {local:%H:%M} ({timezone})"


class Replies:
    def __init__(self, templates: TemplatesConfig):
        self.templates = templates

    @staticmethod
    def language(language: str | None) -> str:
        return language if language in LANGUAGES else "en"

    def wait_text(self, wait: Wait | None, language: str) -> str:
        lang = self.language(language)
        texts = self.templates.wait
        if wait is None:
            wait = Wait(seconds=0)
        if wait.opens is not None:
            when = moment(wait.opens, wait.timezone, wait.now, lang)
            return (texts.opens if wait.staffed else texts.unstaffed)[lang].format(opens=when)
        if not wait.staffed:
            return texts.unstaffed_unknown[lang]
        minutes = max(1, math.ceil((wait.seconds or 0) / 60))
        return texts.minutes[lang].format(minutes=minutes)

    @staticmethod
    def fill(text: str, *, ticket: str = "", wait: str = "") -> str:
        """A template's text with its placeholders filled (a canned reply's, in the console)."""
        return text.format(ticket=ticket, wait=wait)

    def _text(self, reply: Reply, channel: str, language: str, **values: str) -> str:
        texts = reply.texts(channel, self.templates.form(channel))
        return getattr(texts, self.language(language)).format(**values)

    def acknowledgement(
        self,
        *,
        category: str,
        urgency: str,
        language: str,
        channel: str,
        ticket: str,
        redactions: list[str],
        wait: Wait | None = None,
    ) -> str:
        t = self.templates
        values = {"ticket": ticket, "wait": self.wait_text(wait, language)}
        staffed = wait is None or wait.staffed
        replies = (
            t.acknowledgement if staffed else {**t.acknowledgement, **t.acknowledgement_unstaffed}
        )
        parts = [
            self._text(
                replies.get(category) or replies["default"],
                channel,
                language,
                **values,
            )
        ]
        help_yourself = t.self_service.get(category)
        if help_yourself is not None and urgency != Urgency.CRITICAL:
            parts.append(self._text(help_yourself, channel, language, **values))
        if redactions:
            parts.append(self._text(t.secret_warning, channel, language, **values))
        separator = "\n\n" if t.form(channel) == "full" else "\n"
        return separator.join(parts)

    def secret_warning(self, channel: str, language: str) -> str:
        return self._text(self.templates.secret_warning, channel, language, ticket="", wait="")
