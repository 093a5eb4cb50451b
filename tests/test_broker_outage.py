"""A broker outage is visible and recoverable: nothing is answered 200 that Kafka does not hold,
readiness says so, and every part of the pipeline resumes by itself when the broker is back,
also when it comes back empty or with other partition counts (the embedded broker), and the
embedded broker itself is started again when it dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    UnknownError,
)

from router.app import Router
from router.bus.consumer import ConsumerLoop
from router.bus.fanout import TopicFanout
from router.bus.kafka import BusUnavailable, KafkaBus, create_topics, unreachable
from router.bus.watch import LayoutWatch
from tests.brokers import Broker
from tests.chat_helpers import chat_ws_url
from tests.conftest import RunningRouter, make_settings, new_router
from tests.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, TwilioRouter, TwilioStandIn

FAILED_TRANSFER = "my transfer failed with error E1023, money gone from my balance"
STOLEN = "someone stole money from my wallet"


async def eventually(probe, timeout: float = 90, every: float = 0.2) -> Any:
    """Poll `probe` until it returns something true; its last result on the way is reported."""
    last: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await probe()
                if last:
                    return last
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"never happened; last probe gave {last!r}") from None


@contextlib.asynccontextmanager
async def twilio_on_own_broker(
    database_url: str, own_broker: Broker, monkeypatch
) -> AsyncIterator[tuple[TwilioRouter, Broker]]:
    """A whole router with the SMS channel on a broker only it uses, which the test may stop:
    Tansu embedded by the router, or an Apache Kafka of the test's own."""
    async with TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN) as standin:
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        monkeypatch.setenv("SUPPORTROUTER_TWILIO_API_BASE_URL", standin.url)
        overrides = own_broker.overrides if own_broker.kind == "kafka" else {}
        settings = make_settings(
            database_url,
            channels=["chat", "sms"],
            public_url=PUBLIC_URL,
            consumer_session_timeout_ms=2000,
            publish_timeout=2.0,
            **overrides,
        )
        async with new_router(settings) as router, aiohttp.ClientSession() as http:
            broker = own_broker
            if own_broker.kind == "tansu":
                assert router.broker is not None
                broker = Broker("tansu", router.broker.bootstrap_servers, _server=router.broker)
            yield TwilioRouter(RunningRouter(router, http), standin, PUBLIC_URL, AUTH_TOKEN), broker


async def readyz(t: TwilioRouter) -> tuple[int, dict]:
    async with t.http.get(t.url("/readyz")) as resp:
        return resp.status, await resp.json()


async def routed_over_chat(
    t: TwilioRouter | RunningRouter, text: str, client_id: str
) -> dict | None:
    """A chat message accepted, routed and answered: the acknowledgement frame, or None if the
    pipeline did not carry it (yet)."""
    async with t.http.post(t.url("/chat/sessions"), json={}) as resp:
        assert resp.status == 201
        token = (await resp.json())["session"]
    async with t.http.ws_connect(await chat_ws_url(t.http, t.url(""), token)) as ws:
        await ws.receive_json()
        await ws.send_json({"type": "message", "text": text, "id": client_id})
        frame = await ws.receive_json()
        if frame["type"] != "accepted":
            return None
        try:
            async with asyncio.timeout(20):
                while frame.get("type") != "message":
                    frame = await ws.receive_json()
        except TimeoutError:
            return None
    return frame


# --- publishing and readiness while the broker is away (both brokers) ------------------------


async def test_a_publish_gives_up_with_bus_unavailable_while_the_broker_is_down(own_broker):
    broker = own_broker
    settings = broker.settings(partitions=1, publish_timeout=1.0)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        topic = bus.topics.classified
        await bus.publish(topic, b"before")
        await broker.stop()
        try:
            async with asyncio.timeout(60):  # a guard against blocking, not a measurement
                with pytest.raises(BusUnavailable):
                    await bus.publish(topic, b"while down")
                with pytest.raises(BusUnavailable):
                    await bus.publish_many(topic, [(None, b"while down, one"), (None, b"two")])
                with pytest.raises(BusUnavailable):
                    await bus.ping()
            assert bus.problem is not None
        finally:
            await broker.start()
            await bus.ensure_topics()  # Tansu comes back empty; Kafka with its log

        async def acknowledged() -> bool:
            try:
                await bus.publish(topic, b"after")
                await bus.ping()
            except BusUnavailable:
                return False
            return True

        assert await eventually(acknowledged)
        assert bus.problem is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_signed_sms_gets_503_and_readyz_not_ready_while_the_broker_is_down_then_200(
    database_url, own_broker, monkeypatch
):
    async with twilio_on_own_broker(database_url, own_broker, monkeypatch) as (t, broker):
        assert (await t.sms(FAILED_TRANSFER))[0] == 200
        await broker.stop()
        try:
            status, _ = await t.sms(FAILED_TRANSFER)
            assert status == 503
            status, body = await readyz(t)
            assert status == 503 and "kafka" in body["problems"]
        finally:
            await broker.start()  # same port; Tansu comes back empty, Kafka with its log

        async def accepted_again() -> bool:
            return (await t.sms(FAILED_TRANSFER + " again"))[0] == 200

        async def ready_again() -> bool:
            return (await readyz(t))[0] == 200

        assert await eventually(accepted_again)
        assert await eventually(ready_again)
        # ... and what is accepted now is routed, with no restart of the router
        await t.wait_for_queue("payments", lambda c: len(c) >= 1, timeout=90)


# --- the embedded broker comes back empty: the consumers resume by themselves (Tansu) ----------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("broker_kind", ["tansu"], indirect=True)
async def test_after_the_broker_comes_back_empty_with_other_partition_counts_messages_are_routed(
    router_on_its_own_broker,
):
    r, broker = router_on_its_own_broker
    settings = r.router.settings
    assert await routed_over_chat(r, STOLEN, "before")
    # Other partition counts than the consumers were built on (whoever asks first on the
    # embedded broker creates a topic with its own default count, not ours). The router, which
    # runs on this event loop, races to re-create them with its own count as soon as the broker
    # listens; it wins now and then, so the broker is restarted until the test was first.
    counts: dict[str, int] = {}
    for _ in range(5):
        await broker.stop()
        await broker.start()  # empty: no topics, no groups, no offsets
        await create_topics(
            broker.bootstrap_servers, settings.topics.all(), settings.partitions + 2
        )
        counts = await r.router.bus.partition_counts(settings.topics.all())
        if all(n and n != settings.partitions for n in counts.values()):
            break
    assert all(n and n != settings.partitions for n in counts.values()), counts

    async def routed() -> dict | None:
        return await routed_over_chat(r, STOLEN + " again", "after")

    reply = await eventually(routed, timeout=120)
    assert reply["direction"] == "out"


@pytest.mark.parametrize("broker_kind", ["tansu"], indirect=True)
async def test_a_consumer_loop_and_a_fanout_read_every_partition_after_an_empty_restart(
    own_broker,
):
    """Back empty, then the topic made with more partitions than before: records on every
    partition, the new ones too, reach both kinds of consumer. (The fan-out keeps its positions
    on the partitions it had: a log shorter than where it was is read again from its start.)"""
    broker = own_broker
    settings = broker.settings(partitions=2, consumer_session_timeout_ms=2000)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=True) as bus:
        topic = bus.topics.classified
        grouped: set[bytes] = set()
        fanned: set[bytes] = set()

        async def handle(record) -> None:
            grouped.add(record.value)

        async def fan(record) -> None:
            fanned.add(record.value)

        loop = ConsumerLoop(bus, [topic], "outage", handle, "test")
        fanout = TopicFanout(bus, topic, fan)
        await loop.start()
        await fanout.start()
        try:
            before = {f"before {n} on {p}".encode(): p for p in range(2) for n in range(3)}
            await send_to_partitions(broker, topic, before)
            assert await eventually(lambda: _has(grouped, fanned, set(before)))
            await broker.stop()
            await broker.start()
            await create_topics(broker.bootstrap_servers, [topic], 5)
            after = {f"after on {p}".encode(): p for p in range(5)}
            await send_to_partitions(broker, topic, after)
            assert await eventually(lambda: _has(grouped, fanned, set(after)), timeout=120)
        finally:
            await fanout.stop()
            await loop.stop()


async def test_a_consumer_loop_whose_group_committed_past_the_log_end_reads_the_log_from_its_start(
    broker,
):
    """After the embedded broker came back empty, a group may hold (or a late commit may write)
    an offset past the end of its partition's new log. Kafka answers a fetch there with
    OffsetOutOfRange and the consumer starts again from the log's start; the embedded broker
    answers with nothing, and the loop must notice by itself (router/bus/watch.py), or it would
    wait there and skip every record before that offset."""
    settings = broker.settings(partitions=1, consumer_session_timeout_ms=2000)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        topic = bus.topics.classified
        group = f"{settings.consumer_group_prefix}.past-the-end"
        sent = [f"record {n}".encode() for n in range(3)]
        await send_to_partitions(broker, topic, dict.fromkeys(sent, 0))
        await commit_offset(bus, group, TopicPartition(topic, 0), 50)
        seen: list[bytes] = []

        async def handle(record) -> None:
            seen.append(record.value)

        loop = ConsumerLoop(bus, [topic], group, handle, "test")
        await loop.start()
        try:
            assert await eventually(lambda: _all_seen(seen, sent), timeout=60)
        finally:
            await loop.stop()
        assert seen[: len(sent)] == sent  # from the log's start, in order


async def test_consumers_at_the_end_of_a_batch_are_not_rewound(broker):
    """The embedded broker's ListOffsets tells less than the end of a log whose last batch had
    many records: a consumer that read it all must not be taken for one past the end, which
    would hand every record to its handler (and every event to the sockets) again."""
    settings = broker.settings(partitions=1)
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        topic = bus.topics.classified
        grouped: list[bytes] = []
        fanned: list[bytes] = []

        async def handle(record) -> None:
            grouped.append(record.value)

        async def fan(record) -> None:
            fanned.append(record.value)

        loop = ConsumerLoop(bus, [topic], f"{settings.consumer_group_prefix}.end", handle, "test")
        fanout = TopicFanout(bus, topic, fan, from_beginning=True)
        await loop.start()
        await fanout.start()
        try:
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=50)
            await producer.start()
            try:
                sent = [f"in one batch {n}".encode() for n in range(20)]
                await asyncio.gather(*[await producer.send(topic, value) for value in sent])
            finally:
                await producer.stop()
            assert await eventually(lambda: _has(set(grouped), set(fanned), set(sent)))
            await asyncio.sleep(4 * LayoutWatch.rewind_every)  # looks enough to rewind twice
        finally:
            await fanout.stop()
            await loop.stop()
    assert grouped == sent and fanned == sent  # each once, in order


async def commit_offset(bus: KafkaBus, group: str, tp: TopicPartition, offset: int) -> None:
    """Commit `offset` for `group` from outside it, as a commit left from before a restart."""
    consumer = bus.consumer([], group)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def _all_seen(seen: list[bytes], sent: list[bytes]) -> bool:
    return set(sent) <= set(seen)


async def send_to_partitions(broker: Broker, topic: str, records: dict[bytes, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        for value, partition in records.items():
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def _has(grouped: set[bytes], fanned: set[bytes], wanted: set[bytes]) -> bool:
    return wanted <= grouped and wanted <= fanned


# --- the embedded broker is supervised ---------------------------------------------------------


async def test_the_embedded_broker_killed_comes_back_by_itself_and_on_restart_is_called(
    tmp_path,
):
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/store.db", consumer_session_timeout_ms=2000
    )
    restarted = asyncio.Event()

    async def on_restart() -> None:
        restarted.set()

    router: Router = new_router(settings)
    async with router, aiohttp.ClientSession() as http:
        assert router.role == "all" and router.broker is not None
        router.broker.on_restart = on_restart
        first_pid = router.broker.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        async with asyncio.timeout(60):
            await restarted.wait()
        assert router.broker.restarts == 1 and router.broker.pid not in (None, first_pid)
        counts = await router.bus.partition_counts(settings.topics.all())
        assert all(counts.values()), counts  # every topic is there again

        r = RunningRouter(router, http)
        reply = await eventually(lambda: routed_over_chat(r, STOLEN, "after-kill"), timeout=120)
        assert reply["direction"] == "out"


def test_which_kafka_errors_mean_the_broker_is_away_and_which_a_bad_record():
    # Away: the provider is told to retry (503). A bad record: refused, since a retry cannot help.
    assert unreachable(KafkaConnectionError())
    assert unreachable(UnknownError())  # what Tansu answered a produce just after a restart
    assert unreachable(NotLeaderForPartitionError())  # retriable
    assert not unreachable(MessageSizeTooLargeError())
