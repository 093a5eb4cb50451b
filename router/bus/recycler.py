"""BrokerRecycler: keeps the embedded broker's memory bounded by starting it again, empty.

The embedded broker (Tansu's memory engine) keeps every record it was given: it has no
retention, and it refuses `DeleteRecords`. At 100 messages a second it grew by about 0.45 MB a
second (docs/performance.md), and each fetch costs it more the more a partition holds. So once
its resident memory passes `max_mb`, and every consumer group has committed the end of every
partition it reads, it is ended and started again (`EmbeddedBroker.recycle`), which is what a
crash of it already does, on purpose and at a moment when it holds nothing unread:
- the topics are created again and the consumers resume on the empty broker by themselves, as
  after a crash (router/bus/consumer.py, router/bus/fanout.py);
- what was published but not read in between (the committed offsets were looked at a moment
  before) is published again as after a crash: the accepted messages from the intake journal,
  the replies from the store (`on_restart`);
- the dead letters, which live only in their topic, are read before and written back after, to
  the same partitions in the same order, so each keeps its id (`<partition>-<offset>`) unless a
  new one was written in between;
- a webhook that arrives while the broker is away waits for it (`KafkaBus.publish` tries again
  within `publish_timeout`).
While some group is behind it waits for a moment when none is, looking every second; under a
steady stream such a moment may never come (at 100 messages a second a few are always on their
way), so after `patience` seconds it starts the broker again anyway: what was unread is then
published again from the journal and the store, as after a crash. A broker whose groups' topics
took no record since it started is left alone: starting it again frees nothing, and with a limit
below what an empty broker uses (about 17–20 MB) every look would start it again, faster than
the consumer groups can join (Tansu answers a JoinGroup after a second at the least), so nothing
would ever be read again. Apache Kafka needs none of this: its retention bounds it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from router.bus.embedded import EmbeddedBroker
from router.bus.kafka import stop_consumer, topic_partitions
from router.bus.reader import log_ends, read_to_end, reading_consumer
from router.core.tasks import cancel_and_wait

log = structlog.get_logger("router.bus.recycler")

BEHIND_EVERY = 1.0  # seconds between looks while over the limit and some group is behind


class BrokerRecycler:
    def __init__(
        self,
        broker: EmbeddedBroker,
        groups: Mapping[str, Sequence[str]],
        dead_letters: str,
        *,
        max_mb: float,
        every: float = 5.0,
        patience: float = 30.0,
    ):
        self.broker, self.groups, self.dead_letters = broker, groups, dead_letters
        self.max_mb, self.every, self.patience = max_mb, every, patience
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("BrokerRecycler already started")
        self._task = asyncio.create_task(self._watch(), name="recycle:broker")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        since: float | None = None  # when it was first seen past the limit with a group behind
        while True:
            await asyncio.sleep(self.every if since is None else min(BEHIND_EVERY, self.every))
            rss = self.broker.rss_mb()
            if rss is None or rss <= self.max_mb:
                since = None
                continue
            try:
                behind, held = await self.look()
            except Exception as exc:  # away, or a topic not there yet: looked at again later
                log.warning("broker.recycle_check_failed", error=repr(exc)[:300])
                continue
            if not held:  # nothing in it since it started: starting it again frees nothing
                since = None
                continue
            if behind:
                if since is None:
                    log.info("broker.recycle_waiting", rss_mb=round(rss), behind=behind[:5])
                    since = loop.time()
                if loop.time() - since < self.patience:
                    continue
            since = None
            try:
                await self.recycle(rss, unread=len(behind))
            except Exception as exc:  # this watch goes on: the next look tries again
                log.error("broker.recycle_failed", error=repr(exc)[:300])

    async def look(self) -> tuple[list[str], int]:
        """`group topic[partition]` for every partition some group has not read to its end, and
        how many records the groups' topics took since the broker started (their log ends,
        summed)."""
        bootstrap = self.broker.bootstrap_servers
        topics = sorted({topic for read in self.groups.values() for topic in read})
        partitions = await topic_partitions(bootstrap, topics)
        ends = await _end_offsets(bootstrap, partitions)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            found = []
            for group, read in self.groups.items():
                mine = [tp for tp in partitions if tp.topic in read]
                committed = await admin.list_consumer_group_offsets(group, partitions=mine)
                for tp in mine:
                    done = committed[tp].offset if tp in committed else -1
                    if max(done, 0) < ends[tp]:
                        found.append(f"{group} {tp.topic}[{tp.partition}]")
            return found, sum(ends.values())
        finally:
            await admin.close()

    async def recycle(self, rss: float, unread: int = 0) -> None:
        """Start the broker again, empty, with its dead letters written back."""
        bootstrap = self.broker.bootstrap_servers
        kept = await read_to_end(bootstrap, [self.dead_letters])
        await self.broker.recycle()
        carried = await _write_back(bootstrap, kept)
        log.warning(
            "broker.recycled",
            rss_mb=round(rss),
            max_mb=self.max_mb,
            dead_letters=carried,
            partitions_unread=unread,
            recycles=self.broker.recycles,
        )


async def _end_offsets(
    bootstrap: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    consumer = reading_consumer(bootstrap)
    await consumer.start()
    try:
        return await asyncio.wait_for(log_ends(consumer, partitions), 10)
    finally:
        await stop_consumer(consumer)


async def _write_back(bootstrap: str, records: list[ConsumerRecord]) -> int:
    """Each record to its own partition, in the order read (acks=all)."""
    if not records:
        return 0
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            await producer.send_and_wait(
                record.topic,
                record.value,
                key=record.key,
                partition=record.partition,
                timestamp_ms=record.timestamp,
            )
    finally:
        with contextlib.suppress(KafkaError):
            await producer.stop()
    return len(records)
