"""Telegram updates that cannot be handled are acknowledged and logged once, never retried
forever; hostile webhook bodies get a 4xx, and the secret is checked before any is read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from structlog.testing import capture_logs

from channels.telegram.inbound import SECRET_HEADER
from router.store.conversations import ConversationStore
from tests import telegram_standin as tg
from tests.conftest import migrated_sqlite
from tests.test_telegram import SECRET, RecordingPublish, channel_running, post_update


@pytest.fixture
async def api() -> AsyncIterator[tg.BotApiStandIn]:
    async with tg.BotApiStandIn() as standin:
        yield standin


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[ConversationStore]:
    async with ConversationStore(await migrated_sqlite(tmp_path / "tg.db")) as s:
        yield s


def dropped(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "telegram.update_dropped"]


UNHANDLEABLE = {
    "message-not-object": lambda: {"message": "just a string"},
    "channel-post-without-chat": lambda: {
        "channel_post": {"message_id": 1, "date": 1, "text": "x"}
    },
    "message-without-date": lambda: {"message": {"message_id": 1, "chat": {"id": 5}}},
    "chat-of-wrong-type": lambda: {"message": {**tg.message(text="hi"), "chat": [1, 2]}},
}


@pytest.mark.parametrize("make", list(UNHANDLEABLE.values()), ids=list(UNHANDLEABLE))
async def test_an_update_that_cannot_be_handled_is_acknowledged_and_logged_once(api, store, make):
    publish = RecordingPublish()
    update = {"update_id": api.next_update_id(), **make()}
    async with channel_running(api, store, publish) as (_, url):
        with capture_logs() as logs:
            first = await post_update(api, url, update)
            again = await post_update(api, url, update)
    assert first[0] == 200 and again[0] == 200  # a 4xx or 5xx would be retried by Telegram
    assert again[1].get("duplicate") is True
    assert [e["update_id"] for e in dropped(logs)] == [update["update_id"]]
    assert publish.envelopes == []


async def test_lone_surrogates_in_a_webhook_update_are_cleaned_and_the_message_kept(api, store):
    publish = RecordingPublish()
    sender = tg.user(first_name="Mei\ud800", username="mei\udfff")
    update = tg.text_update("my transfer failed \ud83d", sender, update_id=api.next_update_id())
    async with channel_running(api, store, publish) as (_, url):
        status, _ = await post_update(api, url, update)
    assert status == 200
    [envelope] = publish.envelopes
    assert envelope.text == "my transfer failed \ufffd"
    envelope.to_bytes()  # UTF-8 all the way to Kafka


async def test_polling_confirms_an_unreadable_update_once_and_goes_on(api, store):
    publish = RecordingPublish()
    async with channel_running(api, store, publish, webhook=False):
        with capture_logs() as logs:
            poison = await api.push_update({"message": "just a string"})
            await api.push_update(tg.text_update("my card was charged twice"))
            await api.wait_for(lambda: len(publish.envelopes) == 1)
    assert publish.envelopes[0].text == "my card was charged twice"
    assert [e["update_id"] for e in dropped(logs)] == [poison["update_id"]]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),
        ({SECRET_HEADER: "forged"}, 403),
        ({SECRET_HEADER: SECRET}, 415),
    ],
    ids=["no-secret", "wrong-secret", "right-secret"],
)
async def test_a_bogus_charset_gets_403_without_the_secret_and_415_with_it(
    api, store, headers, status
):
    body = b'{"update_id": 1, "message": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    async with channel_running(api, store, RecordingPublish()) as (_, url):
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url,
                data=body,
                headers={**headers, "Content-Type": "application/json; charset=x-bogus"},
            ) as r,
        ):
            assert r.status == status
            assert "error" in await r.json()
