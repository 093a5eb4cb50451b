"""KafkaBus: the topics and the acks=all producer, and how the router tells Kafka is away.

A publish returns only once Kafka acknowledged the record; an answer that says the broker is
away (the embedded one starting again answers its first produce with an unknown error) is
followed by another send, until `publish_timeout` seconds are over, then `BusUnavailable`: the
channels turn that into "not accepted, try again" (503, SMTP 451), never into a 200 for a
message Kafka does not hold. A record given up on may still reach Kafka later (the producer
keeps it in hand); the consumers' dedupe by message id makes that second copy change nothing.

The bus remembers its last failure to reach Kafka; `ping()` (what `/readyz` asks) fails while
the broker does not answer, and after a failure also until the producer has nothing left in
hand, so readiness comes back by itself once the broker acknowledges again.

The consumers (router/bus/consumer.py, router/bus/fanout.py) use `partition_counts()` and
`ensure_topics()` to notice a broker that came back empty or with other partition counts.
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
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    UnknownError,
)

from router.bus.partitioner import KeyPartitioner
from router.core.envelope import now
from router.core.settings import Settings
from router.observability.metrics import DEAD_LETTERS

log = structlog.get_logger("router.bus.kafka")

RESEND_AFTER = 0.1  # seconds between sends of a record while the broker answers that it is away


class BusUnavailable(KafkaError):
    """Kafka did not acknowledge in time: the record is not accepted (the caller says retry)."""

    retriable = True


def unreachable(exc: BaseException) -> bool:
    """Whether an error means the broker is away or not answering, not that the request was bad.
    An unknown server error counts: the embedded broker answers a produce with one just after it
    came back empty (seen in the outage test), and a retry is the safe answer to a provider."""
    return isinstance(
        exc, (TimeoutError, KafkaTimeoutError, KafkaConnectionError, BusUnavailable, UnknownError)
    ) or bool(getattr(exc, "retriable", False))


async def _until_acknowledged(send: Callable[[], Awaitable[object]]) -> None:
    """Send, and send again after an answer that means the broker is away (the embedded one may
    be starting again: a crash, a recycle), until acknowledged; the caller sets the deadline.
    A second copy of a record is harmless: the consumers dedupe by message id."""
    while True:
        try:
            await send()
            return
        except KafkaError as exc:
            if not unreachable(exc):
                raise
            log.debug("publish.resent", error=repr(exc)[:200])
        await asyncio.sleep(RESEND_AFTER)


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


async def create_topics(
    bootstrap_servers: str, names: list[str], partitions: int, replication_factor: int = 1
) -> list[str]:
    """Create those of `names` the cluster lacks, with our partition counts, and wait until each
    partition has a leader; return the names created. (Listing asks for every topic, which never
    auto-creates one on the embedded broker, where naming a topic in a Metadata request does.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, partitions, replication_factor) for name in names if name not in existing
        ]
        if not wanted:
            return []
        try:
            response = await admin.create_topics(wanted)
        except TopicAlreadyExistsError:
            return []  # another process created them first
        # Those another process (or an auto-creating Metadata request) created meanwhile
        # answer TOPIC_ALREADY_EXISTS, with partition counts of their own.
        created = [error[0] for error in response.topic_errors if error[1] == 0]
        if created:
            await _until_led(admin, created, partitions)
        return created
    finally:
        await admin.close()


async def _until_led(
    admin: AIOKafkaAdminClient, names: list[str], partitions: int, timeout: float = 30
) -> None:
    """Wait until every partition of new topics has a leader. Apache Kafka answers
    CreateTopics before then, and a client that looks sooner sees some partitions missing
    (a reader would skip them) or gets NotLeaderForPartition."""
    async with asyncio.timeout(timeout):
        while True:
            described = await admin.describe_topics(names)
            if all(
                t["error_code"] == 0
                and len(t["partitions"]) == partitions
                and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            await asyncio.sleep(0.1)


# The embedded broker (Tansu) answers a fetch that found nothing only when its wait is over,
# even if records arrive meanwhile: the wait is each hop's latency there (Settings).
EMBEDDED_FETCH_WAIT_MS = 50


class KafkaBus:
    def __init__(self, settings: Settings, bootstrap_servers: str, *, embedded: bool = False):
        self.settings = settings
        self.session_timeout_ms = settings.consumer_session_timeout_ms or (
            2000 if embedded else 10000
        )
        self.fetch_wait_ms = settings.consumer_fetch_wait_ms or (
            EMBEDDED_FETCH_WAIT_MS if embedded else 500
        )
        self.embedded = embedded
        self.topics = settings.topics
        self.bootstrap_servers = bootstrap_servers
        self.publish_timeout = settings.publish_timeout
        self.idempotent = False  # set at start: whether the broker offers idempotent producers
        self.problem: str | None = None  # the last failure to reach Kafka, until it answers again
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
            partitioner=KeyPartitioner(),
        )

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:  # what Kafka has not taken by then stays unacknowledged: its callers were told
                await asyncio.wait_for(producer.flush(), self.publish_timeout)
            except (KafkaError, TimeoutError) as exc:
                log.warning("producer.flush_abandoned", error=repr(exc)[:300])
            await producer.stop()

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def all_topics(self) -> list[str]:
        return self.topics.all()

    async def ensure_topics(self) -> list[str]:
        """Create the router's topics the cluster lacks (with our partition counts); return
        those created."""
        return await create_topics(
            self.bootstrap_servers,
            self.all_topics(),
            self.settings.partitions,
            self.settings.replication_factor,
        )

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaBus is not started")
        return self._producer

    async def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Return only once every in-sync replica has the record (acks=all); raise
        `BusUnavailable` if Kafka did not acknowledge it within `publish_timeout`."""
        producer = self._started()
        try:
            async with asyncio.timeout(self.publish_timeout):
                await _until_acknowledged(lambda: producer.send_and_wait(topic, value, key=key))
        except (KafkaError, TimeoutError) as exc:
            if not unreachable(exc):
                raise  # the broker refused this record (too large, say): Kafka itself is fine
            raise self._unavailable(f"publish to {topic}", exc) from exc
        self.problem = None

    async def publish_many(self, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Send every record before waiting for any, then return once all are acknowledged
        (acks=all): one round trip for a batch instead of one per record. `BusUnavailable` if
        not all were within `publish_timeout` (some may have been: the dedupe absorbs a resend)."""
        producer = self._started()
        records = list(items)

        async def send_all() -> None:
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            await asyncio.gather(*futures)

        try:
            async with asyncio.timeout(self.publish_timeout):
                await _until_acknowledged(send_all)
        except (KafkaError, TimeoutError) as exc:
            if not unreachable(exc):
                raise  # the broker refused this record (too large, say): Kafka itself is fine
            raise self._unavailable(f"publish to {topic}", exc) from exc
        self.problem = None

    def _unavailable(self, what: str, exc: BaseException) -> BusUnavailable:
        """Remember that Kafka is away (for readiness) and say so."""
        detail = "no acknowledgement" if isinstance(exc, TimeoutError) else repr(exc)[:200]
        self.problem = f"{what}: {detail}"
        log.warning("bus.unavailable", what=what, error=repr(exc)[:300])
        return BusUnavailable(f"Kafka did not acknowledge ({what}): {detail}")

    async def ping(self, timeout: float = 2.0) -> None:
        """Fail while the broker does not answer; after a failure, also until the producer has
        nothing left in hand (every record sent since was acknowledged or given up)."""
        producer = self._started()
        try:
            async with asyncio.timeout(timeout):
                await producer.client.fetch_all_metadata()
                if self.problem is not None:
                    await producer.flush()
        except (KafkaError, TimeoutError) as exc:
            raise self._unavailable("ping", exc) from exc
        self.problem = None

    async def partition_counts(self, topics: list[str], timeout: float = 5.0) -> dict[str, int]:
        """How many partitions each topic has now (0: none such), in one Metadata request for
        every topic, which creates none."""
        async with asyncio.timeout(timeout):
            if self._producer is not None:
                cluster = await self._producer.client.fetch_all_metadata()
            else:  # a bus used only to read (`supportrouter tail`): a client of its own
                client = AIOKafkaClient(bootstrap_servers=self.bootstrap_servers)
                try:
                    await client.bootstrap()
                    cluster = await client.fetch_all_metadata()
                finally:
                    await client.close()
        return {topic: len(cluster.partitions_for_topic(topic) or ()) for topic in topics}

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
            fetch_max_wait_ms=self.fetch_wait_ms,
            **options,
        )
