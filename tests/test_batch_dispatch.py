"""The dispatcher stores a partition's records a chunk at a time: still once each, in order.

A crash can come between any two steps of a chunk (store, publish the replies, commit the
offsets); whatever Kafka then redelivers must leave one message, one decision and one
acknowledgement per customer message, and each acknowledgement on support.outbound once.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import sqlalchemy as sa

from router.core.envelope import Channel, Envelope, Sender, now
from router.policy.rules import Rules
from router.services.dispatcher import DispatcherService
from router.store.conversations import ConversationStore
from router.store.inbound import Inbound
from router.store.schema import conversations, messages
from tests.kafka_helpers import committed, fetch_uncommitted, read_topic, records_in, settle
from tests.store_helpers import statements_run
from tests.test_reliability import classified_envelope, wait_for


def a_batch(rules: Rules, tag: str) -> list[Envelope]:
    """Six records for one partition: three customers, one of them writing twice, and one
    record twice over (a provider's retry that reached Kafka twice)."""
    key = f"chat:{tag}"
    first = classified_envelope(
        rules, "my transfer failed, the money left my account", key, f"{tag}-1"
    )
    return [
        first,
        classified_envelope(rules, "it was 200 yuan to my brother", key, f"{tag}-2"),
        first,
        classified_envelope(rules, "what is the fee for a withdrawal", f"{key}-b", f"{tag}-3"),
        classified_envelope(rules, "我忘记登录密码了", f"{key}-c", f"{tag}-4"),
        classified_envelope(rules, "how do I raise my daily limit", f"{key}-d", f"{tag}-5"),
    ]


async def stored_counts(store: ConversationStore) -> tuple[Counter, Counter, int]:
    """Inbound messages by message_id, replies by message_id, and conversations."""
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(messages.c.direction, messages.c.message_id))).all()
        n_conversations = (
            await conn.execute(sa.select(sa.func.count()).select_from(conversations))
        ).scalar_one()
    inbound = Counter(m for d, m in rows if d == "in")
    outbound = Counter(m for d, m in rows if d == "out")
    return inbound, outbound, n_conversations


def assert_once_each(
    batch: list[Envelope], inbound: Counter, outbound: Counter, n_conversations: int
) -> None:
    unique = {e.message_id for e in batch}
    assert set(inbound) == unique and set(inbound.values()) == {1}
    # One acknowledgement per new conversation; the follow-up in the first one gets none.
    assert n_conversations == 4
    assert len(outbound) == 4 and set(outbound.values()) == {1}
    assert set(outbound) <= {f"ack-{m}" for m in unique}


async def test_a_chunk_redelivered_after_a_crash_before_its_commit_changes_nothing(
    bus_and_store, rules
):
    bus, store = bus_and_store
    batch = a_batch(rules, "crash-before-commit")
    await bus.publish_many(bus.topics.classified, ((e.kafka_key, e.to_bytes()) for e in batch))

    # The first dispatcher fetches the chunk in its group, stores it, publishes the replies,
    # and dies before committing the offsets.
    first = DispatcherService(bus, store, rules)
    group = f"{bus.settings.consumer_group_prefix}-dispatcher"
    await first.handle_batch(
        await fetch_uncommitted(bus, [bus.topics.classified], group, len(batch))
    )
    assert_once_each(batch, *await stored_counts(store))
    replies = await read_topic(bus, bus.topics.outbound, lambda r: len(r) >= 4)

    # The next dispatcher in the same group gets the whole chunk again.
    second = DispatcherService(bus, store, rules)
    await second.start()
    try:
        await wait_for(
            lambda: committed(bus, bus.topics.classified, second.loop.group, len(batch)), timeout=30
        )
    finally:
        await second.stop()
    assert_once_each(batch, *await stored_counts(store))
    assert await records_in(bus, bus.topics.dlq) == 0  # absorbed, not dead-lettered
    replies = await settle(bus, bus.topics.outbound, len(replies))
    assert sorted(r["value"]["message_id"] for r in replies) == sorted(
        f"ack-{m}" for m in {e.message_id for e in batch[:1] + batch[3:]}
    )


async def test_a_chunk_stored_but_never_published_is_published_once_when_redelivered(
    running_router,
):
    """The dispatcher stored a chunk (messages and acknowledgements) and died before producing
    any reply: the redelivered chunk publishes each stored reply once, and stores nothing new."""
    router = running_router.router
    bus, store, rules = router.bus, router.store, router.rules
    batch = a_batch(rules, "crash-before-publish")

    def acknowledge(envelope):
        return lambda conversation, created, _requeued: (
            rules.acknowledgement(
                conversation,
                "en",
                [],
                message_id=f"ack-{envelope.message_id}",
                trace_id=envelope.trace_id,
            )
            if created
            else None
        )

    recorded = await store.record_inbound_many(
        [
            Inbound(e, rules.config.queue_for(e.classification.category), acknowledge(e))
            for e in batch
        ]
    )
    assert [r.duplicate for r in recorded] == [False, False, True, False, False, False]
    assert [r.created for r in recorded] == [True, False, False, True, True, True]
    assert (
        recorded[1].conversation["id"]
        == recorded[0].conversation["id"]
        == recorded[2].conversation["id"]
    )
    assert len(await store.unpublished()) == 4

    for _ in range(2):  # redelivered, and once more for good measure
        await bus.publish_many(bus.topics.classified, ((e.kafka_key, e.to_bytes()) for e in batch))
    replies = await read_topic(bus, bus.topics.outbound, lambda r: len(r) >= 4)
    assert await wait_for(lambda: _none_unpublished(store))
    replies = await settle(bus, bus.topics.outbound, len(replies), seconds=2)
    assert Counter(r["value"]["message_id"] for r in replies) == Counter(
        {f"ack-{e.message_id}": 1 for e in batch[:1] + batch[3:]}
    )
    assert_once_each(batch, *await stored_counts(store))
    assert await records_in(bus, bus.topics.dlq) == 0


async def _none_unpublished(store) -> bool:
    return not await store.unpublished()


async def test_a_poison_record_in_a_chunk_goes_to_the_dlq_and_the_rest_of_the_chunk_is_stored(
    running_router,
):
    router = running_router.router
    bus, store = router.bus, router.store
    key = "chat:poison-in-a-chunk"
    before = classified_envelope(router.rules, "what is the top-up fee", key, "pc-1")
    after = classified_envelope(router.rules, "and the withdrawal fee?", key, "pc-2")
    unclassified = Envelope.new(
        channel=Channel.CHAT,
        channel_message_id="pc-0",
        conversation_key=key,
        sender=Sender(address=key),
        text="no classification",
    )
    await bus.publish_many(
        bus.topics.classified,
        [
            (key.encode(), before.to_bytes()),
            (key.encode(), b"\xff not json"),
            (key.encode(), unclassified.to_bytes()),
            (key.encode(), after.to_bytes()),
        ],
    )
    dead = await read_topic(bus, bus.topics.dlq, lambda r: len(r) >= 2)
    assert [d["value"]["stage"] for d in dead] == ["dispatch", "dispatch"]
    assert "not an envelope" in dead[0]["value"]["error"]
    assert "no classification" in dead[1]["value"]["error"]

    async def both_stored():
        history = await store.history(key)
        return history if [m["direction"] for m in history].count("in") == 2 else None

    history = await wait_for(both_stored)
    assert [m["id"] for m in history if m["direction"] == "in"] == [
        before.message_id,
        after.message_id,
    ]


async def test_a_customer_writing_on_both_lanes_at_once_gets_one_conversation(running_router):
    """The urgent and the standard dispatcher store chunks side by side; a customer whose
    messages reach both at the same moment must still end up in one conversation."""
    router = running_router.router
    bus, rules = router.bus, router.rules
    n = 200
    urgent, standard = [], []
    for i in range(n):
        key = f"chat:both-lanes-{i}"
        fraud = classified_envelope(rules, "someone stole money from my wallet", key, f"bl-{i}-u")
        question = classified_envelope(rules, "what is the fee for a withdrawal", key, f"bl-{i}-s")
        urgent.append((fraud.kafka_key, fraud.to_bytes()))
        standard.append((question.kafka_key, question.to_bytes()))
    await asyncio.gather(
        bus.publish_many(bus.topics.classified_urgent, urgent),
        bus.publish_many(bus.topics.classified, standard),
    )

    async def all_stored():
        inbound, _, _ = await stored_counts(router.store)
        return len(inbound) >= 2 * n

    await wait_for(all_stored, timeout=120)
    async with router.store.engine.connect() as conn:
        per_key = (
            await conn.execute(
                sa.select(conversations.c.conversation_key, sa.func.count())
                .where(conversations.c.conversation_key.like("chat:both-lanes-%"))
                .group_by(conversations.c.conversation_key)
            )
        ).all()
    assert len(per_key) == n
    assert [key for key, count in per_key if count != 1] == []


async def test_a_chunk_offers_what_it_queued_only_when_someone_was_available(bus_and_store, rules):
    """With nobody available when a chunk begins, it reads who is available once and offers
    nothing (an agent who becomes available is offered the waiting ones by the API, or by the
    next timer round); with someone available, what it queued is offered as it ends."""
    bus, store = bus_and_store
    dispatcher = DispatcherService(bus, store, rules)
    group = f"{bus.settings.consumer_group_prefix}-dispatcher"
    alone = classified_envelope(rules, "my transfer failed, money gone", "sms:+15550101", "nobody")
    await bus.publish(bus.topics.classified, alone.to_bytes(), key=alone.kafka_key)
    records = await fetch_uncommitted(bus, [bus.topics.classified], group, 1)
    with statements_run(store.engine) as statements:
        await dispatcher.handle_batch(records)
    assert sum("agent_state" in s for s in statements) == 1, statements
    conversation = await store.conversation_by_key(alone.conversation_key)
    assert conversation is not None
    assert conversation["status"] == "waiting" and conversation["assignee"] is None

    await store.set_agent_status("li.na", "available", now())
    staffed = classified_envelope(rules, "my transfer failed, money gone", "sms:+15550102", "li")
    await bus.publish(bus.topics.classified, staffed.to_bytes(), key=staffed.kafka_key)
    await dispatcher.handle_batch(await fetch_uncommitted(bus, [bus.topics.classified], group, 2))
    offered = await store.conversation_by_key(staffed.conversation_key)
    assert offered is not None and offered["assignee"] == "li.na", offered


async def test_a_chunk_of_several_channels_finds_what_was_stored_by_id_or_by_the_channels_own_id(
    database_url, rules
):
    # A chunk mixes channels: each message stored before is a duplicate, found by its id or by
    # its channel's own id for it (a provider's retry), whichever channel it came on.
    def on(channel: Channel, text: str, n: int) -> Envelope:
        envelope = Envelope.new(
            channel=channel,
            channel_message_id=f"mixed-{n}",  # the same provider id on every channel
            conversation_key=f"{channel}:mixed-{n}",
            sender=Sender(address=f"+1555010{n:04d}"),
            text=text,
        )
        return envelope.model_copy(update={"classification": rules.classify(text)})

    def items(envelopes: list[Envelope]) -> list[Inbound]:
        return [Inbound(e, "general", lambda *_: None) for e in envelopes]

    chat, sms, whatsapp = (
        on(Channel.CHAT, "what is the fee for a withdrawal", 1),
        on(Channel.SMS, "how do I raise my daily limit", 1),
        on(Channel.WHATSAPP, "my transfer failed yesterday", 2),
    )
    async with ConversationStore(database_url, sqlite_on_loop=True) as store:
        first = await store.record_inbound_many(items([chat, sms, whatsapp]))
        assert [r.duplicate for r in first] == [False, False, False]
        # Again, with another id for the WhatsApp message (the same provider id), and new ones
        # on each channel with provider ids seen on other channels only.
        again = whatsapp.model_copy(update={"message_id": "another-id-for-the-same-message"})
        fresh = [on(Channel.SMS, "my card was charged twice", 2), on(Channel.CHAT, "hi", 2)]
        # And the chat message under its own id, with a provider id of another form.
        renamed = chat.model_copy(update={"channel_message_id": "mixed-1-as-resent"})
        second = await store.record_inbound_many(items([sms, again, renamed, *fresh]))
        assert [r.duplicate for r in second] == [True, True, True, False, False]
        assert [r.conversation["id"] for r in second[:3]] == [
            first[1].conversation["id"],
            first[2].conversation["id"],
            first[0].conversation["id"],
        ]
        inbound, _, n_conversations = await stored_counts(store)
    assert set(inbound.values()) == {1} and len(inbound) == 5 and n_conversations == 5


async def test_a_later_message_raising_its_conversation_to_critical_is_acknowledged_as_one(
    bus_and_store, rules
):
    """A customer asks about a transfer, then reports in the same conversation a payment they
    never made: the report moves it to the fraud queue and gets the fraud acknowledgement (what
    to do meanwhile) at once; a third message that raises nothing gets none."""
    bus, store = bus_and_store
    dispatcher = DispatcherService(bus, store, rules)
    group = f"{bus.settings.consumer_group_prefix}-dispatcher"
    key = "sms:+15550103"
    texts = [
        "where is my transfer to my sister, it still shows pending",
        "and there is a payment of 80 euros to a shop I never made",
        "any news?",
    ]
    sent = []
    for n, text in enumerate(texts, 1):
        envelope = classified_envelope(rules, text, key, f"raised-{n}")
        sent.append(envelope)
        await bus.publish(bus.topics.classified, envelope.to_bytes(), key=envelope.kafka_key)
        # Each round sees the rounds before it again (nothing committed): duplicates, no change.
        await dispatcher.handle_batch(
            await fetch_uncommitted(bus, [bus.topics.classified], group, n)
        )
    conversation = await store.conversation_by_key(key)
    assert conversation is not None
    assert (conversation["category"], conversation["queue"]) == (
        "unauthorized_transaction",
        "fraud",
    )
    async with store.engine.connect() as conn:
        replies = (
            await conn.execute(
                sa.select(messages.c.message_id, messages.c.text)
                .where(messages.c.conversation_id == conversation["id"])
                .where(messages.c.direction == "out")
                .order_by(messages.c.seq)
            )
        ).all()
    asked, reported, _ = (f"ack-{e.message_id}" for e in sent)
    by_id = dict(replies)
    assert len(replies) == 2 and set(by_id) == {asked, reported}, replies
    assert "transaction you did not make" not in by_id[asked]
    assert "transaction you did not make" in by_id[reported]
    assert "freeze your account" in by_id[reported].lower()  # staffed or not
    published = await read_topic(bus, bus.topics.outbound, lambda r: len(r) >= 2)
    assert {r["value"]["message_id"] for r in published} == set(by_id)
