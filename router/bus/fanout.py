"""TopicFanout: every record of one topic, outside any consumer group, handed to a callback.

Each gateway process runs its own, to reach the sockets it holds (chat customers, agents' event
streams); it commits nothing, and a record it misses while down is still in the store. When the
broker comes back empty or with other partition counts, it re-reads the topic's partitions and
carries on: partitions it had keep their positions, new ones are read from their start, and a
partition whose log now ends before its position (emptied by a restart) is read from its start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from router.bus.kafka import KafkaBus, stop_consumer
from router.bus.watch import LayoutWatch
from router.core.tasks import cancel_and_wait

log = structlog.get_logger("router.bus.fanout")


class TopicFanout:
    def __init__(
        self,
        bus: KafkaBus,
        topic: str,
        callback: Callable[[ConsumerRecord], Awaitable[None]],
        *,
        from_beginning: bool = False,
    ):
        self.bus, self.topic, self.callback, self.from_beginning = (
            bus,
            topic,
            callback,
            from_beginning,
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._layout: dict[str, int] = {}

    async def start(self) -> None:
        if self._consumer is not None:
            raise RuntimeError(f"fanout of {self.topic} already started")
        partitions = await self._partitions()
        consumer = self.bus.consumer([], None)
        await consumer.start()
        self._consumer = consumer
        consumer.assign(partitions)
        if self.from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        for tp in partitions:  # pin the start now, not at the first fetch
            await consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name=f"fanout:{self.topic}")

    async def _partitions(self) -> list[TopicPartition]:
        """The topic's partitions now (it is created first if missing)."""
        self._layout = await self.bus.partition_counts([self.topic])
        if not self._layout[self.topic]:
            await self.bus.ensure_topics()
            self._layout = await self.bus.partition_counts([self.topic])
            if not self._layout[self.topic]:
                raise LookupError(f"no such topic on {self.bus.bootstrap_servers}: {self.topic}")
        return [TopicPartition(self.topic, p) for p in range(self._layout[self.topic])]

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_consumer(consumer)

    async def _run(self) -> None:
        watch = LayoutWatch(self.bus, [self.topic], self._layout, f"fanout:{self.topic}")
        while True:
            assert self._consumer is not None
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
                watch.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is away: keep trying, never die
                log.warning("fanout.fetch_failed", topic=self.topic, error=repr(exc)[:300])
                watch.failed()
                batches = {}
                await asyncio.sleep(1)
            for records in batches.values():
                for record in records:
                    await self._deliver(record)
            if await watch.changed():
                await self._reassign(watch)
            else:
                await watch.rewind_when_due(self._consumer)

    async def _deliver(self, record: ConsumerRecord) -> None:
        try:
            await self.callback(record)
        except Exception as exc:  # one bad record or socket must not stop the stream
            log.warning(
                "fanout.callback_failed",
                topic=self.topic,
                offset=record.offset,
                error=repr(exc)[:300],
            )

    async def _reassign(self, watch: LayoutWatch) -> None:
        """Read the partitions the topic has now: those kept from where this one was (a position
        past the end is rewound by the watch), new ones from their start."""
        assert self._consumer is not None
        consumer = self._consumer
        positions: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            try:
                positions[tp] = await asyncio.wait_for(consumer.position(tp), 5)
            except (KafkaError, TimeoutError):
                pass  # not known: read it from the start
        while True:
            try:
                await watch.recreate_topics()
                partitions = [
                    TopicPartition(self.topic, p) for p in range(watch.layout[self.topic])
                ]
                consumer.assign(partitions)
                new = [tp for tp in partitions if tp not in positions]
                for tp in partitions:
                    if tp in positions:
                        consumer.seek(tp, positions[tp])
                if new:
                    await consumer.seek_to_beginning(*new)
                watch.rebuilt()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fanout.reassign_failed", topic=self.topic, error=repr(exc)[:300])
                await watch.back_off()
