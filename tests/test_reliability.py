"""At-least-once delivery made exactly-once in effect: redelivery, poison records, interrupted work."""

from __future__ import annotations

import asyncio

from router.envelope import Channel, Envelope, Sender
from tests.kafka_helpers import read_topic, settle


def classified_envelope(rules, text: str, key: str, channel_message_id: str) -> Envelope:
    env = Envelope.new(channel=Channel.CHAT, channel_message_id=channel_message_id, conversation_key=key,
                       sender=Sender(address=key), text=text)
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


async def test_a_reply_stored_but_never_published_goes_out_when_its_record_is_redelivered(running_router):
    """The dispatcher stored the message and its acknowledgement, then died before producing it."""
    router = running_router.router
    bus, store = router.bus, router.store
    env = classified_envelope(router.rules, "what is the top-up fee", "chat:crash", "c1")
    queue = router.rules.config.queue_for(env.classification.category)
    await store.record_inbound(
        env, queue,
        lambda conversation, created: router.rules.acknowledgement(
            conversation, "en", [], message_id=f"ack-{env.message_id}", trace_id=env.trace_id),
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
    good = Envelope.new(channel=Channel.CHAT, channel_message_id="after-poison", conversation_key=key.decode(),
                        sender=Sender(address=key.decode()), text="what is the withdrawal limit")
    await bus.publish(bus.topics.inbound_standard, good.to_bytes(), key=key)

    dead = await read_topic(bus, bus.topics.dlq, lambda r: len(r) >= 2)
    assert {d["value"]["stage"] for d in dead} == {"classify-standard"}
    assert all("not an envelope" in d["value"]["error"] for d in dead)
    assert dead[0]["value"]["value"] == {"base64": "//4gdGhpcyBpcyBub3QgYW4gZW52ZWxvcGU="}

    async def good_stored():
        return [c for c in await store.queue_conversations("general") if c["conversation_key"] == key.decode()]

    assert await wait_for(good_stored)
