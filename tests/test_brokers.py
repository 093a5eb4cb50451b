"""What each broker offers the router, and what only Apache Kafka keeps: topics made with the
configured partitions, the idempotent producer, a real group rebalance, and a durable log whose
records and committed offsets survive a broker restart."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from router.bus.consumer import ConsumerLoop
from router.bus.kafka import KafkaBus, topic_partitions
from router.bus.reader import read_to_end
from tests.kafka_helpers import committed, records_in


async def partition_counts(bootstrap_servers: str, topics: list[str]) -> dict[str, int]:
    return dict(Counter(tp.topic for tp in await topic_partitions(bootstrap_servers, topics)))


async def test_the_bus_makes_every_topic_with_the_configured_partitions(broker):
    settings = broker.settings(partitions=5)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        counts = await partition_counts(broker.bootstrap_servers, bus.all_topics())
    assert counts == {topic: 5 for topic in settings.topics.all()}


async def test_the_producer_is_idempotent_where_the_broker_offers_it(broker):
    async with KafkaBus(
        broker.settings(), broker.bootstrap_servers, embedded=broker.embedded
    ) as bus:
        await bus.publish(bus.topics.events, b"{}", key=b"k")  # either way, it publishes
        # Apache Kafka grants a producer id; the embedded broker advertises InitProducerId but
        # fails it, so there the bus does without (and its consumers dedupe).
        assert bus.idempotent is (broker.kind == "kafka")


async def test_a_log_read_to_its_end_has_every_record_of_a_batch(broker):
    """The embedded broker's ListOffsets tells the first offset of the last batch plus one, not
    where its log ends: reading to the end (the DLQ tools, the recycler keeping the dead letters
    over a restart) and the recycler's look at whether the groups are behind must not stop
    short of a batch's last records."""
    settings = broker.settings(partitions=1)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        topic = bus.topics.dlq
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=50)
        await producer.start()
        try:
            sent = [await producer.send(topic, f"letter {n}".encode()) for n in range(20)]
            await asyncio.gather(*sent)  # one batch, given in one go
        finally:
            await producer.stop()
        assert await records_in(bus, topic) == 20  # the sum of `log_ends`
        read = await read_to_end(broker.bootstrap_servers, [topic])
    assert [r.value for r in read] == [f"letter {n}".encode() for n in range(20)]


async def test_when_a_consumer_leaves_its_group_the_other_takes_over_its_partitions(broker):
    """Two members of one group split the partitions; one stops, the other gets them all, and
    every record is handled, none lost at the hand-over."""
    settings = broker.settings(partitions=4)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        topic, seen = bus.topics.classified, {"a": [], "b": []}

        def handler(name):
            async def handle(record) -> None:
                seen[name].append(record.value)

            return handle

        a = ConsumerLoop(bus, [topic], "rebalance", handler("a"), "a")
        b = ConsumerLoop(bus, [topic], "rebalance", handler("b"), "b")
        await asyncio.gather(a.start(), b.start())
        try:
            await bus.publish_many(
                topic, ((f"k{i}".encode(), f"first-{i}".encode()) for i in range(40))
            )
            async with asyncio.timeout(60):
                while len(seen["a"]) + len(seen["b"]) < 40:
                    await asyncio.sleep(0.1)
            assert seen["a"] and seen["b"], "both members had partitions"
            await a.stop()  # leaves the group: b is given a's partitions
            await bus.publish_many(
                topic, ((f"k{i}".encode(), f"second-{i}".encode()) for i in range(40))
            )
            async with asyncio.timeout(60):
                while sum(v.startswith(b"second") for v in seen["b"]) < 40:
                    await asyncio.sleep(0.1)
        finally:
            await a.stop()
            await b.stop()
    assert sorted(seen["a"] + seen["b"]) == sorted(
        [f"first-{i}".encode() for i in range(40)] + [f"second-{i}".encode() for i in range(40)]
    )


@pytest.mark.parametrize(
    "broker_kind", [pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True
)
async def test_records_and_committed_offsets_survive_a_kafka_restart(own_broker):
    """What the embedded memory broker cannot do: Apache Kafka, stopped and started again,
    still holds what it acknowledged and where each group had got to."""
    settings = own_broker.settings(partitions=1)
    async with KafkaBus(settings, own_broker.bootstrap_servers) as bus:
        topic, group = bus.topics.inbound_standard, "restart"
        await bus.publish_many(topic, ((None, f"r{i}".encode()) for i in range(10)))
        consumer = bus.consumer([topic], group)
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                fetched: list = []
                while len(fetched) < 4:
                    for records in (
                        await consumer.getmany(timeout_ms=500, max_records=4 - len(fetched))
                    ).values():
                        fetched += records
            await consumer.commit({TopicPartition(topic, 0): 4})
        finally:
            await consumer.stop()

    await own_broker.stop()
    await own_broker.start()

    async with KafkaBus(settings, own_broker.bootstrap_servers) as bus:
        # The restarted broker reloads its group offsets from its log before it can answer for them.
        async with asyncio.timeout(60):
            while not await committed(bus, topic, group, 4):
                await asyncio.sleep(0.5)
        consumer = bus.consumer([topic], group)
        await consumer.start()
        try:
            rest: list = []
            async with asyncio.timeout(30):
                while len(rest) < 6:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        rest += records
        finally:
            await consumer.stop()
    assert [r.value for r in rest] == [f"r{i}".encode() for i in range(4, 10)]
