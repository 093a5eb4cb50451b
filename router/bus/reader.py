"""Reading topics whole, outside any consumer group: for operators' tools (the DLQ) and checks."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from router.bus.kafka import stop_consumer, topic_partitions


async def read_to_end(
    bootstrap_servers: str, topics: list[str], timeout: float = 30.0
) -> list[ConsumerRecord]:
    """Every record of `topics` from the beginning up to their end as it is now. Nothing is
    committed, so reading never hides a record from anyone."""
    partitions = await topic_partitions(bootstrap_servers, topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        records: list[ConsumerRecord] = []
        async with asyncio.timeout(timeout):
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
