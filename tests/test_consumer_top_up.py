"""A batch tops up what it found waiting (router/bus/consumer.py, `ConsumerLoop._fetch`).

The consumer fetches the next records when its buffer empties, so records that arrive while a
batch is handled wait in the broker; the records the next getmany finds buffered are therefore
topped up with one more fetch, instead of leaving the newer ones for a batch of their own.
On both brokers; the top-up window is widened here so a busy machine cannot miss it."""

from __future__ import annotations

import asyncio

from router.bus.consumer import ConsumerLoop
from router.bus.kafka import KafkaBus
from tests.chunk_loops import handled_alone, run_until


async def test_records_that_arrived_during_a_batch_join_those_found_waiting(broker):
    settings = broker.settings(partitions=1)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        topic = bus.topics.classified
        chunks: list[list[bytes]] = []
        done = asyncio.Event()

        async def handle_chunk(records) -> None:
            chunks.append([r.value for r in records])
            if chunks == [[b"1"]]:
                # Fetched while this batch is handled, then left in the consumer's buffer...
                await bus.publish_many(topic, [(b"k", b"2"), (b"k", b"3")])
                await asyncio.sleep(1.0)
                # ... and these still in the broker when the batch ends.
                await bus.publish_many(topic, [(b"k", b"4"), (b"k", b"5")])
            if sum(map(len, chunks)) == 5:
                done.set()

        await bus.publish(topic, b"1", key=b"k")
        loop = ConsumerLoop(
            bus,
            [topic],
            "top-up",
            handled_alone,
            "test",
            batch_handler=handle_chunk,
            top_up_ms=5000,
        )
        await run_until(loop, done)
    assert chunks == [[b"1"], [b"2", b"3", b"4", b"5"]]
