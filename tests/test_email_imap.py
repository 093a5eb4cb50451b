"""The IMAP poller against a real dovecot: unseen mail is published, then marked \\Seen; IDLE
brings new mail at once; a server restart is survived; a refused mail is flagged.

The intake's `publish` is the seam the gateway injects, so a test can hold or fail it as Kafka
would; the store is real (SQLite)."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from channels.email.imap_poller import ImapPoller
from channels.email.inbound import EmailIntake
from router.core.channel_settings import EmailSettings
from router.store.conversations import ConversationStore
from tests.conftest import migrated_sqlite
from tests.dovecot import Dovecot, dovecot_fixture  # noqa: F401  (provides the `dovecot` fixture)
from tests.email_helpers import PAYMENT_FAILED_ZH, SUPPORT, customer_mail, wait_until
from tests.test_email_smtp import Published


def _raw(mail) -> bytes:
    return mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))


def _settings(server: Dovecot, **overrides) -> EmailSettings:
    values = dict(
        support_address=SUPPORT,
        imap_host=server.host,
        imap_port=server.port,
        imap_tls=False,
        imap_username="support",
        imap_password="support-secret",
        imap_timeout_seconds=5,
        imap_reconnect_max_seconds=1,
        imap_poll_seconds=600,
        imap_idle_seconds=600,
    )
    values.update(overrides)
    return EmailSettings(**values)


@pytest.fixture
async def store(tmp_path):
    async with ConversationStore(await migrated_sqlite(tmp_path / "s.db")) as store:
        yield store


async def _flags(server: Dovecot) -> list[str]:
    return [flags for flags, _ in await asyncio.to_thread(server.messages, "support")]


async def _run_poller(settings: EmailSettings, store, published: Published) -> ImapPoller:
    poller = ImapPoller(settings, EmailIntake(settings, store, published))
    await poller.start()
    return poller


async def test_unseen_mail_is_published_and_marked_seen_only_after_publish_returned(dovecot, store):
    await asyncio.to_thread(
        dovecot.append, "support", _raw(customer_mail("old, already read")), flags=r"(\Seen)"
    )
    await asyncio.to_thread(
        dovecot.append,
        "support",
        _raw(customer_mail(PAYMENT_FAILED_ZH, message_id="<a@example.net>")),
    )
    published = Published()
    published.gate = asyncio.Event()
    poller = await _run_poller(_settings(dovecot), store, published)
    try:
        await asyncio.sleep(1.0)  # the poller has had time to fetch and is waiting on Kafka
        assert [("\\Seen" in f) for f in await _flags(dovecot)] == [True, False]
        published.gate.set()
        await wait_until(lambda: _all_seen(dovecot), what="the published mail marked seen")
        assert [e.channel_message_id for e in published.envelopes] == ["<a@example.net>"]
        assert published.envelopes[0].thread["source"] == "imap:INBOX"
    finally:
        await poller.stop()


async def _all_seen(server: Dovecot) -> bool:
    return all("\\Seen" in f for f in await _flags(server))


async def test_mail_stays_unseen_while_publishing_fails_and_is_published_later(dovecot, store):
    await asyncio.to_thread(dovecot.append, "support", _raw(customer_mail(PAYMENT_FAILED_ZH)))
    published = Published()
    published.fail_with = ConnectionError("Kafka did not acknowledge")
    with capture_logs() as logs:
        poller = await _run_poller(_settings(dovecot), store, published)
        try:
            await wait_until(
                lambda: _has_event(logs, "email.imap_disconnected"), what="a failed round"
            )
            assert not await _all_seen(dovecot)
            published.fail_with = None
            await wait_until(lambda: _all_seen(dovecot), what="the mail seen after Kafka came back")
            assert len(published.envelopes) == 1
        finally:
            await poller.stop()


async def _has_event(logs: list[dict], event: str) -> bool:
    return any(e["event"] == event for e in logs)


async def test_new_mail_arrives_through_idle_long_before_the_poll_interval(dovecot, store):
    published = Published()
    with capture_logs() as logs:
        poller = await _run_poller(_settings(dovecot, imap_poll_seconds=600), store, published)
        try:
            await wait_until(lambda: _has_event(logs, "email.imap_connected"), what="connected")
            assert next(e for e in logs if e["event"] == "email.imap_connected")["idle"] is True
            await asyncio.sleep(0.3)  # let the first (empty) round finish and IDLE begin
            await asyncio.to_thread(
                dovecot.append,
                "support",
                _raw(customer_mail("new mail", message_id="<n@example.net>")),
            )
            await wait_until(lambda: _published(published, 1), timeout=15, what="the IDLE push")
        finally:
            await poller.stop()


async def _published(published: Published, count: int) -> bool:
    return len(published.envelopes) >= count


async def test_the_poller_reconnects_after_the_imap_server_restarts(dovecot, store):
    published = Published()
    with capture_logs() as logs:
        poller = await _run_poller(_settings(dovecot), store, published)
        try:
            await asyncio.to_thread(
                dovecot.append,
                "support",
                _raw(customer_mail("before", message_id="<1@example.net>")),
            )
            await wait_until(lambda: _published(published, 1), what="the first mail")
            await asyncio.to_thread(dovecot.restart)
            await wait_until(
                lambda: _has_event(logs, "email.imap_disconnected"), what="the disconnect noticed"
            )
            await asyncio.to_thread(
                dovecot.append,
                "support",
                _raw(customer_mail("after", message_id="<2@example.net>")),
            )
            await wait_until(
                lambda: _published(published, 2), timeout=30, what="the mail after the restart"
            )
            assert [e.channel_message_id for e in published.envelopes] == [
                "<1@example.net>",
                "<2@example.net>",
            ]
        finally:
            await poller.stop()


async def test_the_connection_notes_each_time_the_server_says_the_mailbox_grew(dovecot, store):
    """A mail that comes in while a command runs is announced once, by an EXISTS in that
    command's answer, which aioimaplib drops outside IDLE: the connection keeps the count, so
    the poller searches again before it waits (else the mail waited for the IDLE period)."""
    for n in (1, 2):
        mail = _raw(customer_mail(f"mail {n}", message_id=f"<g{n}@example.net>"))
        await asyncio.to_thread(dovecot.append, "support", mail)
    poller = ImapPoller(_settings(dovecot), EmailIntake(_settings(dovecot), store, Published()))
    conn = await poller._connect("INBOX")
    try:
        assert (conn.exists, conn.grew) == (2, True)  # SELECT said "2 EXISTS"
        conn.grew = False
        await conn.client.noop()
        assert (conn.exists, conn.grew) == (2, False)  # nothing new, nothing noted
        mail = _raw(customer_mail("mail 3", message_id="<g3@example.net>"))
        await asyncio.to_thread(dovecot.append, "support", mail)
        await conn.client.noop()  # the server tells the size in the next command's answer
        assert (conn.exists, conn.grew) == (3, True)
    finally:
        await poller._close(conn)


async def test_a_mail_that_can_never_be_accepted_is_flagged_seen_and_logged(dovecot, store):
    raw = b"From: nobody\r\nSubject: x\r\nMessage-ID: <bad@x>\r\n\r\nhello\r\n"
    await asyncio.to_thread(dovecot.append, "support", raw)
    await asyncio.to_thread(
        dovecot.append, "support", _raw(customer_mail("fine", message_id="<ok@example.net>"))
    )
    published = Published()
    with capture_logs() as logs:
        poller = await _run_poller(_settings(dovecot), store, published)
        try:
            await wait_until(lambda: _all_seen(dovecot), what="both handled")
        finally:
            await poller.stop()
    flags = await _flags(dovecot)
    assert "\\Flagged" in flags[0] and "\\Flagged" not in flags[1]
    assert [e.channel_message_id for e in published.envelopes] == ["<ok@example.net>"]
    assert next(e for e in logs if e["event"] == "email.refused")["source"] == "imap:INBOX"


async def test_an_oversized_mail_is_read_up_to_the_limit_and_its_text_still_published(
    dovecot, store
):
    mail = customer_mail(PAYMENT_FAILED_ZH, message_id="<big@example.net>")
    mail.add_attachment(
        b"\0" * 300_000, maintype="application", subtype="pdf", filename="statement.pdf"
    )
    await asyncio.to_thread(dovecot.append, "support", _raw(mail))
    published = Published()
    poller = await _run_poller(_settings(dovecot, smtp_max_bytes=100_000), store, published)
    try:
        await wait_until(lambda: _all_seen(dovecot), what="the big mail handled")
    finally:
        await poller.stop()
    envelope = published.envelopes[0]
    assert envelope.text == PAYMENT_FAILED_ZH
    assert "truncated:" in envelope.thread["problems"]
    assert envelope.attachments[0].name == "statement.pdf"


async def test_several_mailboxes_are_polled(dovecot, store):
    await asyncio.to_thread(
        dovecot.append, "support", _raw(customer_mail("in inbox", message_id="<i@example.net>"))
    )
    await asyncio.to_thread(
        dovecot.append,
        "support",
        _raw(customer_mail("in vip", message_id="<v@example.net>")),
        mailbox="VIP",
    )
    published = Published()
    poller = await _run_poller(
        _settings(dovecot, imap_mailboxes=["INBOX", "VIP"]), store, published
    )
    try:
        await wait_until(lambda: _published(published, 2), what="both mailboxes")
    finally:
        await poller.stop()
    assert sorted(e.thread["source"] for e in published.envelopes) == ["imap:INBOX", "imap:VIP"]
