"""Every input the router accepts is storable on SQLite and PostgreSQL alike (issue 13): a NUL
byte, a lone surrogate, an address longer than its column. Each goes through the running
router's real endpoints (chat, the Twilio SMS webhook, SMTP), ends up stored, and nothing is
dead-lettered. PostgreSQL refuses NUL in text, lone surrogates in UTF-8 and values longer than a
varchar(n); SQLite takes the first and the last, so both databases must store the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid

import aiohttp
import pytest
import sqlalchemy as sa

from router.store.schema import conversations, messages
from tests.chat_helpers import receive_until, send_message
from tests.conftest import RunningRouter, new_router, router_settings
from tests.email_helpers import email_env, send_smtp, smtp_port, wait_until
from tests.twilio_standin import OUR_NUMBER, message_sid, read_topic

# 227 characters: a 64-character local part (the most RFC 5321 allows) and a long domain.
LONG_ADDRESS = "a" * 64 + "@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 32 + ".example"
assert len(LONG_ADDRESS) == 227


@pytest.fixture
async def router(database_url, broker_kind, request, monkeypatch) -> AsyncIterator[RunningRouter]:
    """`running_router`, with the SMS webhook open to unsigned requests (no Twilio account in
    tests) and the email channel's SMTP listener on a free port."""
    monkeypatch.setenv("SUPPORTROUTER_TWILIO_INSECURE_DEV", "1")
    email_env(monkeypatch)
    settings = router_settings(database_url, broker_kind, request, smtp_port=0)
    async with new_router(settings) as running, aiohttp.ClientSession() as http:
        yield RunningRouter(running, http)


async def stored_inbound(r: RunningRouter, channel: str) -> list[dict]:
    """The customer messages of a channel the store holds, with their conversation's columns."""
    query = (
        sa.select(
            messages.c.text,
            messages.c.author,
            messages.c.meta,
            conversations.c.customer_address,
            conversations.c.customer_name,
            conversations.c.queue,
        )
        .join(conversations, conversations.c.id == messages.c.conversation_id)
        .where(messages.c.channel == channel, messages.c.direction == "in")
    )
    async with r.router.store.engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings()]


async def wait_stored(r: RunningRouter, channel: str) -> dict:
    [row] = await wait_until(
        lambda: stored_inbound(r, channel), timeout=30, what=f"a {channel} message stored"
    )
    return row


async def assert_nothing_dead_lettered(r: RunningRouter) -> None:
    bus = r.router.bus
    assert await read_topic(bus.bootstrap_servers, bus.topics.dlq) == []


async def test_chat_session_name_with_a_lone_surrogate_and_text_with_a_nul_byte(router):
    r = router
    # The name arrives as JSON "\ud800": a lone surrogate, which no UTF-8 can encode.
    token = await r.chat_session("Ann\ud800")
    async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
        await receive_until(ws, "history")
        await send_message(ws, "my card was charged twice\x00 please help", "1")
    chat = await wait_stored(r, "chat")
    assert chat["text"] == "my card was charged twice please help"
    assert chat["customer_name"] == chat["author"] == "Ann\ufffd"
    await assert_nothing_dead_lettered(r)


async def test_chat_text_with_a_lone_surrogate_is_accepted_and_stored(router):
    r = router
    token = await r.chat_session("Bo")
    async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
        await receive_until(ws, "history")
        # A lone half of a pair, then a whole pair (an emoji), as a browser's JSON may send them.
        accepted = await send_message(ws, "my transfer \ud800failed \ud83d\ude00", "1")
    assert accepted["type"] == "accepted"
    chat = await wait_stored(r, "chat")
    assert chat["text"] == "my transfer \ufffdfailed 😀"
    await assert_nothing_dead_lettered(r)


async def test_sms_with_a_nul_byte_in_its_body(router):
    r = router
    # Through the Twilio webhook the Twilio webhook: a NUL byte in the body; Twilio gets its 200 at once.
    form = {
        "MessageSid": message_sid(),
        "From": "+8613800138000",
        "To": OUR_NUMBER,
        "Body": "转账\x00失败了",
        "NumMedia": "0",
    }
    async with r.http.post(r.url("/webhooks/twilio/messaging"), data=form) as resp:
        assert resp.status == 200, await resp.text()
    sms = await wait_stored(r, "sms")
    assert sms["text"] == "转账失败了"
    await assert_nothing_dead_lettered(r)


async def test_email_from_a_227_character_address(router):
    r = router
    # Email over SMTP from a 227-character address, with no display name: the message's author
    # column (200) cannot hold it; the conversation's address column (320) can.
    mail = EmailMessage()
    mail["From"] = LONG_ADDRESS
    mail["To"] = "support@wallet.example"
    mail["Subject"] = "refund"
    mail["Message-ID"] = make_msgid(domain="example.net")
    mail.set_content("Where is my refund?")
    await send_smtp(smtp_port(r.router), mail, sender=LONG_ADDRESS)
    email = await wait_stored(r, "email")
    assert email["customer_address"] == LONG_ADDRESS
    assert email["author"] == LONG_ADDRESS[:200]
    assert email["meta"]["uncut"] == {"author": LONG_ADDRESS}  # kept whole on the message

    # And through the agents' API, as an agent sees it.
    headers = await r.login()
    async with r.http.get(
        r.url(f"/api/queues/{email['queue']}/conversations"), headers=headers
    ) as resp:
        listed = (await resp.json())["conversations"]
    assert [c["customer_address"] for c in listed if c["channel"] == "email"] == [LONG_ADDRESS]
    await assert_nothing_dead_lettered(r)
