"""The sender delivers a partition's replies a chunk at a time: still once each, in order.

Replies on a channel with a provider (SMS, through the real twilio client to the stand-in for
Twilio's API) go one call each, a few conversations side by side; replies on a channel without
one are kept in the sandbox outbox, a chunk in one transaction. A crash between sending and
committing, or a failure that makes the loop hand the chunk over again record by record, must
neither send nor keep any reply twice, and one conversation's replies arrive in their order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from channels.twilio.addresses import conversation_key
from channels.twilio.rest import TwilioRest
from channels.twilio.sender import TwilioMessageSender
from router.bus.kafka import KafkaBus
from router.core.channel_settings import TwilioSettings
from router.core.envelope import Channel, Classification, Envelope, Outbound, Sender, Urgency
from router.services.sender import SenderService
from router.store.conversations import ConversationStore
from router.store.schema import outbox
from tests.kafka_helpers import committed, fetch_uncommitted, records_in, settle
from tests.store_helpers import statements_run
from tests.test_reliability import wait_for
from tests.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, TwilioStandIn, message_sid

LONG = " ".join(
    f"Step {i}: open the app, go to Me, then Wallet, then tap the transfer." for i in range(60)
)


@dataclass
class Parts:
    bus: KafkaBus
    store: ConversationStore
    standin: TwilioStandIn

    def service(self, send_attempts: int = 3) -> SenderService:
        settings = TwilioSettings(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            api_base_url=self.standin.url,
            retry_backoff_seconds=0.001,
            send_attempts=send_attempts,
        )
        sms = TwilioMessageSender(TwilioRest(settings), self.store, whatsapp=False)
        return SenderService(self.bus, self.store, {"sms": sms})  # email: no sender, the sandbox

    def bodies_to(self, number: str) -> list[str]:
        return [m["body"] for m in self.standin.messages if m["to"] == number]


@pytest.fixture
async def parts(database_url, broker) -> AsyncIterator[Parts]:
    """A broker with one partition per topic, a store and the Twilio stand-in; no router."""
    settings = broker.settings(database_url=database_url, partitions=1)
    async with (
        ConversationStore(database_url, sqlite_on_loop=True) as store,
        TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN) as standin,
    ):
        async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
            yield Parts(bus, store, standin)


async def conversation(
    store: ConversationStore, channel: Channel, customer: str, sid: str | None = None
) -> dict:
    """A customer's conversation, opened by one classified inbound message (its provider id
    `sid`, or a new one)."""
    key = (
        conversation_key(channel, customer, OUR_NUMBER)
        if channel is Channel.SMS
        else f"email:{customer}"
    )
    envelope = Envelope.new(
        channel=channel,
        channel_message_id=sid or message_sid(),
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
    return (await store.record_inbound(envelope, "payments", lambda *_: None)).conversation


async def replies(store: ConversationStore, conversation: dict, *texts: str) -> list[Outbound]:
    """Agents' replies, stored as the API stores them: queued, waiting for the sender."""
    outs = []
    for text in texts:
        out = Outbound(
            conversation_id=conversation["id"],
            conversation_key=conversation["conversation_key"],
            channel=conversation["channel"],
            to=conversation["customer_address"],
            text=text,
            author="agent",
        )
        await store.add_outbound(out)
        outs.append(out)
    return outs


async def publish(bus: KafkaBus, outs: list[Outbound]) -> None:
    await bus.publish_many(
        bus.topics.outbound, ((o.conversation_key.encode(), o.to_bytes()) for o in outs)
    )


async def statuses(store: ConversationStore, outs: list[Outbound]) -> list[str | None]:
    found = await store.delivery_statuses([o.message_id for o in outs])
    return [found.get(o.message_id) for o in outs]


async def kept(store: ConversationStore) -> Counter:
    async with store.engine.connect() as conn:
        return Counter((await conn.execute(sa.select(outbox.c.message_id))).scalars().all())


async def run_until_committed(service: SenderService, offset: int) -> None:
    await service.start()
    try:
        await wait_for(
            lambda: committed(service.bus, service.bus.topics.outbound, service.loop.group, offset),
            timeout=30,
        )
    finally:
        await service.stop()


async def test_a_chunk_redelivered_after_a_crash_before_its_commit_sends_and_keeps_nothing_twice(
    parts,
):
    bus, store = parts.bus, parts.store
    a = await conversation(store, Channel.SMS, "+15550001001")
    b = await conversation(store, Channel.SMS, "+15550001002")
    mail = await conversation(store, Channel.EMAIL, "c@example.com")
    outs = [
        *await replies(store, a, "a: first"),
        *await replies(store, b, "b: only"),
        *await replies(store, mail, "mail: first", "mail: second"),
        *await replies(store, a, "a: second"),
    ]
    await publish(bus, outs)

    # The first sender fetches the chunk in its group, delivers it, and dies before committing.
    first = parts.service()
    await first.handle_batch(
        await fetch_uncommitted(bus, [bus.topics.outbound], first.loop.group, len(outs))
    )
    assert parts.bodies_to("+15550001001") == ["a: first", "a: second"]
    assert await statuses(store, outs) == ["sent", "sent", "sandboxed", "sandboxed", "sent"]

    # The next sender in the same group gets the whole chunk again.
    await run_until_committed(parts.service(), len(outs))
    assert Counter(m["body"] for m in parts.standin.messages) == {
        "a: first": 1,
        "b: only": 1,
        "a: second": 1,
    }
    assert await kept(store) == {outs[2].message_id: 1, outs[3].message_id: 1}
    assert await statuses(store, outs) == ["sent", "sent", "sandboxed", "sandboxed", "sent"]
    assert await records_in(bus, bus.topics.dlq) == 0


async def test_two_replies_of_one_conversation_in_one_chunk_arrive_in_order(parts):
    """The first reply is long (several messages), the second short: sent side by side, the
    short one would arrive first."""
    bus, store = parts.bus, parts.store
    customers = [f"+1555000200{i}" for i in range(4)]
    outs = []
    for customer in customers:
        outs += await replies(
            store, await conversation(store, Channel.SMS, customer), LONG, f"short for {customer}"
        )
    await publish(bus, outs)  # before the sender starts, so they are fetched as one chunk

    await run_until_committed(parts.service(), len(outs))
    for customer in customers:
        bodies = parts.bodies_to(customer)
        parts_of_long = len(bodies) - 1
        assert parts_of_long > 1
        assert [b.split(" ", 1)[0] for b in bodies] == [
            f"({i}/{parts_of_long})" for i in range(1, parts_of_long + 1)
        ] + ["short"]
    assert set(await statuses(store, outs)) == {"sent"}


async def test_a_transient_failure_in_a_chunk_resends_nothing_and_keeps_the_conversation_in_order(
    parts,
):
    """The second reply fails until Twilio's attempts run out: the chunk is handed over again
    record by record; the first reply, sent already, is not sent again, and the third waits
    for the second."""
    bus, store = parts.bus, parts.store
    outs = await replies(
        store, await conversation(store, Channel.SMS, "+15550003001"), "one", "two", "three"
    )
    parts.standin.fail_next(503, times=2, after=1)
    await publish(bus, outs)

    await run_until_committed(parts.service(send_attempts=2), len(outs))
    assert parts.bodies_to("+15550003001") == ["one", "two", "three"]
    assert [r.status for r in parts.standin.requests] == [201, 503, 503, 201, 201]
    assert await statuses(store, outs) == ["sent", "sent", "sent"]
    assert await records_in(bus, bus.topics.dlq) == 0


async def test_a_refused_reply_in_a_chunk_is_dead_lettered_once_and_its_conversation_goes_on(parts):
    bus, store = parts.bus, parts.store
    outs = await replies(
        store, await conversation(store, Channel.SMS, "+15550004001"), "one", "two", "three"
    )
    parts.standin.fail_next(
        400, code=21610, message="Attempt to send to unsubscribed recipient", after=1
    )
    await publish(bus, outs)

    await run_until_committed(parts.service(), len(outs))
    assert parts.bodies_to("+15550004001") == ["one", "three"]
    assert [r.status for r in parts.standin.requests] == [201, 400, 201]  # no second try of "two"
    assert await statuses(store, outs) == ["sent", "failed", "sent"]
    dead = await settle(bus, bus.topics.dlq, 1)
    assert [(d["value"]["stage"], d["value"]["value"]["message_id"]) for d in dead] == [
        ("send", outs[1].message_id)
    ]
    assert "21610" in dead[0]["value"]["error"]


async def test_the_sandbox_keeps_a_chunk_once_and_marks_only_what_it_kept_now(parts):
    store = parts.store
    mail = await conversation(store, Channel.EMAIL, "d@example.com")
    first, second = await replies(store, mail, "first", "second")
    assert await store.record_sandbox_deliveries([first]) == [first.message_id]
    await store.set_delivery_status(first.message_id, "read")  # what happened to it since
    assert await store.record_sandbox_deliveries([first, second, second]) == [second.message_id]
    assert await kept(store) == {first.message_id: 1, second.message_id: 1}
    assert await statuses(store, [first, second]) == ["read", "sandboxed"]


async def test_two_senders_keeping_one_chunk_at_once_are_each_told_of_a_reply_once(
    parts, database_url
):
    """After a rebalance two senders may keep the same chunk at the same moment: each reply is
    kept once, and only one of them is told it kept it (and so logs and counts it)."""
    mail = await conversation(parts.store, Channel.EMAIL, "f@example.com")
    outs = await replies(parts.store, mail, *(f"reply {n}" for n in range(20)))
    async with ConversationStore(database_url) as other:
        told = await asyncio.gather(
            parts.store.record_sandbox_deliveries(outs), other.record_sandbox_deliveries(outs)
        )
    assert sorted(told[0] + told[1]) == sorted(o.message_id for o in outs)
    assert await kept(parts.store) == {o.message_id: 1 for o in outs}
    assert await statuses(parts.store, outs) == ["sandboxed"] * 20


async def test_the_sandbox_keeps_a_chunk_in_as_many_statements_whatever_its_length(parts):
    """Not a statement per reply: at a few hundred replies a second, each statement's own cost
    (building it, binding it, the driver's round trip) was most of the sender's time."""
    store = parts.store
    mail = await conversation(store, Channel.EMAIL, "e@example.com")
    with statements_run(store.engine) as statements:
        for length in (1, 30):
            outs = await replies(store, mail, *(f"reply {length}.{n}" for n in range(length)))
            statements.clear()
            assert await store.record_sandbox_deliveries(outs) == [o.message_id for o in outs]
            if length == 1:
                one = len(statements)
    assert len(statements) == one, statements
    assert await statuses(store, outs) == ["sandboxed"] * 30
    assert sum((await kept(store)).values()) == 31
