"""A record neither handled nor dead-lettered is never committed past.

When a record's handler fails and the DLQ publish fails too, the loop leaves the record's
partition where it was, fetches the record again after a pause, and moves on only once the
record is handled or in the DLQ. The broker refuses the publish for real: the DLQ's name is one no
topic may have (both brokers answer UnknownTopicOrPartition), then the right name comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from router.bus.consumer import ConsumerLoop
from router.bus.kafka import KafkaBus
from tests.kafka_helpers import committed, read_topic


async def until(condition: Callable[[], bool], why: str, timeout: float = 60) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(why) from None


@pytest.mark.parametrize("chunks", [False, True], ids=["one-by-one", "in-chunks"])
async def test_a_record_whose_dead_letter_fails_is_not_committed_past_and_comes_back(
    broker, chunks
):
    settings = broker.settings(partitions=1)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        topic, group, dlq = bus.topics.classified, "dlq-refused", bus.topics.dlq
        bus.topics = bus.topics.model_copy(update={"dlq": "no such topic!"})
        attempts: list[int] = []
        handled: list[bytes] = []

        async def handle(record) -> None:
            if record.value == b"poison":
                attempts.append(record.offset)
                raise ValueError("this record cannot be handled")
            handled.append(record.value)

        async def handle_chunk(records) -> None:
            for record in records:
                await handle(record)

        loop = ConsumerLoop(
            bus, [topic], group, handle, "test", batch_handler=handle_chunk if chunks else None
        )
        await bus.publish(topic, b"poison")  # offset 0
        await loop.start()
        try:
            await until(lambda: len(attempts) == loop.retries, "the record was never tried")
            # Offset 1, while the DLQ publish is failing. From a producer of its own: the loop's
            # producer is busy asking the broker about the refused name until its publish times
            # out, and a record sent through it then could time out too (a busy CI machine).
            async with KafkaBus(
                settings, broker.bootstrap_servers, embedded=broker.embedded
            ) as other:
                await other.publish(topic, b"after")
            await until(
                lambda: len(attempts) > loop.retries,
                "the record was not fetched again after its DLQ publish failed",
            )
            assert attempts[loop.retries] == 0
            assert handled == []  # nothing after it on its partition goes first
            assert not await committed(bus, topic, group, 1)
            assert not await committed(bus, topic, group, 2)

            bus.topics = bus.topics.model_copy(update={"dlq": dlq})  # the failure clears
            await until(lambda: handled == [b"after"], "the partition never moved on")
            async with asyncio.timeout(30):
                while not await committed(bus, topic, group, 2):
                    await asyncio.sleep(0.2)
        finally:
            await loop.stop()
        dead = await read_topic(bus, dlq, lambda r: len(r) >= 1)
    assert [(d["value"]["offset"], d["value"]["stage"]) for d in dead] == [(0, "test")]
    assert set(attempts) == {0} and handled == [b"after"]


async def test_a_chunk_takes_every_fetched_partition_and_a_stuck_record_holds_back_only_its_own(
    broker,
):
    """One chunk, one call of the batch handler (one store transaction), for what a fetch brought
    from all partitions, each partition's records in order. A record there that can be neither
    handled nor dead-lettered stops its own partition, not the others in its chunk."""
    settings = broker.settings(partitions=3)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        topic, group, dlq = bus.topics.classified, "chunk-partitions", bus.topics.dlq
        bus.topics = bus.topics.model_copy(update={"dlq": "no such topic!"})
        chunks: list[list[tuple[int, bytes]]] = []
        handled: list[tuple[int, bytes]] = []

        async def handle(record) -> None:
            if record.value.startswith(b"poison"):
                raise ValueError("this record cannot be handled")
            handled.append((record.partition, record.value))

        async def handle_chunk(records) -> None:
            chunks.append([(r.partition, r.value) for r in records])
            for record in records:
                await handle(record)

        keys = [f"customer-{n}".encode() for n in range(12)]
        for n in range(3):  # each key's records in order: 0, 1, 2
            for key in keys:
                await bus.publish(topic, key + b" %d" % n, key=key)
        loop = ConsumerLoop(bus, [topic], group, handle, "test", batch_handler=handle_chunk)
        await loop.start()
        try:
            await until(lambda: len(handled) == 36, "the records were not all handled")
        finally:
            await loop.stop()
        assert max(len({p for p, _ in chunk}) for chunk in chunks) > 1, chunks
        for key in keys:  # each partition (so each key) in the order it was published
            assert [v for _, v in handled if v.startswith(key + b" ")] == [
                key + b" %d" % n for n in range(3)
            ]
        partition_of = {v.rsplit(b" ", 1)[0]: p for p, v in handled}

        # Now a poison record on one partition, in a chunk with records of the others.
        stuck_key = keys[0]
        others = [k for k in keys if partition_of[k] != partition_of[stuck_key]]
        handled.clear()
        await bus.publish(topic, b"poison " + stuck_key, key=stuck_key)
        await bus.publish(topic, stuck_key + b" after", key=stuck_key)
        for key in others:
            await bus.publish(topic, key + b" after", key=key)
        loop = ConsumerLoop(bus, [topic], group, handle, "test", batch_handler=handle_chunk)
        await loop.start()
        try:
            # A chunk that fails is handled again record by record: some records twice.
            await until(
                lambda: len(set(handled)) >= len(others), "the other partitions were held back"
            )
            await asyncio.sleep(2)  # the stuck partition has had time to be fetched again
            assert {v for _, v in handled} == {k + b" after" for k in others}
            bus.topics = bus.topics.model_copy(update={"dlq": dlq})  # the failure clears
            await until(
                lambda: (partition_of[stuck_key], stuck_key + b" after") in handled,
                "the stuck partition never moved on",
            )
        finally:
            await loop.stop()
        dead = await read_topic(bus, dlq, lambda r: len(r) >= 1)
    assert [d["value"]["stage"] for d in dead] == ["test"]
