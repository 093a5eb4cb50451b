"""The replies the router sends by itself, written from config/templates/replies.yaml.

An acknowledgement carries the ticket and the expected wait; for problems customers can often
fix alone (password reset, several devices, restoring a backup) the steps come with it, unless
the conversation is critical; whenever a secret was masked, the warning never to send one.
SMS-sized channels get the short form, email the full one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from router.core.envelope import Urgency
from router.operator_files.schemas.common import LANGUAGES
from router.operator_files.schemas.templates import Reply, TemplatesConfig


@dataclass(frozen=True)
class Wait:
    """The expected wait: minutes from now, or the local time the queue opens."""

    seconds: float | None = None
    opens: str | None = None  # "09:00 (Asia/Shanghai)" or "Mon 09:00 (Asia/Shanghai)"


class Replies:
    def __init__(self, templates: TemplatesConfig):
        self.templates = templates

    @staticmethod
    def language(language: str | None) -> str:
        return language if language in LANGUAGES else "en"

    def wait_text(self, wait: Wait | None, language: str) -> str:
        lang = self.language(language)
        if wait is None:
            wait = Wait(seconds=0)
        if wait.opens is not None:
            return self.templates.wait.opens[lang].format(opens=wait.opens)
        minutes = max(1, math.ceil((wait.seconds or 0) / 60))
        return self.templates.wait.minutes[lang].format(minutes=minutes)

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
        parts = [
            self._text(
                t.acknowledgement.get(category) or t.acknowledgement["default"],
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
