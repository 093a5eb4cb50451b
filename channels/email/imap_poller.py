"""IMAP polling of the support mailboxes (aioimaplib), one connection per mailbox.

A round fetches the UNSEEN messages oldest first, publishes each, and only then sets \\Seen:
a crash between the two republishes the mail, and the store dedupes it by Message-ID. A mail
that can never be accepted (no valid sender, a MIME bomb) is set \\Seen and \\Flagged with a log
line, so an operator finds it in the mailbox. Between rounds the poller waits in IDLE where the
server offers it, else sleeps; a lost connection (a server restart) is retried with backoff.

A mail that arrives while a command runs is announced by an untagged EXISTS in that command's
answer (Dovecot sends it after a SEARCH that was computed without it), and the server does not
announce it again. aioimaplib drops such a line outside IDLE, so the poller notes it on the
connection (`_Connection.grew`) and runs another round before it waits: without that, a mail
that came in during a round waited for the next IDLE period to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl

import aioimaplib
import structlog

from channels.email.inbound import EmailIntake, Outcome
from router.core.channel_settings import EmailSettings
from router.core.tasks import cancel_and_wait

log = structlog.get_logger("channels.email.imap")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_COUNT = re.compile(rb"(?:\* )?(\d+) (EXISTS|EXPUNGE)")


class ImapError(Exception):
    """The server said NO or BAD to a command the poller cannot do without."""


class _Connection:
    def __init__(self, client: aioimaplib.IMAP4, lost: asyncio.Event):
        self.client, self.lost = client, lost
        self.grew = False  # the mailbox grew since the last round began
        self.exists = 0  # how many messages the server last said the mailbox holds
        protocol = client.protocol
        untagged = protocol._untagged_response  # where aioimaplib reads every untagged line

        def noted(line: bytes):
            self._count(line)
            return untagged(line)

        protocol._untagged_response = noted

    def _count(self, line: bytes) -> None:
        """Follow the mailbox's size: EXISTS says it, EXPUNGE takes one away. Only a larger
        size is new mail (some servers repeat EXISTS unchanged)."""
        match = _COUNT.match(line)
        if match is None:
            return
        if match[2] == b"EXPUNGE":
            self.exists = max(self.exists - 1, 0)
            return
        size = int(match[1])
        if size > self.exists:
            self.grew = True
        self.exists = size


class ImapPoller:
    def __init__(self, settings: EmailSettings, intake: EmailIntake):
        self.settings, self.intake = settings, intake
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("ImapPoller already started")
        for mailbox in self.settings.imap_mailboxes:
            self._tasks.append(
                asyncio.create_task(self._run(mailbox), name=f"email:imap:{mailbox}")
            )
        log.info(
            "email.imap_polling",
            host=self.settings.imap_host,
            port=self.settings.imap_port,
            mailboxes=self.settings.imap_mailboxes,
        )

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)

    # --- one mailbox ----------------------------------------------------------------------

    async def _run(self, mailbox: str) -> None:
        delay = 1.0
        while True:
            conn: _Connection | None = None
            try:
                conn = await self._connect(mailbox)
                delay = 1.0
                while True:
                    more = await self._round(conn, mailbox)
                    if not more and not conn.grew:
                        await self._wait(conn, mailbox)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server went away, refused us, or Kafka did not ack
                log.warning(
                    "email.imap_disconnected",
                    mailbox=mailbox,
                    error=repr(exc)[:300],
                    retry_in=delay,
                )
            finally:
                if conn is not None:
                    await self._close(conn)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.imap_reconnect_max_seconds)

    async def _connect(self, mailbox: str) -> _Connection:
        s = self.settings
        lost = asyncio.Event()
        client = aioimaplib.IMAP4(
            host=s.imap_host,
            port=s.imap_port,
            timeout=s.imap_timeout_seconds,
            conn_lost_cb=lambda _exc: lost.set(),
            ssl_context=ssl.create_default_context() if s.imap_tls else None,
        )
        conn = _Connection(client, lost)
        try:
            await client.wait_hello_from_server()
            assert s.imap_username and s.imap_password
            _ok(await client.login(s.imap_username, s.imap_password.get_secret_value()), "LOGIN")
            _ok(await client.select(mailbox), f"SELECT {mailbox}")
        except BaseException:
            await self._close(conn)
            raise
        log.info("email.imap_connected", mailbox=mailbox, idle=client.has_capability("IDLE"))
        return conn

    async def _close(self, conn: _Connection) -> None:
        client = conn.client
        if not conn.lost.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.logout(), 2)
        transport = client.protocol.transport
        if transport is not None:
            transport.close()
        pending = [
            t for t in (*client.tasks, *client.protocol.tasks, client._client_task) if not t.done()
        ]
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task

    async def _round(self, conn: _Connection, mailbox: str) -> bool:
        """Handle up to one batch of unseen mail; True when more is waiting."""
        conn.grew = False  # what arrives from now on is in this search, or says EXISTS
        response = _ok(await conn.client.uid_search("UNSEEN", charset=None), "UID SEARCH")
        uids = [int(u) for line in response.lines[:-1] for u in line.split() if u.isdigit()]
        uids.sort()
        for uid in uids[: self.settings.imap_batch]:
            await self._handle(conn, mailbox, str(uid))
        return len(uids) > self.settings.imap_batch

    async def _handle(self, conn: _Connection, mailbox: str, uid: str) -> None:
        client, limit = conn.client, self.settings.smtp_max_bytes
        sized = _ok(await client.uid("fetch", uid, "(RFC822.SIZE)"), "UID FETCH size")
        match = next((m for m in (_SIZE.search(bytes(line)) for line in sized.lines) if m), None)
        if match is None:
            return  # expunged meanwhile
        size = int(match.group(1))
        # An oversized mail is read up to the limit: its text comes first in practice, so an
        # agent still sees what the customer wrote; the whole mail stays in the mailbox.
        part = "BODY.PEEK[]" if size <= limit else f"BODY.PEEK[]<0.{limit}>"
        fetched = _ok(await client.uid("fetch", uid, f"({part})"), "UID FETCH body")
        raw = next((bytes(line) for line in fetched.lines if isinstance(line, bytearray)), None)
        if raw is None:
            return
        extra = [f"truncated:{size}_bytes_read_{limit}"] if size > limit else []
        result = await self.intake.accept(raw, source=f"imap:{mailbox}", extra_problems=extra)
        flags = r"(\Seen \Flagged)" if result.outcome is Outcome.REFUSED else r"(\Seen)"
        _ok(await client.uid("store", uid, "+FLAGS.SILENT", flags), "UID STORE")

    async def _wait(self, conn: _Connection, mailbox: str) -> None:
        """Until the server reports new mail (IDLE), the IDLE period ends, or a poll interval."""
        client = conn.client
        if not client.has_capability("IDLE"):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.lost.wait(), self.settings.imap_poll_seconds)
            _connected(conn)
            return
        idle = await client.idle_start(timeout=self.settings.imap_idle_seconds)
        try:
            while client.has_pending_idle():
                push = asyncio.ensure_future(
                    client.wait_server_push(self.settings.imap_idle_seconds + 30)
                )
                lost = asyncio.ensure_future(conn.lost.wait())
                try:
                    await asyncio.wait({push, lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (push, lost):
                        task.cancel()
                        with contextlib.suppress(BaseException):
                            await task
                _connected(conn)
                if push.cancelled() or push.exception() is not None:
                    return  # no push within the period: issue IDLE afresh
                lines = push.result()
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH or any(
                    b"EXISTS" in bytes(x) for x in lines
                ):
                    return
        finally:
            if client.has_pending_idle() and not conn.lost.is_set():
                client.idle_done()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(idle, self.settings.imap_timeout_seconds)
            if not idle.done():
                idle.cancel()
                with contextlib.suppress(BaseException):
                    await idle


def _ok(response, what: str):
    if response.result != "OK":
        detail = b" ".join(bytes(x) for x in response.lines[-1:]).decode(errors="replace")[:200]
        raise ImapError(f"{what}: {response.result} {detail}")
    return response


def _connected(conn: _Connection) -> None:
    if conn.lost.is_set():
        raise ConnectionError("the IMAP server closed the connection")
