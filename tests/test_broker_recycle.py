"""The embedded broker keeps every record (no retention), so it is started again, empty, once it
has grown past its limit and every consumer group has read everything: on the real Tansu, and
through the whole router with signed SMS arriving all the while (router/bus/recycler.py)."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from router.bus.embedded import EmbeddedBroker
from router.bus.kafka import KafkaBus, stop_consumer
from router.bus.reader import read_to_end
from router.bus.recycler import BrokerRecycler
from router.core.settings import Settings
from router.services.classifier import ClassifierService
from router.services.dispatcher import DispatcherService
from router.services.groups import consumer_groups
from router.services.sender import SenderService
from router.store.schema import messages
from tests.conftest import RunningRouter, make_settings, new_router
from tests.test_broker_outage import eventually
from tests.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, TwilioRouter, TwilioStandIn

IN, DLQ = "recycle.in", "recycle.dlq"


async def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, value in records:
            await producer.send_and_wait(topic, value, key=value, partition=partition)
    finally:
        await producer.stop()


async def read_and_commit(bootstrap: str, group: str, count: int) -> None:
    """A member of `group` reads `count` records of IN and commits past them."""
    consumer = AIOKafkaConsumer(
        IN,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        seen: dict[TopicPartition, int] = {}
        total = 0
        async with asyncio.timeout(30):
            while total < count:
                batches = await consumer.getmany(timeout_ms=500, max_records=count - total)
                for tp, batch in batches.items():
                    seen[tp] = batch[-1].offset + 1
                    total += len(batch)
        await consumer.commit(seen)
    finally:
        await stop_consumer(consumer)


def where(records) -> list[tuple[int, int, bytes]]:
    return [(r.partition, r.offset, r.value) for r in records]


async def test_a_broker_past_its_limit_is_started_again_only_once_every_group_read_everything():
    async with EmbeddedBroker(topics=[IN, DLQ], partitions=2) as broker:
        bootstrap = broker.bootstrap_servers
        await produce(bootstrap, IN, [(i % 2, b"m%d" % i) for i in range(6)])
        recycler = BrokerRecycler(broker, {"readers": [IN]}, DLQ, max_mb=10**6, every=0.05)
        assert sorted((await recycler.look())[0]) == [
            "readers recycle.in[0]",
            "readers recycle.in[1]",
        ]

        await read_and_commit(bootstrap, "readers", 4)
        assert len((await recycler.look())[0]) == 1  # two of one partition are still unread

        await recycler.start()
        try:
            first = broker.pid
            recycler.max_mb = 1  # the broker is past this from its start (about 20 MB)
            await asyncio.sleep(1.0)  # about 20 looks, each finding a partition behind
            assert (broker.recycles, broker.restarts, broker.pid) == (0, 0, first)

            await read_and_commit(bootstrap, "readers", 2)
            assert (await recycler.look())[0] == []
            await eventually(lambda: _recycled(broker), timeout=60, every=0.1)
        finally:
            await recycler.stop()
        # The new broker is past 1 MB too, but empty: it is left alone (the test below).
        await eventually(lambda: _resident(broker), timeout=30, every=0.05)
        assert broker.pid not in (None, first) and broker.restarts == 0
        assert broker.recycles == 1
        assert await read_to_end(bootstrap, [IN]) == []  # empty: it holds nothing read


async def test_a_broker_that_took_no_record_is_never_started_again_whatever_its_limit():
    # A limit below what an empty broker uses: were it started again at every look, no consumer
    # group could join in between (Tansu answers a JoinGroup after a second), and every record
    # published later would be lost to the next restart before anyone read it.
    async with EmbeddedBroker(topics=[IN, DLQ], partitions=2) as broker:
        bootstrap = broker.bootstrap_servers
        recycler = BrokerRecycler(broker, {"readers": [IN]}, DLQ, max_mb=1, every=0.05)
        assert await recycler.look() == ([], 0)
        first = broker.pid
        await recycler.start()
        try:
            await asyncio.sleep(1.5)  # about 30 looks, each finding it past its limit, empty
            assert (broker.recycles, broker.restarts, broker.pid) == (0, 0, first)

            await produce(bootstrap, IN, [(0, b"one"), (1, b"two")])
            await read_and_commit(bootstrap, "readers", 2)
            await eventually(lambda: _recycled(broker), timeout=60, every=0.1)
            second = broker.pid
            await asyncio.sleep(1.5)  # the new broker is empty again: left alone
            assert (broker.recycles, broker.pid) == (1, second)
        finally:
            await recycler.stop()


async def test_a_recycle_whose_caller_is_cancelled_still_ends_as_a_recycle():
    """The recycler stopped in the middle of a recycle: the broker it killed is started again,
    counted as recycled (not as a death), and the next recycle may begin."""
    async with EmbeddedBroker(topics=[IN], partitions=1) as broker:
        first = broker.pid
        recycling = asyncio.create_task(broker.recycle())
        await asyncio.sleep(0)  # it has killed the child and waits for the new one
        recycling.cancel()
        await eventually(lambda: _recycled(broker), timeout=30, every=0.05)
        assert (broker.recycles, broker.restarts) == (1, 0)
        assert broker.pid not in (None, first)
        await broker.recycle()  # not refused as "being started again"
        assert (broker.recycles, broker.restarts) == (2, 0)


async def _recycled(broker: EmbeddedBroker) -> bool:
    return broker.recycles >= 1


async def _resident(broker: EmbeddedBroker) -> bool:
    """The child runs and its resident memory is known (not while one is being started again)."""
    rss = broker.rss_mb()
    return rss is not None and 0 < rss < 1000


async def test_dead_letters_are_written_back_after_a_recycle_where_they_were():
    async with EmbeddedBroker(topics=[IN, DLQ], partitions=2) as broker:
        bootstrap = broker.bootstrap_servers
        await produce(bootstrap, DLQ, [(1, b"first"), (0, b"second"), (1, b"third")])
        before = where(await read_to_end(bootstrap, [DLQ]))
        assert len(before) == 3

        await BrokerRecycler(broker, {}, DLQ, max_mb=1).recycle(rss=1.0)

        assert broker.recycles == 1
        assert sorted(where(await read_to_end(bootstrap, [DLQ]))) == sorted(before)


@pytest.mark.parametrize("classify_in", ["classifier", "gateway"])
async def test_the_groups_named_for_the_recycler_are_those_the_services_read_in(
    tmp_path, rules, classify_in
):
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/s.db", consumer_group_prefix="x", classify_in=classify_in
    )
    bus = KafkaBus(settings, "127.0.0.1:1")  # not started: the loops are only built
    loops = []
    if settings.classifier_stage:
        classifier = ClassifierService(bus, rules)
        loops += [classifier.urgent, classifier.standard]
    store = object()
    dispatcher = DispatcherService(
        bus,
        store,  # type: ignore[arg-type]
        rules,
        classifies=not settings.classifier_stage,
    )
    loops += [dispatcher.urgent_loop, dispatcher.loop]
    loops.append(SenderService(bus, store, senders={}).loop)  # type: ignore[arg-type]
    assert {loop.group: list(loop.topics) for loop in loops} == consumer_groups(settings)


async def test_the_router_recycles_its_broker_under_a_stream_of_sms_and_keeps_every_message(
    tmp_path, monkeypatch
):
    # A limit below what the broker uses from its start: it is started again whenever every
    # group has caught up, many times while 150 customers write, each in their own SMS.
    async with TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN) as standin:
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        monkeypatch.setenv("SUPPORTROUTER_TWILIO_API_BASE_URL", standin.url)
        settings: Settings = make_settings(
            f"sqlite+aiosqlite:///{tmp_path}/store.db",
            channels=["sms"],
            public_url=PUBLIC_URL,
            consumer_session_timeout_ms=2000,
            embedded_broker_max_mb=1,
            embedded_broker_check_seconds=0.2,
        )
        router = new_router(settings)
        async with router, aiohttp.ClientSession() as http:
            assert router.broker is not None
            t = TwilioRouter(RunningRouter(router, http), standin, PUBLIC_URL, AUTH_TOKEN)
            customers = [f"+1555010{i:04d}" for i in range(150)]
            answers: Counter[int] = Counter()
            for i, customer in enumerate(customers):
                status, _ = await t.sms(f"my transfer {i} failed, money gone", sender=customer)
                answers[status] += 1
                await asyncio.sleep(0.04)
            assert answers == Counter({200: 150})  # none waited past the publish timeout
            assert router.broker.recycles >= 2 and router.broker.restarts == 0

            async def stored_once() -> bool:
                assert router.store is not None
                async with router.store.engine.connect() as conn:
                    rows = (
                        await conn.execute(
                            sa.select(messages.c.message_id).where(messages.c.direction == "in")
                        )
                    ).all()
                counts = Counter(row.message_id for row in rows)
                assert set(counts.values()) <= {1}, "a message stored twice"
                return len(counts) == len(customers)

            await eventually(stored_once, timeout=120, every=0.5)
            sent = await standin.wait_for("messages", len(customers), timeout=120)
            await asyncio.sleep(2)  # a second acknowledgement to anyone would show by now
            assert Counter(m["to"] for m in sent) == Counter(customers)
