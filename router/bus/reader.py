"""Reading topics whole, outside any consumer group: for operators' tools (the DLQ), the
embedded broker's recycler, and checks."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from router.bus.kafka import stop_consumer, topic_partitions

FETCH_WAIT_MS = 100  # a fetch at a log's end answers within this, with its high watermark


def reading_consumer(bootstrap_servers: str) -> AIOKafkaConsumer:
    """A consumer in no group that commits nothing, so reading never hides a record."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )


async def log_ends(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Where each partition's log ends now (the offset its next record will get); `consumer` is
    left assigned to them. ListOffsets tells it on Apache Kafka. The embedded broker's may tell
    less than its log holds (the first offset of the last batch it was given, plus one), so a
    fetch from there gives the high watermark, which is exact on both."""
    consumer.assign(partitions)
    listed = await consumer.end_offsets(partitions)
    for tp in partitions:
        consumer.seek(tp, listed[tp])
    while any(consumer.highwater(tp) is None for tp in partitions):
        await consumer.getmany(*partitions, timeout_ms=FETCH_WAIT_MS)
    return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in partitions}


async def read_to_end(
    bootstrap_servers: str, topics: list[str], timeout: float = 30.0
) -> list[ConsumerRecord]:
    """Every record of `topics` from the beginning up to their end as it is now."""
    partitions = await topic_partitions(bootstrap_servers, topics)
    consumer = reading_consumer(bootstrap_servers)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            ends = await log_ends(consumer, partitions)
            await consumer.seek_to_beginning(*partitions)
            pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
            records: list[ConsumerRecord] = []
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=500)
                for tp, batch in batches.items():
                    records += [r for r in batch if r.offset < ends[tp]]
                for tp in list(pending):
                    # The position, not the last offset seen: compaction or transaction
                    # markers may leave gaps before the end.
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        return records
    finally:
        await stop_consumer(consumer)
