"""KafkaBus (topics and the acks=all producer) and ConsumerLoop (commit only after the effect).

Delivery is at least once: a record's offset is committed only after its handler returned, so a
crash redelivers it and the idempotent handler makes the second run change nothing. A record
that still fails after retries goes to the DLQ with the error, then is committed: it never blocks
its partition and is never dropped silently. If the DLQ publish fails too (the broker refuses it or
is away), nothing is committed past that record: its partition goes back to it and the loop pauses
(longer each time) before handling it again, so it holds its partition back only while it can be
neither handled nor dead-lettered. The other partitions' records are committed as usual.

A loop may also take a batch handler: it gets a partition's records in chunks, in order, and
stores each chunk's effects together. A chunk it cannot handle (a poison record in it, a fault)
is handed record by record to the single-record handler, with its retries and the DLQ, so a
batch is only ever a shortcut, never a new way to lose or block a record.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from router.core.envelope import now
from router.core.faults import is_outage
from router.core.settings import Settings
from router.core.tasks import cancel_and_wait
from router.observability.metrics import CONSUMED, DEAD_LETTERS

log = structlog.get_logger("router.bus.kafka")

Handler = Callable[[ConsumerRecord], Awaitable[None]]
BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        # After a lost connection aiokafka's fetcher re-raises the cancellation of its own
        # pending fetch from stop(); only a cancellation of this task itself may pass.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("consumer.stop_interrupted")


async def topic_partitions(bootstrap_servers: str, topics: list[str]) -> list[TopicPartition]:
    """Every partition of each topic, asked of the cluster. (A consumer outside any group knows
    no topic's partitions until asked: Apache Kafka answers its first Metadata request, for no
    topics, with none.) A topic that does not exist is an error, never taken as one partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    missing = [t["topic"] for t in described if t["error_code"] != 0 or not t["partitions"]]
    if missing:
        raise LookupError(f"no such topic on {bootstrap_servers}: {', '.join(missing)}")
    return sorted(
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    )


class KafkaBus:
    def __init__(self, settings: Settings, bootstrap_servers: str, *, embedded: bool = False):
        self.settings = settings
        self.session_timeout_ms = settings.consumer_session_timeout_ms or (
            2000 if embedded else 10000
        )
        self.embedded = embedded
        self.topics = settings.topics
        self.bootstrap_servers = bootstrap_servers
        self.idempotent = False  # set at start: whether the broker offers idempotent producers
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is not None:
            raise RuntimeError("KafkaBus already started")
        await self.ensure_topics()
        self._producer = await self._start_producer()

    async def _start_producer(self) -> AIOKafkaProducer:
        """An idempotent producer where the broker offers one (Apache Kafka): a send retried
        after a lost answer is written once. The embedded broker advertises InitProducerId but
        fails it, so there, and on any broker that refuses it, the consumers' dedupe is all."""
        if not self.embedded:
            producer = self._new_producer(idempotent=True)
            try:
                await asyncio.wait_for(producer.start(), 30)
                self.idempotent = True
                return producer
            except (KafkaError, TimeoutError) as exc:
                await producer.stop()
                log.warning("producer.not_idempotent", reason=repr(exc)[:200])
        producer = self._new_producer(idempotent=False)
        await producer.start()
        return producer

    def _new_producer(self, *, idempotent: bool) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=0,
            request_timeout_ms=10000,
        )

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.flush()
            await producer.stop()

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def all_topics(self) -> list[str]:
        return self.topics.all()

    async def ensure_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(name, self.settings.partitions, self.settings.replication_factor)
                for name in self.all_topics()
                if name not in existing
            ]
            if wanted:
                try:
                    await admin.create_topics(wanted)
                except TopicAlreadyExistsError:
                    pass  # another process created them first
                await self._until_led(admin, [t.name for t in wanted])
        finally:
            await admin.close()

    async def _until_led(
        self, admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30
    ) -> None:
        """Wait until every partition of new topics has a leader. Apache Kafka answers
        CreateTopics before then, and a client that looks sooner sees some partitions missing
        (a reader would skip them) or gets NotLeaderForPartition."""
        async with asyncio.timeout(timeout):
            while True:
                described = await admin.describe_topics(names)
                if all(
                    t["error_code"] == 0
                    and len(t["partitions"]) == self.settings.partitions
                    and all(p["leader"] >= 0 for p in t["partitions"])
                    for t in described
                ):
                    return
                await asyncio.sleep(0.1)

    async def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Return only once every in-sync replica has the record (acks=all)."""
        if self._producer is None:
            raise RuntimeError("KafkaBus is not started")
        await self._producer.send_and_wait(topic, value, key=key)

    async def publish_many(self, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Send every record before waiting for any, then return once all are acknowledged
        (acks=all): one round trip for a batch instead of one per record."""
        if self._producer is None:
            raise RuntimeError("KafkaBus is not started")
        futures = [await self._producer.send(topic, value, key=key) for key, value in items]
        await asyncio.gather(*futures)

    async def ping(self, timeout: float = 2.0) -> None:
        if self._producer is None:
            raise RuntimeError("producer not started")
        await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout)

    async def dead_letter(
        self, record: ConsumerRecord, stage: str, error: BaseException | str
    ) -> None:
        try:
            value: Any = json.loads(record.value)
        except (ValueError, TypeError):
            value = {"base64": base64.b64encode(record.value or b"").decode()}
        payload = {
            "stage": stage,
            "error": str(error)[:2000],
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode(errors="replace") if record.key else None,
            "value": value,
            "at": now().isoformat(),
        }
        await self.publish(self.topics.dlq, json.dumps(payload).encode(), key=record.key)
        DEAD_LETTERS.labels(stage=stage).inc()
        log.error(
            "record.dead_lettered",
            stage=stage,
            topic=record.topic,
            offset=record.offset,
            error=str(error)[:300],
        )

    def consumer(self, topics: list[str], group: str | None, **options: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self.bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(self.session_timeout_ms // 4, 100),
            auto_offset_reset=options.pop("auto_offset_reset", "earliest"),
            **options,
        )


class ConsumerLoop:
    """Consume topics in a consumer group, handle each record, commit after the effect.

    `yield_to` names a loop whose records always go first: before each of its own records (or
    chunks, with a batch handler) this loop waits until that one has nothing in hand (how the
    urgent lane overtakes the standard).

    `batch_handler`, when given, takes up to `chunk` records of one partition at a time, in
    order; the chunk's offsets are committed only after it returned. If it raises, the chunk is
    handled again record by record by `handler` (retries, then the DLQ), so the batch handler
    must be idempotent as a whole, exactly like `handler` is for one record.
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
    ):
        self.bus, self.topics, self.group, self.handler, self.stage = (
            bus,
            topics,
            group,
            handler,
            stage,
        )
        self.batch_handler, self.chunk = batch_handler, max(chunk, 1)
        self.on_dead_letter = on_dead_letter
        self.retries, self.batch, self.yield_to = max(retries, 1), batch, yield_to
        self.idle = asyncio.Event()
        self.idle.set()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._backoff = 1.0  # seconds before a record whose DLQ publish failed is tried again

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.stage} consumer already started")
        self._consumer = self.bus.consumer(self.topics, self.group, max_poll_records=self.batch)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consume:{self.stage}")

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(self._task)
        self._task = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_consumer(consumer)

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while not self._stopping:
            try:
                await self._batch(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A lost broker or a rebalance (CommitFailedError): what was not committed comes
                # back and the idempotent handlers absorb it. The loop itself must never die.
                log.warning("consumer.batch_failed", stage=self.stage, error=repr(exc)[:300])
                await asyncio.sleep(1)

    async def _batch(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=500, max_records=self.batch)
        if not batches:
            self.idle.set()
            return
        self.idle.clear()
        try:
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
        finally:
            self.idle.set()
        if stuck:
            await asyncio.sleep(self._backoff)  # the DLQ (or the broker) needs time to recover
            self._backoff = min(self._backoff * 2, 30.0)
        else:
            self._backoff = 1.0

    async def _partition(self, records: list[ConsumerRecord]) -> int:
        """Handle one partition's records in order; return the offset to commit and resume
        from: past the last record, or that of the first one neither handled nor
        dead-lettered (none after it is handled, so the partition keeps its order)."""
        if self.batch_handler is not None:
            for start in range(0, len(records), self.chunk):
                await self._give_way()
                stuck = await self._handle_chunk(records[start : start + self.chunk])
                if stuck is not None:
                    return stuck.offset
            return records[-1].offset + 1
        stuck = await self._one_by_one(records)
        return records[-1].offset + 1 if stuck is None else stuck.offset

    async def _one_by_one(self, records: list[ConsumerRecord]) -> ConsumerRecord | None:
        """Handle records in order; stop at, and return, the first neither handled nor
        dead-lettered."""
        for record in records:
            await self._give_way()
            if not await self._handle(record):
                return record
        return None

    async def _give_way(self) -> None:
        if self.yield_to is not None and not self.yield_to.idle.is_set():
            await self.yield_to.idle.wait()

    async def _handle_chunk(self, records: list[ConsumerRecord]) -> ConsumerRecord | None:
        """Handle a chunk; return its first record neither handled nor dead-lettered, if any."""
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
        return None

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


class PermanentError(Exception):
    """A record that no retry can fix (it does not parse): straight to the DLQ."""


class TopicFanout:
    """Every record of one topic, outside any consumer group, handed to a callback.

    Each gateway process runs its own, to reach the sockets it holds (chat customers, agents'
    event streams); it commits nothing, and a record it misses while down is still in the store.
    """

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

    async def start(self) -> None:
        if self._consumer is not None:
            raise RuntimeError(f"fanout of {self.topic} already started")
        partitions = await topic_partitions(self.bus.bootstrap_servers, [self.topic])
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

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_consumer(consumer)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                record = await self._consumer.getone()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is away: keep trying, never die
                log.warning("fanout.fetch_failed", topic=self.topic, error=repr(exc)[:300])
                await asyncio.sleep(1)
                continue
            try:
                await self.callback(record)
            except Exception as exc:  # one bad record or socket must not stop the stream
                log.warning(
                    "fanout.callback_failed",
                    topic=self.topic,
                    offset=record.offset,
                    error=repr(exc)[:300],
                )
