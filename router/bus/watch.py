"""How a consumer notices that the broker came back changed, and carries on.

- Other topics (`LayoutWatch`): a broker that came back empty, or with other partition counts,
  leaves a consumer fetching partitions that no longer exist and never those that are new; its
  owner then builds it anew on the topics as they are now.
- Shorter logs (`past_the_end`): after the embedded broker came back empty, a consumer
  may hold a position (or resume from an offset committed a moment before or after the restart)
  past the end of its partition's new log. Apache Kafka answers a fetch there with
  OffsetOutOfRange and the consumer resets itself to the log's start (our `auto_offset_reset` is
  earliest). The embedded broker answers with no records and no error, so the consumer would wait
  there until the log grew past that offset, then skip every record before it. Such partitions
  are read again from their start, as Kafka's reset does; the idempotent handlers absorb what was
  read before. A `LayoutWatch` looks for them every `rewind_every` seconds (`rewind_when_due`;
  the look asks the broker nothing), soon enough that the new log has rarely grown past the
  position by then, and rewinds one only when it sees it so twice in a row: a wrong rewind reads
  a whole partition again. A log that did grow past it first is read from that position on: the
  records before it there are skipped, and what they carried is still in the intake journal or
  the store, which publish it again at the next start of the broker or the router.
"""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from router.bus.kafka import KafkaBus

log = structlog.get_logger("router.bus.watch")

POSITION_WAIT = 0.1  # seconds: a position known at all is known at once


class LayoutWatch:
    """Whether the topics a consumer was built on are still there as they were: a broker that
    came back empty, or with other partition counts, leaves a consumer fetching partitions that
    no longer exist and never those that are new. Asked every `every` seconds, and after
    `failures` consecutive failures of the consumer. It also rewinds the consumer's partitions
    found past their log's end (`rewind_when_due`)."""

    every = 5.0
    rewind_every = 1.0
    failures = 3

    def __init__(self, bus: KafkaBus, topics: list[str], layout: dict[str, int], name: str):
        self.bus, self.topics, self.layout, self.name = bus, topics, dict(layout), name
        self._failures = 0
        self._next = asyncio.get_running_loop().time() + self.every
        self._next_rewind = asyncio.get_running_loop().time() + self.rewind_every
        self._delay = 1.0
        self._past: dict[TopicPartition, int] = {}  # past their end at the last look: positions

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self) -> None:
        self._failures += 1

    async def changed(self) -> bool:
        """True once the topics differ from those the consumer was built on, or the consumer
        keeps failing on a broker that answers."""
        now = asyncio.get_running_loop().time()
        if now < self._next and self._failures != self.failures:
            return False
        self._next = now + self.every
        try:
            counts = await self.bus.partition_counts(self.topics)
        except Exception:  # the broker is away: the consumer's own client reconnects
            return False
        reason = None
        if counts != self.layout:
            reason = "topics_changed"
        elif self._failures >= self.failures:
            reason = "keeps_failing"
        if reason is None:
            return False
        log.warning(
            "consumer.rebuilding", consumer=self.name, reason=reason, was=self.layout, now=counts
        )
        return True

    async def recreate_topics(self) -> None:
        created = await self.bus.ensure_topics()
        if created:
            log.warning("topics.recreated", consumer=self.name, topics=created)
        self.layout = await self.bus.partition_counts(self.topics)

    def rebuilt(self) -> None:
        log.info("consumer.rebuilt", consumer=self.name, partitions=self.layout)
        self._failures = 0
        self._delay = 1.0
        self._next = asyncio.get_running_loop().time() + self.every

    async def rewind_when_due(self, consumer: AIOKafkaConsumer) -> None:
        """Every `rewind_every` seconds: a partition found past its log's end at two looks in a
        row, at the same position (nothing fetched in between), is read again from its start."""
        now = asyncio.get_running_loop().time()
        if now < self._next_rewind:
            return
        self._next_rewind = now + self.rewind_every
        try:
            found = await past_the_end(consumer)
            rewind = [tp for tp, (position, _) in found.items() if self._past.get(tp) == position]
            self._past = {tp: position for tp, (position, _) in found.items() if tp not in rewind}
            if rewind:
                await consumer.seek_to_beginning(*rewind)
                log.warning(
                    "consumer.rewound",
                    consumer=self.name,
                    partitions={f"{tp.topic}:{tp.partition}": found[tp] for tp in rewind},
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker is away or the group rebalancing: look again later
            log.debug("consumer.rewind_check_failed", consumer=self.name, error=repr(exc)[:300])

    async def back_off(self) -> None:
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, 30.0)


async def past_the_end(consumer: AIOKafkaConsumer) -> dict[TopicPartition, tuple[int, int]]:
    """The consumer's partitions whose position is past their log's end, each with the two. The
    end is the high watermark of the consumer's last fetch of the partition: the embedded
    broker's ListOffsets may tell less than its log holds (the first offset of the last batch it
    was given, plus one), its fetches tell the truth."""
    found = {}
    for tp in sorted(consumer.assignment()):
        highwater = consumer.highwater(tp)
        if highwater is None:  # not fetched yet
            continue
        try:
            position = await asyncio.wait_for(consumer.position(tp), POSITION_WAIT)
        except TimeoutError:
            continue  # being looked up (after a join or a reset): past nothing yet
        if position > highwater:
            found[tp] = (position, highwater)
    return found
