"""The send intent: a reply is marked `sending` before its provider is called, so one found
`sending` when its record comes again (the sender died during the call) has an unknown outcome,
and is resolved without a blind second send where the provider can be asked.

Real parts: the broker, SQLite and PostgreSQL, the real twilio client over HTTP to the stand-in
for Twilio's API (which answers the message list as Twilio does), python-telegram-bot against
the Bot API stand-in. A crash is what it leaves in the store: the status a crashed sender wrote
before its call, then the record handed to a new sender in the same group.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from telegram import Bot

from channels.telegram.sender import TelegramSender
from channels.twilio.rest import TwilioRest
from channels.twilio.sender import TwilioMessageSender, split_message
from router.bus.kafka import KafkaBus
from router.core.channel_settings import TelegramSettings, TwilioSettings
from router.core.envelope import Channel, Classification, Envelope, Outbound, Sender, Urgency
from router.services.outbound_relay import OutboundRelay
from router.services.reply_requeue import ReplyRequeue
from router.services.sender import SenderService
from router.store.conversations import ConversationStore
from router.store.schema import messages
from tests import telegram_standin as tg
from tests.kafka_helpers import fetch_uncommitted
from tests.store_helpers import statements_run
from tests.test_batch_sender import (
    LONG,
    conversation,
    publish,
    replies,
    run_until_committed,
    statuses,
)
from tests.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, TwilioStandIn

CHAT_ID = 31337


@dataclass
class Parts:
    bus: KafkaBus
    store: ConversationStore
    twilio: TwilioStandIn
    telegram: tg.BotApiStandIn

    def service(self) -> SenderService:
        settings = TwilioSettings(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            api_base_url=self.twilio.url,
            retry_backoff_seconds=0.001,
        )
        sms = TwilioMessageSender(TwilioRest(settings), self.store, whatsapp=False)
        cfg = TelegramSettings(bot_token=self.telegram.token, api_base_url=self.telegram.base_url)
        bot = Bot(self.telegram.token, base_url=cfg.bot_url(), base_file_url=cfg.file_url())
        telegram = TelegramSender(bot, self.store)
        return SenderService(self.bus, self.store, {"sms": sms, "telegram": telegram})

    def sms_to(self, number: str) -> list[str]:
        return [m["body"] for m in self.twilio.messages if m["to"] == number]

    def twilio_calls(self, method: str) -> int:
        return sum(1 for r in self.twilio.requests if r.method == method)


@pytest.fixture
async def parts(database_url, broker) -> AsyncIterator[Parts]:
    settings = broker.settings(database_url=database_url, partitions=1)
    async with (
        ConversationStore(database_url) as store,
        TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN) as twilio,
        tg.BotApiStandIn() as telegram,
    ):
        telegram.add_chat(tg.private_chat(tg.user(user_id=CHAT_ID)))
        async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
            yield Parts(bus, store, twilio, telegram)


def metric(name: str, channel: str) -> float:
    return REGISTRY.get_sample_value(name, {"channel": channel}) or 0.0


async def telegram_conversation(store: ConversationStore) -> dict:
    envelope = Envelope.new(
        channel=Channel.TELEGRAM,
        channel_message_id=f"{CHAT_ID}:1",
        conversation_key=f"telegram:{CHAT_ID}",
        sender=Sender(address=str(CHAT_ID)),
        text="my transfer failed",
    ).model_copy(
        update={
            "classification": Classification(
                category="transaction_failed", urgency=Urgency.NORMAL, confidence=0.9, language="en"
            )
        }
    )
    return (await store.record_inbound(envelope, "payments", lambda *_: None)).conversation


async def attempts(store: ConversationStore, out: Outbound) -> int:
    intent = await store.send_intent(out.message_id)
    assert intent is not None
    return intent.attempts


# --- Twilio: the provider can tell ------------------------------------------------------------


async def test_a_reply_sent_normally_records_its_intent_first_and_is_sent_once(parts):
    [out] = await replies(
        parts.store, await conversation(parts.store, Channel.SMS, "+15550002001"), "hello"
    )
    await publish(parts.bus, [out])
    await run_until_committed(parts.service(), 1)
    assert parts.sms_to("+15550002001") == ["hello"]
    assert await statuses(parts.store, [out]) == ["sent"]
    assert await attempts(parts.store, out) == 1
    assert parts.twilio_calls("GET") == 0  # nothing unknown: no lookup


async def test_a_reply_left_sending_that_twilio_has_is_marked_sent_and_not_sent_again(parts):
    customer = "+15550002002"
    [out] = await replies(
        parts.store, await conversation(parts.store, Channel.SMS, customer), "refunded"
    )
    await publish(parts.bus, [out])
    # The crashed sender recorded its intent, Twilio took the message, the sender died.
    assert await parts.store.record_send_intent(out.message_id)
    taken = parts.twilio.add_sent(customer, "refunded")
    found_before = metric("supportrouter_replies_found_at_provider_total", "sms")

    await run_until_committed(parts.service(), 1)

    assert parts.sms_to(customer) == ["refunded"]  # the one the crashed sender had sent
    assert parts.twilio_calls("POST") == 0 and parts.twilio_calls("GET") == 1
    conversation_now = await parts.store.conversation(out.conversation_id)
    [reply] = [m for m in conversation_now["messages"] if m["id"] == out.message_id]
    assert (reply["delivery_status"], reply["provider_message_id"]) == ("sent", taken["sid"])
    assert metric("supportrouter_replies_found_at_provider_total", "sms") == found_before + 1


async def test_a_reply_left_sending_that_twilio_does_not_have_is_sent_once(parts):
    customer = "+15550002003"
    [out] = await replies(
        parts.store, await conversation(parts.store, Channel.SMS, customer), "on its way"
    )
    await publish(parts.bus, [out])
    assert await parts.store.record_send_intent(out.message_id)  # died before Twilio had it
    parts.twilio.add_sent(customer, "an earlier, different reply")
    resent_before = metric("supportrouter_replies_resent_unknown_outcome_total", "sms")

    await run_until_committed(parts.service(), 1)

    assert parts.sms_to(customer) == ["an earlier, different reply", "on its way"]
    assert await statuses(parts.store, [out]) == ["sent"]
    assert await attempts(parts.store, out) == 2
    # Twilio said it did not have it: an ordinary send, not a blind retry.
    assert metric("supportrouter_replies_resent_unknown_outcome_total", "sms") == resent_before


async def test_a_long_reply_cut_short_sends_only_the_parts_twilio_does_not_have(parts):
    customer = "+15550002004"
    [out] = await replies(parts.store, await conversation(parts.store, Channel.SMS, customer), LONG)
    await publish(parts.bus, [out])
    pieces = split_message(LONG)
    assert len(pieces) >= 3
    assert await parts.store.record_send_intent(out.message_id)
    for piece in pieces[:2]:  # the crashed sender got the first two parts out
        parts.twilio.add_sent(customer, piece)

    await run_until_committed(parts.service(), 1)

    assert parts.sms_to(customer) == pieces
    assert await statuses(parts.store, [out]) == ["sent"]


# --- Telegram: the provider cannot tell ---------------------------------------------------------


async def test_a_telegram_reply_left_sending_is_sent_once_more_and_counted(parts):
    [out] = await replies(parts.store, await telegram_conversation(parts.store), "we are on it")
    await publish(parts.bus, [out])
    assert await parts.store.record_send_intent(out.message_id)
    resent_before = metric("supportrouter_replies_resent_unknown_outcome_total", "telegram")

    await run_until_committed(parts.service(), 1)

    assert parts.telegram.sent_to(CHAT_ID) == ["we are on it"]
    assert await statuses(parts.store, [out]) == ["sent"]
    assert await attempts(parts.store, out) == 2
    assert (
        metric("supportrouter_replies_resent_unknown_outcome_total", "telegram")
        == resent_before + 1
    )


async def test_a_telegram_reply_whose_one_retry_was_also_cut_short_is_not_sent_a_third_time(
    parts,
):
    [out] = await replies(parts.store, await telegram_conversation(parts.store), "we are on it")
    await publish(parts.bus, [out])
    # Died during the send, and again during its one retry.
    assert await parts.store.record_send_intent(out.message_id)
    assert await parts.store.record_send_intent(out.message_id, "resending")
    resent_before = metric("supportrouter_replies_resent_unknown_outcome_total", "telegram")
    unknown_before = metric("supportrouter_replies_unknown_outcome_total", "telegram")

    await run_until_committed(parts.service(), 1)

    assert parts.telegram.sent_to(CHAT_ID) == []
    assert await statuses(parts.store, [out]) == ["unknown"]
    assert metric("supportrouter_replies_resent_unknown_outcome_total", "telegram") == resent_before
    assert metric("supportrouter_replies_unknown_outcome_total", "telegram") == unknown_before + 1


async def test_a_send_that_fails_is_queued_again_and_retried_as_an_ordinary_send(parts):
    parts.telegram.fail_next("sendMessage", 502, "Bad Gateway")
    [out] = await replies(parts.store, await telegram_conversation(parts.store), "retry me")
    await publish(parts.bus, [out])
    resent_before = metric("supportrouter_replies_resent_unknown_outcome_total", "telegram")

    await run_until_committed(parts.service(), 1)

    assert parts.telegram.sent_to(CHAT_ID)[-1:] == ["retry me"]
    assert await statuses(parts.store, [out]) == ["sent"]
    assert metric("supportrouter_replies_resent_unknown_outcome_total", "telegram") == resent_before


# --- published --------------------------------------------------------------------------------


async def test_marking_replies_published_leaves_their_messages_untouched(parts):
    """Published is a row of `unpublished_replies` gone, not an update of each reply in
    `messages` (which rewrote the reply and its indexes: docs/performance.md, "Twentieth
    round"); the relay then finds only the others."""
    store = parts.store
    sms = await conversation(store, Channel.SMS, "+15550002006")
    outs = await replies(store, sms, "one", "two", "three")

    async def stored_replies() -> list:
        async with store.engine.connect() as conn:
            query = sa.select(messages).where(messages.c.direction == "out")
            return [tuple(row) for row in await conn.execute(query.order_by(messages.c.seq))]

    before = await stored_replies()
    with statements_run(store.engine) as statements:
        await store.mark_published(outs[0].message_id, outs[2].message_id)
    assert not [s for s in statements if "messages" in s.split("WHERE")[0]]
    assert await stored_replies() == before
    assert [o.message_id for o in await store.unpublished()] == [outs[1].message_id]


# --- requeue_unsent -------------------------------------------------------------------------------


async def test_requeue_unsent_puts_back_exactly_the_published_replies_not_sent_yet(parts):
    store = parts.store
    sms = await conversation(store, Channel.SMS, "+15550002005")
    outs = await replies(store, sms, *(f"reply {i}" for i in range(8)))
    chat_reply = Outbound(
        conversation_id=sms["id"],
        conversation_key="chat:abc",
        channel=Channel.CHAT,
        to="abc",
        text="over the socket",
    )
    await store.add_outbound(chat_reply)
    await store.mark_published(*(o.message_id for o in outs[:7]), chat_reply.message_id)
    # outs[7] stays unpublished; the published ones get every kind of status.
    for out, status in zip(
        outs,
        [None, "queued", "sending", "resending", "sent", "sandboxed", "failed", "queued"],
        strict=True,
    ):
        async with store.engine.begin() as conn:
            await conn.execute(
                messages.update()
                .where(messages.c.message_id == out.message_id)
                .values(delivery_status=status)
            )
    assert await store.requeue_unsent() == 4
    assert [o.message_id for o in await store.unpublished()] == [
        o.message_id for o in (outs[0], outs[1], outs[2], outs[3], outs[7])
    ]
    assert await store.requeue_unsent() == 0  # nothing published is unsent now

    # The relay publishes them again, each once.
    await OutboundRelay(parts.bus, store).flush()
    topic = parts.bus.topics.outbound
    on_topic = Counter(
        Outbound.from_bytes(r.value).message_id
        for r in await fetch_uncommitted(parts.bus, [topic], "requeue-check", 5)
    )
    # The gateway's chat reply is left alone: not published again.
    assert on_topic == {o.message_id: 1 for o in (outs[0], outs[1], outs[2], outs[3], outs[7])}
    assert await store.unpublished() == []


async def test_a_reply_marked_published_after_the_broker_restarted_empty_goes_out_again(parts):
    """The race ReplyRequeue closes. A dispatcher had its replies acknowledged by the embedded
    broker, which then died and came back empty. The restart's `requeue_unsent` passed them by,
    as they were still unpublished, and only then did the dispatcher mark them published: on a
    broker that no longer has them."""
    store = parts.store
    sms = await conversation(store, Channel.SMS, "+15550002006")
    outs = await replies(store, sms, "in the race", "sent meanwhile", "not published yet")
    ids = [o.message_id for o in outs]
    requeue = ReplyRequeue(store, poll_seconds=0.01)
    try:
        await requeue.broker_restarted()
        assert [o.message_id for o in await store.unpublished()] == ids  # none published yet
        # The sender had the second from the old broker and sent it; then the dispatcher's mark.
        await store.set_delivery_status(outs[1].message_id, "sent")
        await store.mark_published(outs[0].message_id, outs[1].message_id)
        async with asyncio.timeout(30):  # until the watch put the first back
            while [o.message_id for o in await store.unpublished()] != [ids[0], ids[2]]:
                await asyncio.sleep(0.01)
    finally:
        await requeue.stop()
    # Put back once; the one sent meanwhile is not; the one never published stays as it was.
    assert [o.message_id for o in await store.unpublished()] == [ids[0], ids[2]]
    await OutboundRelay(parts.bus, store).flush()
    on_topic = Counter(
        Outbound.from_bytes(r.value).message_id
        for r in await fetch_uncommitted(parts.bus, [parts.bus.topics.outbound], "race-check", 2)
    )
    assert on_topic == {ids[0]: 1, ids[2]: 1}
