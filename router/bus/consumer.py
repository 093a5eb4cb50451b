"""ConsumerLoop: consume in a consumer group, commit only after the effect.

Delivery is at least once: a record's offset is committed only after its handler returned, so a
crash redelivers it and the idempotent handler makes the second run change nothing. A record
that still fails after retries goes to the DLQ with the error, then is committed: it never blocks
its partition and is never dropped silently. If the DLQ publish fails too (the broker refuses it or
is away), nothing is committed past that record: its partition goes back to it and the loop pauses
(longer each time) before handling it again, so it holds its partition back only while it can be
neither handled nor dead-lettered. The other partitions' records are committed as usual.

A loop may also take a batch handler: it gets what one fetch brought, from every partition, in
chunks (each partition's records in order), and stores each chunk's effects together: one
transaction and one round of publishes for a chunk, not one per partition, which on SQLite
would only queue for its single writer. A chunk it cannot handle (a poison record in it, a
fault) is handed record by record to the single-record handler, with its retries and the DLQ,
so a batch is only ever a shortcut, never a new way to lose or block a record.

A loop resumes by itself after the broker was away, even when it came back empty (the embedded
broker keeps nothing) or with other partition counts: every few seconds, and after repeated
failures, it compares the topics' partition counts with those its consumer was built on; on a
change (a topic missing, more or fewer partitions) it creates the missing topics with our counts
and builds its consumer anew, which resumes from the committed offsets, never past a record not
handled. A partition whose new log ends before the loop's position (the broker came back empty,
with fewer records than before) is read again from its start (router/bus/watch.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from router.bus.kafka import KafkaBus, stop_consumer
from router.bus.watch import LayoutWatch
from router.core.faults import is_outage
from router.core.tasks import cancel_and_wait
from router.observability.metrics import CONSUMED, CONSUMER_LAG, STAGE_SECONDS

log = structlog.get_logger("router.bus.consumer")

Handler = Callable[[ConsumerRecord], Awaitable[None]]
BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]
Offsets = dict[TopicPartition, int]  # per partition, the offset to resume from
# A fetch whose records were waiting in the consumer's buffer is topped up: see `_fetch`.
_WAITING = 0.001  # seconds: a getmany this quick found its records buffered
TOP_UP_MS = 5
FAILURE_PAUSE = 1.0  # seconds after a batch that failed (the broker away), before the next fetch


class ConsumerLoop:
    """Consume topics in a consumer group, handle each record, commit after the effect.

    `yield_to` names a loop whose records always go first: before each of its own records (or
    chunks, with a batch handler) this loop waits until that one has nothing in hand (how the
    urgent lane overtakes the standard).

    `batch_handler`, when given, takes up to `chunk` records at a time, from any of the fetched
    partitions, each partition's in order; the chunk's offsets are committed only after it
    returned. If it raises, the chunk is handled again record by record by `handler` (retries,
    then the DLQ), so the batch handler must be idempotent as a whole, exactly like `handler`
    is for one record.
    """

    def __init__(
        self,
        bus: KafkaBus,
        topics: list[str],
        group: str,
        handler: Handler,
        stage: str,
        *,
        retries: int = 3,
        batch: int = 200,
        yield_to: ConsumerLoop | None = None,
        on_dead_letter: Callable[[ConsumerRecord, BaseException], Awaitable[None]] | None = None,
        batch_handler: BatchHandler | None = None,
        chunk: int = 50,
        top_up_ms: int = TOP_UP_MS,
    ):
        self.bus, self.topics, self.group, self.handler, self.stage = (
            bus,
            topics,
            group,
            handler,
            stage,
        )
        self.batch_handler, self.chunk = batch_handler, max(chunk, 1)
        self.top_up_ms = top_up_ms
        self.on_dead_letter = on_dead_letter
        self.retries, self.batch, self.yield_to = max(retries, 1), batch, yield_to
        self.idle = asyncio.Event()
        self.idle.set()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._backoff = 1.0  # seconds before a record whose DLQ publish failed is tried again
        self.failure_pause = FAILURE_PAUSE
        self.commits_refused = 0  # batches whose commit the group refused (see `_run`)
        self._layout: dict[str, int] = {}

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.stage} consumer already started")
        self._layout = await self.bus.partition_counts(self.topics)
        self._consumer = await self._new_consumer()
        self._task = asyncio.create_task(self._run(), name=f"consume:{self.stage}")

    async def _new_consumer(self) -> AIOKafkaConsumer:
        consumer = self.bus.consumer(self.topics, self.group, max_poll_records=self.batch)
        await consumer.start()
        return consumer

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(self._task)
        self._task = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_consumer(consumer)

    async def _run(self) -> None:
        watch = LayoutWatch(self.bus, self.topics, self._layout, f"consumer:{self.stage}")
        while not self._stopping:
            assert self._consumer is not None
            try:
                await self._batch(self._consumer)
                watch.succeeded()
            except asyncio.CancelledError:
                raise
            except CommitFailedError as exc:
                # The group moved on while the batch was in hand: a rebalance, or a broker that
                # came back without it (a crash, or the recycler). The batch's effects are stored;
                # what was not committed comes back and the idempotent handlers absorb it. The
                # next fetch waits for the group to be joined again, and no longer: a lost
                # broker's pause here could only add to that wait.
                self.commits_refused += 1
                log.info("consumer.commit_refused", stage=self.stage, error=repr(exc)[:300])
                watch.failed()
            except Exception as exc:
                # A lost broker: what was not committed comes back and the idempotent handlers
                # absorb it. The loop itself must never die.
                log.warning("consumer.batch_failed", stage=self.stage, error=repr(exc)[:300])
                watch.failed()
                await asyncio.sleep(self.failure_pause)
            if await watch.changed():
                await self._rebuild(watch)
            elif self._consumer is not None:
                await watch.rewind_when_due(self._consumer)

    async def _rebuild(self, watch: LayoutWatch) -> None:
        """A consumer built anew, on the topics as they are now (created where missing). Nothing
        is in hand between batches, and the new one starts from the committed offsets."""
        old, self._consumer = self._consumer, None
        if old is not None:
            await stop_consumer(old)
        while not self._stopping:
            try:
                await watch.recreate_topics()
                self._consumer = await self._new_consumer()
                watch.rebuilt()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consumer.rebuild_failed", stage=self.stage, error=repr(exc)[:300])
                await watch.back_off()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list]:
        """The records of the next batch, at most `batch`. The consumer fetches the next records
        as soon as its buffer is emptied, so under load the records a getmany finds waiting
        were fetched when the previous batch began, and those that arrived while it was handled
        are not fetched yet: alone, they would wait for a batch of their own, and a message for
        two batches' time. Records found waiting are therefore topped up with what one more
        fetch brings within a few milliseconds (the embedded broker answers it at once when it
        has records; when it has none, the wait is cut short)."""
        started = time.monotonic()
        batches = await consumer.getmany(timeout_ms=500, max_records=self.batch)
        count = sum(len(records) for records in batches.values())
        if not count or count >= self.batch or time.monotonic() - started > _WAITING:
            return batches
        self.idle.clear()  # records in hand already: a loop that yields to this one waits
        more = await consumer.getmany(timeout_ms=self.top_up_ms, max_records=self.batch - count)
        for tp, records in more.items():
            batches[tp] = batches.get(tp, []) + records  # a partition's records stay in order
        return batches

    async def _batch(self, consumer: AIOKafkaConsumer) -> None:
        batches = await self._fetch(consumer)
        if not batches:
            self.idle.set()
            return
        self.idle.clear()
        try:
            if self.batch_handler is not None:
                resume = await self._chunks(batches)
            else:
                # Partitions are independent (one conversation stays on one partition), so they
                # are handled side by side; within a partition, strictly in order.
                offsets = await asyncio.gather(
                    *(self._partition(records) for records in batches.values())
                )
                resume = dict(zip(batches, offsets, strict=True))
            stuck = [tp for tp, records in batches.items() if resume[tp] <= records[-1].offset]
            for tp in stuck:
                # The consumer's position is past the whole batch: without this seek the next
                # fetch (and so the next commit) would skip the record not yet handled. A
                # partition no longer ours restarts from its commit, which is not past it.
                if tp in consumer.assignment():
                    consumer.seek(tp, resume[tp])
            # Shielded so a stop never abandons a commit half-way; a crash before it
            # redelivers the batch, which the idempotent handlers absorb.
            await asyncio.shield(consumer.commit(resume))
            self._measure(consumer, batches, resume)
        finally:
            self.idle.set()
        if stuck:
            await asyncio.sleep(self._backoff)  # the DLQ (or the broker) needs time to recover
            self._backoff = min(self._backoff * 2, 30.0)
        else:
            self._backoff = 1.0

    def _measure(self, consumer: AIOKafkaConsumer, batches: dict, resume: dict) -> None:
        """Lag per partition, and each handled record's time from its publish to now."""
        now_ms = time.time() * 1000
        stage = STAGE_SECONDS.labels(self.stage)
        for tp, records in batches.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = max(highwater - resume[tp], 0)
                CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(lag)
            for record in records:
                if record.offset >= resume[tp]:
                    break
                stage.observe(max(now_ms - record.timestamp, 0) / 1000)

    async def _chunks(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> Offsets:
        """Every fetched partition's records through the batch handler, `chunk` at a time, each
        partition's in order. Returns per partition the offset to commit and resume from: past
        its last record, or that of its first one neither handled nor dead-lettered (none of
        that partition after it is handled, so it keeps its order; the others go on)."""
        records = [record for partition in batches.values() for record in partition]
        stuck: Offsets = {}
        for start in range(0, len(records), self.chunk):
            await self._give_way()
            chunk = [
                r for r in records[start : start + self.chunk] if _partition_of(r) not in stuck
            ]
            if chunk:
                stuck.update(await self._handle_chunk(chunk))
        return {tp: stuck.get(tp, partition[-1].offset + 1) for tp, partition in batches.items()}

    async def _partition(self, records: list[ConsumerRecord]) -> int:
        """Handle one partition's records in order, one by one; return the offset to commit
        and resume from (as `_chunks` does)."""
        stuck = await self._one_by_one(records)
        return stuck.get(_partition_of(records[0]), records[-1].offset + 1)

    async def _one_by_one(self, records: list[ConsumerRecord]) -> Offsets:
        """Handle records in order; a partition stops at its first record neither handled nor
        dead-lettered. Returns those partitions, each with that record's offset."""
        stuck: Offsets = {}
        for record in records:
            if _partition_of(record) in stuck:
                continue
            await self._give_way()
            if not await self._handle(record):
                stuck[_partition_of(record)] = record.offset
        return stuck

    async def _give_way(self) -> None:
        if self.yield_to is not None and not self.yield_to.idle.is_set():
            await self.yield_to.idle.wait()

    async def _handle_chunk(self, records: list[ConsumerRecord]) -> Offsets:
        """Handle a chunk; return the partitions stopped at a record neither handled nor
        dead-lettered (see `_one_by_one`): none when the batch handler took it whole."""
        assert self.batch_handler is not None
        try:
            await self.batch_handler(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A poison record or a fault: whatever the chunk stored is absorbed by the
            # idempotent single-record handler, which retries and dead-letters one at a time.
            log.warning(
                "batch.one_by_one", stage=self.stage, records=len(records), error=repr(exc)[:300]
            )
            return await self._one_by_one(records)
        CONSUMED.labels(stage=self.stage).inc(len(records))
        return {}

    async def _handle(self, record: ConsumerRecord) -> bool:
        """Handle one record, with retries, else dead-letter it; False if neither worked (the
        DLQ publish failed, or a database or broker is away: the record is tried again later)."""
        delay = 0.2
        for attempt in range(1, self.retries + 1):
            try:
                await self.handler(record)
                CONSUMED.labels(stage=self.stage).inc()
                return True
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                return await self._dead_letter(record, exc)
            except Exception as exc:  # a transient fault: retry, then dead-letter
                if is_outage(exc):  # not the record's fault: keep it, wait, try again
                    log.warning(
                        "record.dependency_away",
                        stage=self.stage,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        error=repr(exc)[:300],
                    )
                    return False
                log.warning(
                    "record.retry", stage=self.stage, attempt=attempt, error=repr(exc)[:300]
                )
                if attempt == self.retries:
                    return await self._dead_letter(record, exc)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable: retries >= 1")

    async def _dead_letter(self, record: ConsumerRecord, error: BaseException) -> bool:
        """Publish the record to the DLQ; False if that failed (it must then not be committed)."""
        try:
            await self.bus.dead_letter(record, self.stage, error)
        except Exception as exc:
            log.error(
                "record.dead_letter_failed",
                stage=self.stage,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                error=repr(exc)[:300],
                handler_error=repr(error)[:300],
            )
            return False
        if self.on_dead_letter is not None:
            try:
                await self.on_dead_letter(record, error)
            except Exception as exc:  # the record is in the DLQ already; this is bookkeeping
                log.warning(
                    "record.dead_letter_hook_failed", stage=self.stage, error=repr(exc)[:300]
                )
        return True


def _partition_of(record: ConsumerRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


class PermanentError(Exception):
    """A record that no retry can fix (it does not parse): straight to the DLQ."""
