"""At-least-once delivery made exactly-once in effect: redelivery, poison records, interrupted work."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from router.bus.consumer import ConsumerLoop
from router.bus.kafka import KafkaBus
from router.core.envelope import Channel, Envelope, Sender
from router.store.schema import conversations, messages
from tests.kafka_helpers import read_topic, settle


def classified_envelope(rules, text: str, key: str, channel_message_id: str) -> Envelope:
    env = Envelope.new(
        channel=Channel.CHAT,
        channel_message_id=channel_message_id,
        conversation_key=key,
        sender=Sender(address=key),
        text=text,
    )
    return env.model_copy(update={"classification": rules.classify(text)})


async def wait_for(predicate, timeout: float = 15):
    async with asyncio.timeout(timeout):
        while not (result := await predicate()):
            await asyncio.sleep(0.05)
    return result


async def test_a_redelivered_classified_record_changes_nothing(running_router):
    router = running_router.router
    bus, store = router.bus, router.store
    env = classified_envelope(router.rules, "my transfer failed", "chat:redelivery", "r1")
    for _ in range(3):  # what Kafka does after a consumer dies before committing
        await bus.publish(bus.topics.classified, env.to_bytes(), key=env.kafka_key)

    async def stored():
        listing = await store.queue_conversations("payments")
        return listing if listing else None

    [conversation] = await wait_for(stored)
    outbound = await read_topic(bus, bus.topics.outbound, lambda r: len(r) >= 1)
    outbound = await settle(bus, bus.topics.outbound, len(outbound))
    detail = await store.conversation(conversation["id"])
    assert [m["direction"] for m in detail["messages"]] == ["in", "out"]
    assert [r["value"]["kind"] for r in outbound] == ["acknowledgement"]


async def test_a_reply_stored_but_never_published_goes_out_when_its_record_is_redelivered(
    running_router,
):
    """The dispatcher stored the message and its acknowledgement, then died before producing it."""
    router = running_router.router
    bus, store = router.bus, router.store
    env = classified_envelope(router.rules, "what is the top-up fee", "chat:crash", "c1")
    queue = router.rules.config.queue_for(env.classification.category)
    await store.record_inbound(
        env,
        queue,
        lambda conversation, created, _requeued: router.rules.acknowledgement(
            conversation, "en", [], message_id=f"ack-{env.message_id}", trace_id=env.trace_id
        ),
    )
    assert [o.message_id for o in await store.unpublished()] == [f"ack-{env.message_id}"]

    await bus.publish(bus.topics.classified, env.to_bytes(), key=env.kafka_key)
    records = await read_topic(bus, bus.topics.outbound, lambda r: len(r) >= 1)
    assert records[0]["value"]["message_id"] == f"ack-{env.message_id}"
    assert await wait_for(lambda: _none_unpublished(store))


async def _none_unpublished(store) -> bool:
    return not await store.unpublished()


async def test_a_poison_record_goes_to_the_dlq_and_does_not_block_its_partition(running_router):
    router = running_router.router
    bus, store = router.bus, router.store
    key = b"chat:poison"
    await bus.publish(bus.topics.inbound_standard, b"\xff\xfe this is not an envelope", key=key)
    await bus.publish(bus.topics.inbound_standard, b'{"message_id": "half an envelope"}', key=key)
    good = Envelope.new(
        channel=Channel.CHAT,
        channel_message_id="after-poison",
        conversation_key=key.decode(),
        sender=Sender(address=key.decode()),
        text="what is the withdrawal limit",
    )
    await bus.publish(bus.topics.inbound_standard, good.to_bytes(), key=key)

    dead = await read_topic(bus, bus.topics.dlq, lambda r: len(r) >= 2)
    # Whoever reads the inbound lanes: the classifier stage, or the dispatcher on the embedded
    # broker (which classifies what the gateway did not).
    stage = "classify-standard" if router.settings.classifier_stage else "dispatch"
    assert {d["value"]["stage"] for d in dead} == {stage}
    assert all("not an envelope" in d["value"]["error"] for d in dead)
    assert dead[0]["value"]["value"] == {"base64": "//4gdGhpcyBpcyBub3QgYW4gZW52ZWxvcGU="}

    async def good_stored():
        return [
            c
            for c in await store.queue_conversations("general")
            if c["conversation_key"] == key.decode()
        ]

    assert await wait_for(good_stored)


async def test_a_poison_record_in_a_classifier_chunk_is_dead_lettered_and_the_rest_classified_once_in_order(
    running_router,
):
    router = running_router.router
    bus = router.bus
    key = "chat:poison-in-a-classifier-chunk"
    good = [
        Envelope.new(
            channel=Channel.CHAT,
            channel_message_id=f"pcc-{i}",
            conversation_key=key,
            sender=Sender(address=key),
            text=text,
        )
        for i, text in enumerate(["what is the withdrawal limit", "and the daily one?", "thanks"])
    ]
    await bus.publish_many(
        bus.topics.inbound_standard,
        [  # one fetch: one chunk
            (key.encode(), good[0].to_bytes()),
            (key.encode(), good[1].to_bytes()),
            (key.encode(), b"\xff not an envelope"),
            (key.encode(), good[2].to_bytes()),
        ],
    )

    dead = await read_topic(bus, bus.topics.dlq, lambda r: len(r) >= 1)
    stage = "classify-standard" if router.settings.classifier_stage else "dispatch"
    assert [(d["value"]["stage"], d["value"]["value"]) for d in dead] == [
        (stage, {"base64": "/yBub3QgYW4gZW52ZWxvcGU="})
    ]

    if not router.settings.classifier_stage:  # the dispatcher classified them as it stored them
        assert await wait_for(lambda: _stored_in_order(router, key, 3)) == [
            e.message_id for e in good
        ]
        return

    def mine(records):
        return [r for r in records if r["key"] == key]

    classified = await read_topic(bus, bus.topics.classified, lambda r: len(mine(r)) >= 3)
    classified = await settle(bus, bus.topics.classified, len(classified))
    assert [r["value"]["message_id"] for r in mine(classified)] == [e.message_id for e in good]
    assert all(r["value"]["classification"] for r in mine(classified))


async def _stored_in_order(router, key: str, n: int) -> list[str] | None:
    """The conversation's inbound messages in the order stored, once there are n of them."""
    async with router.store.engine.connect() as conn:
        ids = (
            await conn.execute(
                sa.select(messages.c.message_id)
                .join(conversations, messages.c.conversation_id == conversations.c.id)
                .where(conversations.c.conversation_key == key, messages.c.direction == "in")
                .order_by(messages.c.seq)
            )
        ).scalars()
        found = list(ids)
    return found if len(found) >= n else None


async def test_the_pipeline_carries_on_after_the_broker_was_away(router_on_its_own_broker):
    """A broker outage long enough to break the consumers' group sessions and commits."""
    r, broker = router_on_its_own_broker
    await broker.stop()
    await asyncio.sleep(6)  # three session timeouts
    await broker.start()  # same port; Tansu comes back empty, Kafka with its log
    await r.router.bus.ensure_topics()
    admin = await r.login()
    token = await r.chat_session()

    async def routed():
        async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
            await ws.receive_json()
            await ws.send_json(
                {"type": "message", "text": "someone stole money from my wallet", "id": "after"}
            )
            frame = await ws.receive_json()
        if frame["type"] != "accepted":
            await asyncio.sleep(0.5)
            return None
        return True

    assert await wait_for(routed, timeout=30)

    async def in_fraud_queue():
        async with r.http.get(r.url("/api/queues/fraud/conversations"), headers=admin) as resp:
            return (await resp.json())["conversations"]

    [conversation] = await wait_for(in_fraud_queue, timeout=60)
    assert conversation["urgency"] == "critical"


async def test_a_consumer_loop_survives_a_commit_that_fails_while_the_broker_is_away(own_broker):
    """The broker goes away while a batch is in hand: the commit fails, the loop must not die."""
    broker = own_broker
    settings = broker.settings(partitions=1, consumer_session_timeout_ms=2000)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        topic = bus.topics.classified
        seen: list[bytes] = []
        outage_done = asyncio.Event()

        async def handler(record) -> None:
            seen.append(record.value)
            if record.value == b"first":
                await broker.stop()  # the commit after this record cannot reach the broker
                asyncio.get_running_loop().call_later(6, lambda: asyncio.ensure_future(restart()))

        async def restart() -> None:
            await broker.start()
            await bus.ensure_topics()
            outage_done.set()

        await bus.publish(topic, b"first")
        loop = ConsumerLoop(bus, [topic], "test-outage", handler, "test")
        await loop.start()
        try:
            async with asyncio.timeout(30):
                await outage_done.wait()
            await bus.publish(topic, b"after the outage")
            async with asyncio.timeout(60):
                while b"after the outage" not in seen:
                    await asyncio.sleep(0.1)
        finally:
            await loop.stop()
    assert seen[0] == b"first" and seen[-1] == b"after the outage"


async def test_a_reply_redelivered_to_the_sandbox_outbox_is_kept_once(database_url):
    from router.core.envelope import Outbound
    from router.store.conversations import ConversationStore

    async with ConversationStore(database_url) as store:
        out = Outbound(
            conversation_id="c1",
            conversation_key="sms:+15550000001",
            channel=Channel.SMS,
            to="+15550000001",
            text="ticket T1",
            kind="acknowledgement",
        )
        assert await store.record_sandbox_delivery(out) is True
        assert await store.record_sandbox_delivery(out) is False  # Kafka delivered it again
        assert [m["message_id"] for m in await store.list_outbox()] == [out.message_id]
