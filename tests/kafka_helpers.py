"""Reading topics in tests, from the beginning, outside any consumer group."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiokafka import TopicPartition

from router.bus.fanout import TopicFanout
from router.bus.kafka import KafkaBus, topic_partitions
from router.bus.reader import log_ends, reading_consumer


async def read_topic(
    bus: KafkaBus, topic: str, until: Callable[[list[dict]], bool], timeout: float = 15
) -> list[dict]:
    """Collect a topic's records (JSON values, with their key) until `until(records)` holds."""
    records: list[dict] = []
    changed = asyncio.Event()

    async def collect(record) -> None:
        try:
            value = json.loads(record.value)
        except ValueError:
            value = {"raw": record.value.decode(errors="replace")}
        records.append(
            {
                "key": record.key.decode() if record.key else None,
                "value": value,
                "partition": record.partition,
                "offset": record.offset,
            }
        )
        changed.set()

    fanout = TopicFanout(bus, topic, collect, from_beginning=True)
    await fanout.start()
    try:
        async with asyncio.timeout(timeout):
            while not until(records):
                changed.clear()
                await changed.wait()
    except TimeoutError:
        raise AssertionError(f"{topic}: condition never held; records: {records[:20]}") from None
    finally:
        await fanout.stop()
    return records


async def settle(bus: KafkaBus, topic: str, count_now: int, seconds: float = 1.0) -> list[dict]:
    """What a topic holds after a pause: to show something did NOT arrive, give it time first."""
    await asyncio.sleep(seconds)
    return await read_topic(bus, topic, lambda r: len(r) >= count_now)


async def fetch_uncommitted(bus: KafkaBus, topics: list[str], group: str, count: int) -> list:
    """Fetch `count` records as a member of `group`, then leave without committing: what a
    consumer that crashed after its handler ran but before its commit has seen."""
    consumer = bus.consumer(topics, group)
    await consumer.start()
    try:
        fetched: list = []
        async with asyncio.timeout(30):
            while len(fetched) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    fetched += records
        return fetched
    finally:
        await consumer.stop()  # no commit


async def committed(bus: KafkaBus, topic: str, group: str, offset: int) -> bool:
    """Whether the group committed this offset on the topic's partition 0, read by a consumer
    that never joins the group."""
    reader = bus.consumer([], group)
    await reader.start()
    try:
        return await reader.committed(TopicPartition(topic, 0)) == offset
    finally:
        await reader.stop()


async def records_in(bus: KafkaBus, topic: str) -> int:
    """How many records a topic holds (the sum of its partitions' end offsets)."""
    reader = reading_consumer(bus.bootstrap_servers)
    await reader.start()
    try:
        partitions = await topic_partitions(bus.bootstrap_servers, [topic])
        return sum((await log_ends(reader, partitions)).values())
    finally:
        await reader.stop()
