"""The email channel: an SMTP listener and IMAP polling in, threaded replies out through a relay.

Settings are SUPPORTROUTER_ environment variables (the `email` section of the process settings,
router/core/channel_settings.py; docs/email.md).
Without SUPPORTROUTER_SUPPORT_ADDRESS nothing listens or polls; without
SUPPORTROUTER_SMTP_RELAY_HOST replies go to the sandbox outbox.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from channels.base import ChannelContext, ChannelParts, OutboundSender
from channels.email.imap_poller import ImapPoller
from channels.email.inbound import EmailIntake
from channels.email.sender import EmailSender
from channels.email.smtp_inbound import SmtpListener
from router.core.channel_settings import EmailSettings

log = structlog.get_logger("channels.email")


class EmailChannel:
    """The gateway's side of email: the SMTP listener and the IMAP pollers, no HTTP routes."""

    name = "email"

    def __init__(self, settings: EmailSettings, intake: EmailIntake, smtp_port: int):
        self.settings = settings
        self.smtp: SmtpListener | None = (
            SmtpListener(settings, intake, smtp_port) if settings.support_address else None
        )
        self.imap: ImapPoller | None = ImapPoller(settings, intake) if settings.imap_host else None
        self._started: list = []

    def routes(self, app: web.Application) -> None:
        return None

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("EmailChannel already started")
        if self.smtp is None and self.imap is None:
            log.info(
                "email.inbound_disabled",
                reason="set SUPPORTROUTER_SUPPORT_ADDRESS (and IMAP settings) to receive mail",
            )
        for part in (self.smtp, self.imap):
            if part is not None:
                await part.start()
                self._started.append(part)

    async def stop(self) -> None:
        while self._started:
            await self._started.pop().stop()


def build(context: ChannelContext) -> ChannelParts:
    settings = context.settings.email
    senders: dict[str, OutboundSender] = {}
    if settings.smtp_relay_host:
        senders["email"] = EmailSender(settings, context.store)
    adapter = None
    if context.store is not None:  # the classifier role has no store and no intake
        intake = EmailIntake(settings, context.store, context.publish)
        adapter = EmailChannel(settings, intake, context.settings.smtp_port)
    return ChannelParts(adapter=adapter, senders=senders)
