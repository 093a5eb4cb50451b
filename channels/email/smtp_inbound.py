"""The SMTP listener for mail forwarded to the support address (aiosmtpd, on the router's loop).

It is no open relay: only the configured support recipients are accepted, the rest get 550.
A mail is answered 250 only after Kafka acknowledged it; when Kafka did not, 451 tells the
sending server to try again later, so nothing is lost. Oversized mail gets 552 (aiosmtpd checks
the SIZE parameter and the data it reads); a mail that can never be accepted (no valid sender,
a MIME bomb) gets 550/554 with the reason, and every refusal is a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.email.inbound import EmailIntake, Outcome
from router.core.channel_settings import EmailSettings
from router.observability.metrics import REJECTED

log = structlog.get_logger("channels.email.smtp")


class SupportMailHandler:
    """aiosmtpd's handler hooks: who may be written to, and what becomes of the data."""

    def __init__(self, settings: EmailSettings, intake: EmailIntake):
        self.settings, self.intake = settings, intake

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.strip().lower() not in self.settings.accepted_recipients:
            REJECTED.labels(channel="email", reason="relay_denied").inc()
            log.info("email.recipient_refused", peer=_peer(session), recipient=address[:320])
            return "550 5.7.1 Recipient not accepted here: this server relays no mail"
        if len(envelope.rcpt_tos) >= self.settings.smtp_max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            result = await self.intake.accept(raw, source="smtp", envelope_from=envelope.mail_from)
        except (
            Exception
        ) as exc:  # Kafka did not acknowledge: the sending server keeps it and retries
            log.warning(
                "email.publish_failed", source="smtp", peer=_peer(session), error=repr(exc)[:300]
            )
            return "451 4.3.0 Message not accepted yet, please try again later"
        if result.outcome is Outcome.REFUSED:
            code = "550 5.1.7" if "sender" in result.reason else "554 5.6.0"
            return f"{code} Message refused: {result.reason}"
        if result.outcome is Outcome.IGNORED:
            return "250 2.0.0 OK, not answered: " + result.reason
        return "250 2.0.0 Message accepted"

    async def handle_exception(self, error: Exception) -> str:
        log.error("email.smtp_session_error", error=repr(error)[:300])
        return "451 4.3.0 Local error, please try again later"


def _peer(session: Session) -> str:
    peer = session.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)


class SmtpListener:
    """aiosmtpd's SMTP protocol served by the router's own loop (no second thread or loop), so
    publishing to Kafka from a hook is a plain await."""

    def __init__(self, settings: EmailSettings, intake: EmailIntake, port: int):
        self.settings, self.handler, self.requested_port = (
            settings,
            SupportMailHandler(settings, intake),
            port,
        )
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.port: int | None = None

    def _protocol(self) -> SMTP:
        smtp = SMTP(
            self.handler,
            data_size_limit=self.settings.smtp_max_bytes,
            hostname=self.settings.smtp_hostname,
            ident="supportrouter",
            timeout=self.settings.smtp_timeout_seconds,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(smtp)
        return smtp

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("SmtpListener already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.settings.smtp_host, self.requested_port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "email.smtp_listening",
            host=self.settings.smtp_host,
            port=self.port,
            recipients=sorted(self.settings.accepted_recipients),
            max_bytes=self.settings.smtp_max_bytes,
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = []
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
            task = getattr(session, "_handler_coroutine", None)
            if task is not None and not task.done():
                task.cancel()
                tasks.append(task)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await server.wait_closed()
