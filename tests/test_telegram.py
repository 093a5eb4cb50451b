"""The Telegram channel, driven by python-telegram-bot against an in-process Bot API stand-in.

The channel-level tests run the real Application, handlers and webhook route with a recording
publish; the router-level tests run the whole router (embedded broker, real databases) and the
agents' API. Only Telegram itself is stood in for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from channels.base import ChannelContext, DeliveryFailed
from channels.base.text_split import utf16_units
from channels.telegram.adapter import build, build_application
from channels.telegram.inbound import SECRET_HEADER, WEBHOOK_PATH, TelegramChannel
from channels.telegram.sender import TelegramSender, split_text
from router.app import Router
from router.bus.kafka import topic_partitions
from router.core.channel_settings import TelegramSettings
from router.core.envelope import Outbound
from router.core.settings import Settings
from router.operator_files.config import ConfigError
from router.services.gateway import json_errors
from router.store.conversations import ConversationStore
from tests import telegram_standin as tg
from tests.conftest import make_settings, migrated_sqlite

SECRET = "s3cret-Token_for-webhooks"
PUBLIC_URL = "https://support.example.com"
IPAD = "I logged in on my new iPad and now my phone is logged out"


@pytest.fixture
async def api() -> AsyncIterator[tg.BotApiStandIn]:
    async with tg.BotApiStandIn() as standin:
        yield standin


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[ConversationStore]:
    async with ConversationStore(await migrated_sqlite(tmp_path / "tg.db")) as s:
        yield s


class RecordingPublish:
    """Stands for the gateway's intake: keeps what was published, can hold or refuse it."""

    def __init__(self):
        self.envelopes = []
        self.refuse = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, envelope):
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse:
            self.refuse -= 1
            raise ConnectionError("Kafka did not acknowledge")
        self.envelopes.append(envelope)
        return envelope


def settings_for(api: tg.BotApiStandIn, **values) -> TelegramSettings:
    return TelegramSettings(
        bot_token=api.token, api_base_url=api.base_url, poll_timeout_seconds=2, **values
    )


@contextlib.asynccontextmanager
async def channel_running(
    api, store, publish, *, webhook=True
) -> AsyncIterator[tuple[TelegramChannel, str]]:
    """The channel started against the stand-in, its routes served on a free port."""
    channel = TelegramChannel(
        build_application(settings_for(api)),
        publish,
        store,
        webhook_url=PUBLIC_URL + WEBHOOK_PATH if webhook else None,
        secret_token=SECRET if webhook else None,
        poll_timeout=2,
    )
    app = web.Application(middlewares=[json_errors])
    channel.routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    await channel.start()
    try:
        yield channel, f"http://127.0.0.1:{runner.addresses[0][1]}{WEBHOOK_PATH}"
    finally:
        await channel.stop()
        await runner.cleanup()


async def post_update(
    api: tg.BotApiStandIn, url: str, update: dict, secret: str | None = SECRET
) -> tuple[int, dict]:
    """Deliver an update as Telegram's webhook would; the stand-in then knows its chat."""
    api.delivering(update)
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    async with aiohttp.ClientSession() as http, http.post(url, json=update, headers=headers) as r:
        return r.status, await r.json()


# --- splitting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("word " * 2000, id="words"),
        pytest.param("\U0001f600" * 3000, id="emoji-count-twice"),
        pytest.param("x" * 9000, id="no-break"),
        pytest.param(("line of text\n" * 400), id="lines"),
    ],
)
def test_split_text_keeps_every_piece_within_4096_utf16_units_and_drops_only_the_break(text):
    parts = split_text(text)
    assert len(parts) > 1
    assert all(0 < utf16_units(p) <= 4096 for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )


def test_split_text_leaves_a_short_reply_whole():
    assert split_text("thanks, fixed") == ["thanks, fixed"]


# --- settings --------------------------------------------------------------------------------


def _context(**settings) -> ChannelContext:
    return ChannelContext(settings=Settings(**settings), store=None, bus=None, publish=None)


def test_without_a_bot_token_the_channel_is_off(monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    parts = build(_context())
    assert parts.adapter is None and parts.senders == {}


def test_webhook_mode_without_a_secret_token_is_refused(monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.delenv("TELEGRAM_SECRET_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="TELEGRAM_SECRET_TOKEN is required"):
        build(_context(public_url=PUBLIC_URL))


def test_a_secret_token_telegram_would_refuse_is_refused_at_load(monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("TELEGRAM_SECRET_TOKEN", "has spaces!")
    with pytest.raises(ConfigError, match="TELEGRAM_SECRET_TOKEN"):
        build(_context(public_url=PUBLIC_URL))


async def test_a_token_the_bot_api_rejects_stops_the_start_without_printing_the_token(api, store):
    channel = TelegramChannel(
        build_application(
            TelegramSettings(bot_token="999:not-the-token", api_base_url=api.base_url)
        ),
        RecordingPublish(),
        store,
        webhook_url=None,
        secret_token=None,
    )
    with pytest.raises(RuntimeError, match="rejected TELEGRAM_BOT_TOKEN") as caught:
        await channel.start()
    assert "not-the-token" not in str(caught.value)
    await channel.stop()


async def test_an_unreachable_bot_api_does_not_stop_the_router_and_the_channel_connects_later(
    store,
):
    with socket.socket() as probe:  # a port nothing listens on, yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = tg.BotApiStandIn()
    api.port = port
    publish = RecordingPublish()
    async with channel_running(api, store, publish) as (_, url):
        status, body = await post_update(api, url, tg.text_update("hello"))
        assert status == 503 and "connecting" in body["error"]
        await api.start(port)
        try:
            await api.wait_for(lambda: api.webhook is not None)
            assert (await post_update(api, url, tg.text_update("hello again")))[0] == 200
        finally:
            await api.close()
    assert [e.text for e in publish.envelopes] == ["hello again"]


# --- webhook ---------------------------------------------------------------------------------


async def test_start_registers_the_webhook_with_the_secret_token(api, store):
    async with channel_running(api, store, RecordingPublish()):
        assert api.webhook == {
            "url": PUBLIC_URL + WEBHOOK_PATH,
            "secret_token": SECRET,
            "allowed_updates": ["message", "edited_message"],
        }
        assert [c.method for c in api.calls] == ["getMe", "setWebhook"]


@pytest.mark.parametrize("secret", [None, "wrong-secret", ""], ids=["missing", "wrong", "empty"])
async def test_a_webhook_without_the_right_secret_is_refused_and_nothing_is_published(
    api, store, secret
):
    publish = RecordingPublish()
    async with channel_running(api, store, publish) as (_, url):
        status, body = await post_update(api, url, tg.text_update("hello"), secret=secret)
    assert status == 403 and SECRET_HEADER in body["error"]
    assert publish.envelopes == []


async def test_the_webhook_answers_only_after_publish_returned(api, store):
    publish = RecordingPublish()
    publish.gate = asyncio.Event()
    async with channel_running(api, store, publish) as (_, url):
        answer = asyncio.create_task(
            post_update(api, url, tg.text_update("my transfer is pending"))
        )
        await asyncio.wait_for(publish.entered.wait(), 10)
        await asyncio.sleep(0.2)
        assert not answer.done()
        publish.gate.set()
        status, body = await answer
    assert status == 200 and body["published"] == 1


async def test_the_webhook_answers_503_when_kafka_did_not_acknowledge_and_the_retry_is_accepted(
    api, store
):
    publish = RecordingPublish()
    publish.refuse = 1
    update = tg.text_update("my transfer failed", update_id=api.next_update_id())
    async with channel_running(api, store, publish) as (_, url):
        first = await post_update(api, url, update)
        second = await post_update(api, url, update)  # Telegram's retry
    assert first[0] == 503
    assert second == (200, {"ok": True, "published": 1})
    assert [e.text for e in publish.envelopes] == ["my transfer failed"]


async def test_a_repeated_update_id_is_published_once(api, store):
    publish = RecordingPublish()
    update = tg.text_update("where is my money", update_id=api.next_update_id())
    async with channel_running(api, store, publish) as (_, url):
        assert (await post_update(api, url, update))[0] == 200
        status, body = await post_update(api, url, update)
    assert status == 200 and body["duplicate"] is True
    assert len(publish.envelopes) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"message": {}}',
        b'{"update_id": "7"}',
        b"[" * 5000 + b"]" * 5000,
    ],
    ids=["not-json", "not-object", "no-update-id", "string-update-id", "nested-5000-deep"],
)
async def test_a_malformed_webhook_body_gets_400_with_a_reason(api, store, body):
    publish = RecordingPublish()
    async with channel_running(api, store, publish) as (_, url):
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url, data=body, headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"}
            ) as r,
        ):
            assert r.status == 400
            assert "Update" in (await r.json())["error"]
    assert publish.envelopes == []


async def test_the_webhook_route_says_it_is_off_in_polling_mode(api, store):
    async with channel_running(api, store, RecordingPublish(), webhook=False) as (_, url):
        status, body = await post_update(api, url, tg.text_update("hi"))
    assert status == 404 and "polls" in body["error"]


# --- what the handlers make of updates -------------------------------------------------------


async def test_a_text_message_becomes_an_envelope_keyed_by_chat(api, store):
    publish = RecordingPublish()
    sender = tg.user(user_id=5551, first_name="Ana", last_name="Lima", username="ana_l")
    update = tg.text_update("my transfer failed", sender)
    async with channel_running(api, store, publish) as (_, url):
        assert (await post_update(api, url, update))[0] == 200
    [envelope] = publish.envelopes
    assert envelope.channel == "telegram"
    assert envelope.conversation_key == "telegram:5551"
    assert envelope.sender.address == "5551" and envelope.sender.name == "Ana Lima"
    assert envelope.channel_message_id == f"5551:{update['message']['message_id']}"
    assert envelope.thread["telegram_username"] == "ana_l"
    assert "verified_phone" not in envelope.thread


async def test_an_edited_message_is_a_new_envelope_with_its_own_id(api, store):
    publish = RecordingPublish()
    original = tg.text_update("transfer failed", update_id=api.next_update_id())
    edited = tg.edited_update(
        original, "transfer failed, error code E1042", update_id=api.next_update_id()
    )
    async with channel_running(api, store, publish) as (_, url):
        assert (await post_update(api, url, original))[0] == 200
        assert (await post_update(api, url, edited))[0] == 200
    first, second = publish.envelopes
    assert first.message_id != second.message_id
    assert second.channel_message_id.startswith(first.channel_message_id + ":edit:")
    assert second.text == "[edited] transfer failed, error code E1042"
    assert second.thread["edited"] == "true"


async def test_a_photo_is_recorded_as_attachment_metadata_of_its_largest_size(api, store):
    publish = RecordingPublish()
    async with channel_running(api, store, publish) as (_, url):
        assert (await post_update(api, url, tg.photo_update("the error screen")))[0] == 200
        assert (await post_update(api, url, tg.photo_update()))[0] == 200
    with_caption, without = publish.envelopes
    assert with_caption.text == "the error screen" and without.text == "[photo]"
    [attachment] = with_caption.attachments
    assert (attachment.content_type, attachment.size) == ("image/jpeg", 98211)
    assert with_caption.thread["telegram_file_id"] == "AgACAgQAAxkBAAIBlarge"


async def test_a_document_is_recorded_as_attachment_metadata(api, store):
    publish = RecordingPublish()
    update = tg.document_update("statement.pdf", "application/pdf", 48213, caption="charged twice")
    async with channel_running(api, store, publish) as (_, url):
        assert (await post_update(api, url, update))[0] == 200
    [envelope] = publish.envelopes
    assert envelope.text == "charged twice"
    assert [a.model_dump() for a in envelope.attachments] == [
        {"name": "statement.pdf", "content_type": "application/pdf", "size": 48213}
    ]


@pytest.mark.parametrize(
    ("language_code", "expected", "button"),
    [
        ("zh-hans", "钱包官方 Telegram 客服", "分享我的手机号"),
        ("en", "official customer service", "Share my phone number"),
        (None, "official customer service", "Share my phone number"),
    ],
    ids=["zh", "en", "unknown-language"],
)
async def test_start_greets_in_the_users_language_with_the_contact_button(
    api, store, language_code, expected, button
):
    publish = RecordingPublish()
    sender = tg.user(user_id=6061, language_code=language_code)
    async with channel_running(api, store, publish) as (_, url):
        assert (await post_update(api, url, tg.text_update("/start", sender)))[0] == 200
    [call] = api.calls_to("sendMessage")
    assert call.status == 200 and int(call.params["chat_id"]) == 6061
    assert expected in call.params["text"]
    assert "password" in call.params["text"] or "密码" in call.params["text"]
    assert call.json("reply_markup")["keyboard"] == [[{"text": button, "request_contact": True}]]
    assert publish.envelopes == []  # a greeting is not a support question


async def test_sharing_ones_own_contact_links_the_phone_and_later_messages_carry_it(api, store):
    publish = RecordingPublish()
    me = tg.user(user_id=7071)
    async with channel_running(api, store, publish) as (_, url):
        assert (
            await post_update(
                api, url, tg.contact_update(me, "8613800138000", contact_user_id=7071)
            )
        )[0] == 200
        assert (await post_update(api, url, tg.text_update("I forgot my PIN", me)))[0] == 200
    identity = await store.identity_for("telegram", "7071")
    assert identity["phone"] == "+8613800138000" and identity["verified_at"]
    [envelope] = publish.envelopes  # the link itself is not a support message
    assert envelope.thread["verified_phone"] == "+8613800138000"
    assert "linked" in api.sent_to(7071)[0]
    assert [c.status for c in api.calls_to("sendMessage")] == [200]


async def test_someone_elses_contact_is_recorded_as_a_message_and_never_linked(api, store):
    publish = RecordingPublish()
    me = tg.user(user_id=8081)
    async with channel_running(api, store, publish) as (_, url):
        update = tg.contact_update(me, "+447700900123", contact_user_id=9999, first_name="Bob")
        assert (await post_update(api, url, update))[0] == 200
    assert await store.identity_for("telegram", "8081") is None
    assert await store.identity_for("telegram", "9999") is None
    [envelope] = publish.envelopes
    assert envelope.text == "[shared a contact: Bob, +447700900123]"
    assert envelope.thread["contact_verified"] == "false"


async def test_a_forwarded_copy_of_ones_own_contact_is_not_a_verification(api, store):
    publish = RecordingPublish()
    me = tg.user(user_id=8082)
    update = tg.contact_update(
        me, "8613900000000", contact_user_id=8082, forwarded_from=tg.user(user_id=1234)
    )
    async with channel_running(api, store, publish) as (_, url):
        assert (await post_update(api, url, update))[0] == 200
    assert await store.identity_for("telegram", "8082") is None
    assert len(publish.envelopes) == 1


async def test_an_unsupported_message_gets_told_what_the_bot_reads_and_publishes_nothing(
    api, store
):
    publish = RecordingPublish()
    async with channel_running(api, store, publish) as (_, url):
        assert (await post_update(api, url, tg.sticker_update(tg.user(user_id=9091))))[0] == 200
    assert publish.envelopes == []
    assert "text, photos and documents" in api.sent_to(9091)[0]
    assert [c.status for c in api.calls_to("sendMessage")] == [200]


async def test_group_chat_messages_are_ignored(api, store):
    publish = RecordingPublish()
    group = {"id": -100123, "type": "supergroup", "title": "Wallet fans"}
    async with channel_running(api, store, publish) as (_, url):
        assert (await post_update(api, url, tg.text_update("my payment failed", chat=group)))[
            0
        ] == 200
    assert publish.envelopes == []
    assert api.calls_to("sendMessage") == []


# --- polling ---------------------------------------------------------------------------------


async def test_polling_confirms_an_update_only_after_it_was_published(api, store):
    publish = RecordingPublish()
    publish.refuse = 1
    async with channel_running(api, store, publish, webhook=False):
        update = await api.push_update(tg.text_update("my transfer is stuck"))
        await api.wait_for(lambda: len(publish.envelopes) == 1)
        await api.wait_for(
            lambda: any(
                c.params.get("offset") == str(update["update_id"] + 1)
                for c in api.calls_to("getUpdates")
            )
        )
    polls = api.calls_to("getUpdates")
    # Refused once: the next poll asks again without confirming it (same offset as before).
    assert polls[1].params.get("offset") == polls[0].params.get("offset")
    assert [c.method for c in api.calls[:2]] == ["getMe", "deleteWebhook"]
    assert api.webhook is None


# --- sender ----------------------------------------------------------------------------------


def outbound(chat_id: int, text: str) -> Outbound:
    return Outbound(
        conversation_id="c1",
        conversation_key=f"telegram:{chat_id}",
        channel="telegram",
        to=str(chat_id),
        text=text,
    )


@contextlib.asynccontextmanager
async def sender_for(api, store, sleeps: list[float] | None = None, **options):
    async def recording_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        await asyncio.sleep(seconds)

    cfg = settings_for(api)
    from telegram import Bot

    sender = TelegramSender(
        Bot(api.token, base_url=cfg.bot_url(), base_file_url=cfg.file_url()),
        store,
        sleep=recording_sleep,
        **options,
    )
    await sender.start()
    try:
        yield sender
    finally:
        await sender.stop()


async def test_the_sender_waits_retry_after_on_429_then_sends(api, store):
    api.add_chat(tg.private_chat(tg.user(user_id=1212)))
    api.rate_limit_next("sendMessage", retry_after=1)
    sleeps: list[float] = []
    async with sender_for(api, store, sleeps) as sender:
        await sender.send(outbound(1212, "Your transfer has been refunded."))
    assert sleeps == [1.0]
    calls = api.calls_to("sendMessage")
    assert len(calls) == 2 and calls[1].at - calls[0].at >= 1.0
    assert api.sent_to(1212) == ["Your transfer has been refunded."] * 2  # the first got the 429


async def test_a_flood_wait_longer_than_allowed_is_raised_for_the_sender_service_to_retry(
    api, store
):
    from telegram.error import RetryAfter

    api.add_chat(tg.private_chat(tg.user(user_id=1213)))
    api.rate_limit_next("sendMessage", retry_after=120)
    async with sender_for(api, store, [], max_retry_after=60) as sender:
        with pytest.raises(RetryAfter):
            await sender.send(outbound(1213, "hello"))


async def test_the_sender_splits_text_over_4096_characters_into_ordered_messages_to_the_same_chat(
    api, store
):
    api.add_chat(tg.private_chat(tg.user(user_id=3434)))
    text = " ".join(f"step{i}" for i in range(1300))  # 10,589 characters
    async with sender_for(api, store) as sender:
        await sender.send(outbound(3434, text))
    pieces = api.sent_to(3434)
    assert len(pieces) == 3
    assert all(len(p) <= 4096 for p in pieces)
    assert " ".join(pieces) == text


async def test_a_retried_split_reply_resends_only_the_pieces_not_yet_sent(api, store):
    api.add_chat(tg.private_chat(tg.user(user_id=3535)))
    api.fail_next("sendMessage", 502, "Bad Gateway", after=1)
    reply = outbound(3535, "a " * 3000)
    async with sender_for(api, store) as sender:
        with pytest.raises(Exception, match="Bad Gateway"):
            await sender.send(reply)
        await sender.send(reply)  # the sender service's retry of the same record
    assert len(api.sent_to(3535)) == 3  # piece 1, piece 2 refused, piece 2 again


@pytest.mark.parametrize(
    ("setup", "reason"),
    [(lambda api: api.blocked.add(4545), "blocked"), (lambda api: None, "Chat not found")],
    ids=["blocked-bot", "unknown-chat"],
)
async def test_a_blocked_bot_or_unknown_chat_is_a_permanent_delivery_failure(
    api, store, setup, reason
):
    api.add_chat(tg.private_chat(tg.user(user_id=4545)))
    setup(api)
    async with sender_for(api, store) as sender:
        with pytest.raises(DeliveryFailed, match=reason):
            await sender.send(outbound(4545 if reason == "blocked" else 4546, "hello"))


# --- identities in the store (both databases) ------------------------------------------------


async def test_the_store_keeps_one_verified_phone_per_channel_user(database_url):
    async with ConversationStore(database_url) as s:
        assert await s.identity_for("telegram", "42") is None
        await s.link_identity("telegram", "42", "+8613800000001")
        await s.link_identity("telegram", "42", "+8613800000002")
        identity = await s.identity_for("telegram", "42")
        assert identity["phone"] == "+8613800000002" and identity["verified_at"]
        assert await s.identity_for("sms", "42") is None


# --- the whole router ------------------------------------------------------------------------


@pytest.fixture
def telegram_env(monkeypatch, api):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", api.token)
    monkeypatch.setenv("TELEGRAM_SECRET_TOKEN", SECRET)
    monkeypatch.setenv("SUPPORTROUTER_TELEGRAM_API_BASE_URL", api.base_url)
    monkeypatch.setenv("SUPPORTROUTER_TELEGRAM_POLL_TIMEOUT_SECONDS", "2")


async def wait_until(check, timeout: float = 20):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def stored_messages(router: Router, conversation_key: str) -> list[dict]:
    return [m for m in await router.store.history(conversation_key) if m["direction"] == "in"]


async def test_polling_delivers_a_text_update_into_the_store(api, telegram_env, tmp_path):
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/r.db", channels=["telegram"])
    async with Router(settings) as router:
        await api.push_update(tg.text_update("my transfer failed", tg.user(user_id=2121)))
        [stored] = await wait_until(lambda: stored_messages(router, "telegram:2121"))
    assert stored["text"] == "my transfer failed" and stored["channel"] == "telegram"


async def test_a_webhook_with_the_right_secret_is_answered_200_and_lands_in_the_store(
    api, telegram_env, tmp_path
):
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/r.db", channels=["telegram"], public_url=PUBLIC_URL
    )
    async with Router(settings) as router:
        url = f"http://127.0.0.1:{router.gateway.port}{WEBHOOK_PATH}"
        status, _ = await post_update(
            api, url, tg.text_update("I forgot my password", tg.user(user_id=2222))
        )
        assert status == 200
        [stored] = await wait_until(lambda: stored_messages(router, "telegram:2222"))
    assert stored["text"] == "I forgot my password"
    assert stored["meta"]["thread"]["telegram_user_id"] == "2222"


async def inbound_records(router: Router, until_text: str) -> list[str]:
    """Every inbound record on both lanes, read from the beginning until one carries until_text."""
    bus = router.bus
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bus.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(
            bus.bootstrap_servers, [bus.topics.inbound_urgent, bus.topics.inbound_standard]
        )
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        texts: list[str] = []
        deadline = asyncio.get_running_loop().time() + 20
        while until_text not in texts:
            assert asyncio.get_running_loop().time() < deadline, (
                f"never saw {until_text!r}: {texts}"
            )
            for records in (await consumer.getmany(timeout_ms=500)).values():
                texts.extend(json.loads(r.value)["text"] for r in records)
        return texts
    finally:
        await consumer.stop()


async def test_a_webhook_with_a_wrong_secret_gets_403_and_nothing_reaches_kafka(
    api, telegram_env, tmp_path
):
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/r.db", channels=["telegram"], public_url=PUBLIC_URL
    )
    async with Router(settings) as router:
        url = f"http://127.0.0.1:{router.gateway.port}{WEBHOOK_PATH}"
        for secret in ("wrong-secret", None):
            status, _ = await post_update(
                api, url, tg.text_update("forged: freeze my account"), secret=secret
            )
            assert status == 403
        # A genuine update afterwards marks the end of what could have reached the topics.
        assert (await post_update(api, url, tg.text_update("genuine canary")))[0] == 200
        texts = await inbound_records(router, "genuine canary")
    assert texts == ["genuine canary"]


async def test_the_webhook_answers_503_when_kafka_is_not_acknowledging(api, telegram_env, tmp_path):
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/r.db", channels=["telegram"], public_url=PUBLIC_URL
    )
    async with Router(settings) as router:
        url = f"http://127.0.0.1:{router.gateway.port}{WEBHOOK_PATH}"
        await router.bus.stop()  # the producer is gone: intake raises instead of acknowledging
        status, body = await post_update(api, url, tg.text_update("my transfer failed"))
    assert status == 503 and "retry" in body["error"]


async def test_an_ipad_question_lands_as_multi_device_in_accounts_and_the_agent_reply_reaches_the_chat(
    api, telegram_env, database_url
):
    settings = make_settings(database_url, channels=["chat", "telegram"], public_url=PUBLIC_URL)
    async with Router(settings) as router, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{router.gateway.port}"
        customer = tg.user(user_id=918273645, first_name="Lin", last_name=None, username=None)
        status, _ = await post_update(api, base + WEBHOOK_PATH, tg.text_update(IPAD, customer))
        assert status == 200

        async with http.post(
            base + "/api/login", json={"username": "admin", "password": "test-admin-password"}
        ) as r:
            admin = {"Authorization": "Bearer " + (await r.json())["token"]}

        async def in_accounts():
            async with http.get(base + "/api/queues/accounts/conversations", headers=admin) as r:
                return [c for c in (await r.json())["conversations"] if c["channel"] == "telegram"]

        [conversation] = await wait_until(in_accounts)
        assert conversation["category"] == "multi_device"
        assert conversation["queue"] == "accounts"

        reply = (
            "You can stay signed in on your phone and your iPad: turn on multi-device in Settings."
        )
        async with http.post(
            base + f"/api/conversations/{conversation['id']}/messages",
            headers=admin,
            json={"text": reply},
        ) as r:
            assert r.status == 201
            reply_id = (await r.json())["id"]
        await api.wait_for(lambda: reply in api.sent_to(918273645))

        async def delivered():
            detail = await router.store.conversation(conversation["id"])
            [m] = [m for m in detail["messages"] if m["id"] == reply_id]
            return m["delivery_status"] == "sent" and m

        stored_reply = await wait_until(delivered)
    assert stored_reply["provider_message_id"].startswith("918273645:")
