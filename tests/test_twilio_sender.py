"""Replies through Twilio: the real twilio Client on its AsyncTwilioHttpClient, over HTTP to the
stand-in for Twilio's REST API; retries, refusals, long replies, status callbacks, the DLQ."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from channels.base import DeliveryFailed
from channels.twilio.addresses import conversation_key
from channels.twilio.rest import TwilioApiHttpClient, TwilioRest, TwilioUnavailable
from channels.twilio.sender import TwilioMessageSender, split_message
from router.core.channel_settings import TWILIO_API, TwilioSettings
from router.core.envelope import Channel, Classification, Envelope, Outbound, Sender, Urgency
from router.core.settings import Settings
from router.store.conversations import ConversationStore
from tests.conftest import migrated_sqlite
from tests.twilio_standin import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CUSTOMER,
    OUR_NUMBER,
    PUBLIC_URL,
    TwilioStandIn,
    message_sid,
    read_topic,
    twilio_router,
)


@pytest.fixture
async def standin() -> AsyncIterator[TwilioStandIn]:
    async with TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[ConversationStore]:
    async with ConversationStore(await migrated_sqlite(tmp_path / "store.db")) as s:
        yield s


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/router.db"


def settings_for(standin: TwilioStandIn, **values) -> TwilioSettings:
    return TwilioSettings(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        api_base_url=standin.url,
        retry_backoff_seconds=0.001,
        **values,
    )


async def stored_reply(
    store: ConversationStore,
    text: str,
    channel: Channel = Channel.SMS,
    customer: str = CUSTOMER,
    ours: str = OUR_NUMBER,
) -> Outbound:
    """A conversation with one customer message, and a reply to it waiting to be sent."""
    key = conversation_key(channel, customer, ours)
    envelope = Envelope.new(
        channel=channel,
        channel_message_id=message_sid(),
        conversation_key=key,
        sender=Sender(address=customer),
        text="my transfer failed",
    ).model_copy(
        update={
            "classification": Classification(
                category="transaction_failed", urgency=Urgency.NORMAL, confidence=0.9, language="en"
            )
        }
    )
    conversation = (await store.record_inbound(envelope, "payments", lambda *_: None)).conversation
    out = Outbound(
        conversation_id=conversation["id"],
        conversation_key=key,
        channel=channel,
        to=customer,
        text=text,
        author="agent",
    )
    await store.add_outbound(out)
    return out


async def delivery(store: ConversationStore, out: Outbound) -> dict:
    conversation = await store.conversation(out.conversation_id)
    return next(m for m in conversation["messages"] if m["id"] == out.message_id)


# --- the client reaches the stand-in ---------------------------------------------------------------


async def test_the_real_twilio_client_reaches_the_standin_over_http_with_the_account_credentials(
    standin,
):
    sid = await TwilioRest(settings_for(standin)).create_message(
        to=CUSTOMER, from_=OUR_NUMBER, body="hello"
    )
    [request] = standin.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.username == ACCOUNT_SID
    assert (request.one("To"), request.one("From"), request.one("Body")) == (
        CUSTOMER,
        OUR_NUMBER,
        "hello",
    )
    assert sid == standin.messages[0]["sid"] and sid.startswith("SM")


async def test_between_start_and_stop_replies_share_one_connection(standin):
    rest = TwilioRest(settings_for(standin))
    await rest.start()
    try:
        for body in ("one", "two", "three"):
            await rest.create_message(to=CUSTOMER, from_=OUR_NUMBER, body=body)
    finally:
        await rest.stop()
    assert len({r.peer for r in standin.requests}) == 1
    await rest.create_message(
        to=CUSTOMER, from_=OUR_NUMBER, body="after stop"
    )  # its own connection
    assert len({r.peer for r in standin.requests}) == 2


def test_the_api_base_url_is_twilios_own_unless_set(monkeypatch):
    monkeypatch.delenv("SUPPORTROUTER_TWILIO_API_BASE_URL", raising=False)
    assert Settings().twilio.api_base_url == TWILIO_API
    monkeypatch.setenv("SUPPORTROUTER_TWILIO_API_BASE_URL", "http://127.0.0.1:9/proxy")
    assert Settings().twilio.api_base_url == "http://127.0.0.1:9/proxy"
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"
    assert TwilioApiHttpClient(TWILIO_API).rewrite(url) == url
    assert (
        TwilioApiHttpClient("http://127.0.0.1:9/proxy").rewrite(url)
        == "http://127.0.0.1:9/proxy/2010-04-01/Accounts/AC1/Messages.json"
    )


# --- retries and refusals --------------------------------------------------------------------------


async def test_a_429_then_success_is_retried_and_the_reply_is_sent_once(standin, store):
    standin.fail_next(429)
    out = await stored_reply(store, "We are on it.")
    await TwilioMessageSender(TwilioRest(settings_for(standin)), store, whatsapp=False).send(out)
    assert [r.status for r in standin.requests] == [429, 201]
    [message] = standin.messages
    stored = await delivery(store, out)
    assert stored["delivery_status"] == "sent" and stored["provider_message_id"] == message["sid"]


async def test_5xx_until_the_attempts_run_out_is_a_transient_failure_for_the_sender_service(
    standin, store
):
    standin.fail_next(503, times=3)
    out = await stored_reply(store, "We are on it.")
    sender = TwilioMessageSender(
        TwilioRest(settings_for(standin, send_attempts=3)), store, whatsapp=False
    )
    with pytest.raises(TwilioUnavailable):
        await sender.send(out)
    assert [r.status for r in standin.requests] == [503, 503, 503]
    assert (await delivery(store, out))["delivery_status"] == "queued"


@pytest.mark.parametrize(("status", "code"), [(400, 21211), (401, 20003), (403, 21610)])
async def test_a_permanent_refusal_raises_delivery_failed_without_a_retry(
    standin, store, status, code
):
    standin.fail_next(status, code=code, message="refused")
    out = await stored_reply(store, "We are on it.")
    with pytest.raises(DeliveryFailed, match=str(code)):
        await TwilioMessageSender(TwilioRest(settings_for(standin)), store, whatsapp=False).send(
            out
        )
    assert len(standin.requests) == 1


async def test_a_reply_to_a_number_that_is_not_a_phone_fails_for_good_without_calling_twilio(
    standin, store
):
    out = await stored_reply(store, "hello", customer="anonymous")
    with pytest.raises(DeliveryFailed, match="not a phone number"):
        await TwilioMessageSender(TwilioRest(settings_for(standin)), store, whatsapp=False).send(
            out
        )
    assert standin.requests == []


# --- long replies ----------------------------------------------------------------------------------


async def test_a_long_reply_goes_as_numbered_parts_each_within_twilios_limit_in_order(
    standin, store
):
    sentences = [
        f"Step {i}: open the app, go to Me, then Wallet, then tap the transfer to see it."
        for i in range(70)
    ]
    text = " ".join(sentences)
    assert len(text) > 3 * 1600
    out = await stored_reply(store, text)
    await TwilioMessageSender(TwilioRest(settings_for(standin)), store, whatsapp=False).send(out)
    bodies = [m["body"] for m in standin.messages]
    assert len(bodies) == 4 and all(len(b) <= 1600 for b in bodies)
    assert [b.split(" ", 1)[0] for b in bodies] == ["(1/4)", "(2/4)", "(3/4)", "(4/4)"]
    assert " ".join(b.split(" ", 1)[1] for b in bodies) == text
    assert all(b.endswith(".") for b in bodies)  # cut between sentences, not inside one
    assert (await delivery(store, out))["provider_message_id"] == standin.messages[-1]["sid"]


async def test_a_failure_half_way_resends_only_the_missing_parts(standin, store):
    out = await stored_reply(store, "x. " * 2000)
    sender = TwilioMessageSender(
        TwilioRest(settings_for(standin, send_attempts=1)), store, whatsapp=False
    )
    standin.fail_next(500, after=1)
    with pytest.raises(TwilioUnavailable):
        await sender.send(out)
    await sender.send(out)  # the sender service's retry
    assert [m["body"].split(" ", 1)[0] for m in standin.messages] == [
        "(1/4)",
        "(2/4)",
        "(3/4)",
        "(4/4)",
    ]


def test_split_message_breaks_chinese_at_sentence_ends():
    text = "您的转账正在处理中，请耐心等待。" * 150
    parts = split_message(text, 1600)
    assert len(parts) == 2
    assert all(p.endswith("。") and len(p) <= 1600 for p in parts)


def test_split_message_counts_an_emoji_as_two_units_like_twilio():
    parts = split_message("🙂" * 1000, 1600)
    assert len(parts) == 2
    assert all(len(p.encode("utf-16-le")) // 2 <= 1600 for p in parts)


def test_a_short_reply_is_one_unnumbered_message():
    assert split_message("  Thanks, we are on it.  ") == ["Thanks, we are on it."]


# --- through the whole router ----------------------------------------------------------------------


async def sms_conversation(t) -> dict:
    await t.sms("my transfer failed with error E1023, money gone from my balance")
    [conversation] = await t.wait_for_queue("payments", lambda c: len(c) == 1)
    return conversation


async def test_status_callbacks_mark_a_reply_delivered_or_failed(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        conversation = await sms_conversation(t)
        reply_id = await t.reply(conversation["id"], "Checking E1023.")
        sent = await t.wait_for_delivery(conversation["id"], reply_id, "sent")
        callback = next(m for m in t.standin.messages if m["body"] == "Checking E1023.")[
            "status_callback"
        ]
        path = callback.removeprefix(PUBLIC_URL)

        late = {
            "MessageSid": sent["provider_message_id"],
            "MessageStatus": "sent",
            "AccountSid": ACCOUNT_SID,
        }
        status, _ = await t.post(path, {**late, "MessageStatus": "delivered"})
        assert status == 204
        await t.wait_for_delivery(conversation["id"], reply_id, "delivered")
        assert (await t.post(path, late))[0] == 204  # a late "sent" does not undo "delivered"
        await t.wait_for_delivery(conversation["id"], reply_id, "delivered")

        status, _ = await t.post(
            path, {**late, "MessageStatus": "undelivered", "ErrorCode": "30003"}
        )
        assert status == 204
        failed = await t.wait_for_delivery(conversation["id"], reply_id, "undelivered")
        assert "30003" in failed["delivery_detail"]


async def test_a_forged_status_callback_gets_403_and_changes_nothing(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        conversation = await sms_conversation(t)
        reply_id = await t.reply(conversation["id"], "Checking E1023.")
        sent = await t.wait_for_delivery(conversation["id"], reply_id, "sent")
        params = {"MessageSid": sent["provider_message_id"], "MessageStatus": "failed"}
        assert (await t.post("/webhooks/twilio/status", params, signature="bm90IGEgc2lnbmF0dXJl"))[
            0
        ] == 403
        await t.wait_for_delivery(conversation["id"], reply_id, "sent")


async def test_an_undeliverable_reply_goes_to_the_dlq_and_shows_failed_on_the_conversation(
    sqlite_url, monkeypatch
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        conversation = await sms_conversation(t)
        await t.standin.wait_for("messages", 1)  # the acknowledgement went out
        t.standin.fail_next(400, code=21610, message="Attempt to send to unsubscribed recipient")
        reply_id = await t.reply(conversation["id"], "Checking E1023.")
        failed = await t.wait_for_delivery(conversation["id"], reply_id, "failed")
        assert "21610" in failed["delivery_detail"]
        dead = [
            json.loads(v)
            for v in await read_topic(t.router.bus.bootstrap_servers, t.router.bus.topics.dlq)
        ]
        assert [d["value"]["message_id"] for d in dead if d["stage"] == "send"] == [reply_id]


async def test_without_credentials_replies_go_to_the_sandbox_outbox(sqlite_url, monkeypatch):
    env = {
        "TWILIO_ACCOUNT_SID": None,
        "TWILIO_AUTH_TOKEN": None,
        "SUPPORTROUTER_TWILIO_INSECURE_DEV": "1",
    }
    async with twilio_router(sqlite_url, monkeypatch, env=env) as t:
        status, _ = await t.post(
            "/webhooks/twilio/messaging",
            {
                "MessageSid": message_sid(),
                "From": CUSTOMER,
                "To": OUR_NUMBER,
                "Body": "my transfer failed with error E1023, money gone from my balance",
            },
            signed=False,
        )
        assert status == 200
        [conversation] = await t.wait_for_queue("payments", lambda c: len(c) == 1)
        reply_id = await t.reply(conversation["id"], "Checking E1023.")
        await t.wait_for_delivery(conversation["id"], reply_id, "sandboxed")
        async with t.http.get(t.url("/api/outbox"), headers=await t.login()) as resp:
            outbox = (await resp.json())["outbox"]
        assert any(
            item["message_id"] == reply_id and item["recipient"] == CUSTOMER for item in outbox
        )
        assert t.standin.requests == []
