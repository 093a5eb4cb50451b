"""The intake journal (router/store/journal.py) on a real SQLite file, and its relay with a real
broker and store: what the broker lost is published again and forgotten once stored."""

from __future__ import annotations

import asyncio

import aiohttp
import sqlalchemy as sa

from router.bus.embedded import EmbeddedBroker
from router.core.envelope import Channel
from router.store.conversations import ConversationStore
from router.store.journal import IntakeJournal
from router.store.schema import messages
from tests.conftest import RunningRouter, make_settings, new_router
from tests.kafka_helpers import records_in
from tests.test_batch_sender import conversation, replies


async def test_a_burst_of_appends_is_committed_in_groups_and_kept_after_reopening(tmp_path):
    path = tmp_path / "intake.journal"
    async with IntakeJournal(path) as journal:
        await asyncio.gather(
            *(journal.append(f"m{n:04d}", "topic", b"key", b"value %d" % n) for n in range(300))
        )
        assert journal.appended == 300
        assert journal.commits < 300  # writes that waited together share one commit
    async with IntakeJournal(path, synchronous="normal") as reopened:
        assert await reopened.count() == 300
        [first] = await reopened.pending(1)
        assert (first.message_id, first.topic, first.value) == ("m0000", "topic", b"value 0")


async def test_the_same_message_twice_is_one_entry_and_done_forgets_it(tmp_path):
    async with IntakeJournal(tmp_path / "j") as journal:
        await journal.append("m1", "topic", None, b"first")
        await journal.append("m1", "topic", None, b"a provider's retry")
        await journal.append("m2", "topic", None, b"other")
        assert await journal.count() == 2
        await journal.done(["m1"])
        assert [e.message_id for e in await journal.pending()] == ["m2"]


async def test_a_new_entry_is_not_due_until_something_says_kafka_lost_it(tmp_path):
    async with IntakeJournal(tmp_path / "j") as journal:
        await journal.append("m1", "topic", None, b"x")
        assert await journal.pending(due_before=asyncio.get_running_loop().time()) == []
        await journal.due_now(["m1"])
        assert [e.message_id for e in await journal.pending(due_before=2e9)] == ["m1"]


async def test_an_unknown_synchronous_mode_is_refused_by_name(tmp_path):
    try:
        IntakeJournal(tmp_path / "j", synchronous="off")
    except ValueError as exc:
        assert "full or normal" in str(exc)
    else:
        raise AssertionError("synchronous=off was accepted")


async def _wait(predicate, timeout: float = 60):
    async with asyncio.timeout(timeout):
        while not (result := await predicate()):
            await asyncio.sleep(0.3)
        return result


async def test_a_message_the_broker_lost_is_published_again_and_forgotten_once_stored(
    tmp_path, database_url
):
    """Separate services on the memory broker: the broker restarts empty after the gateway said
    yes and before anyone stored the message; the journal carries it."""
    async with EmbeddedBroker() as broker:
        settings = make_settings(
            database_url,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            intake_journal="on",
            journal_path=tmp_path / "intake.journal",
        )
        gateway = new_router(settings)
        gateway.role = "gateway"
        async with gateway, aiohttp.ClientSession() as http:
            r = RunningRouter(gateway, http)
            token = await r.chat_session()
            async with http.ws_connect(await r.chat_ws_url(token)) as ws:
                await ws.receive_json()
                await ws.send_json({"type": "message", "text": "my card was charged twice"})
                assert (await ws.receive_json())["type"] == "accepted"
            assert gateway.journal is not None and gateway.relay is not None and gateway.bus
            assert await gateway.journal.count() == 1
            inbound = gateway.bus.topics.inbound_standard

            await broker.stop()
            await broker.start()  # the same port, nothing kept
            await gateway.bus.ensure_topics()
            assert await records_in(gateway.bus, inbound) == 0
            gateway.relay.broker_lost_records()
            assert await _wait(lambda: _holds(gateway, inbound))

            pipeline = [new_router(make_settings(database_url, **_on(broker))) for _ in range(2)]
            pipeline[0].role, pipeline[1].role = "classifier", "dispatcher"
            async with pipeline[0], pipeline[1]:
                assert await _wait(lambda: _journal_empty(gateway))
            assert await _inbound_stored(gateway) == 1


def _on(broker: EmbeddedBroker) -> dict:
    return {"kafka_bootstrap_servers": broker.bootstrap_servers}


async def _holds(router, topic: str) -> bool:
    return await records_in(router.bus, topic) == 1


async def _inbound_stored(router) -> int:
    async with router.store.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(messages.c.direction == "in")
        return (await conn.execute(query)).scalar_one()


async def _journal_empty(router) -> bool:
    return await router.journal.count() == 0


async def test_a_reply_published_before_a_crash_but_not_sent_goes_out_when_the_embedded_broker_starts_empty(
    database_url,
):
    """The memory broker that had the reply died with the router: the store, not the broker,
    says what is still to send."""
    async with ConversationStore(database_url) as store:
        [reply] = await replies(
            store, await conversation(store, Channel.SMS, "+15550009999"), "we have your report"
        )
        await store.mark_published(reply.message_id)
    async with new_router(make_settings(database_url)) as router:  # the embedded default
        assert router.broker is not None and router.store is not None
        store = router.store

        async def delivered() -> bool:
            statuses = await store.delivery_statuses([reply.message_id])
            return statuses.get(reply.message_id) == "sandboxed"

        assert await _wait(delivered)


async def test_an_entry_published_again_and_again_but_never_stored_is_given_up_with_an_error(
    tmp_path, database_url
):
    """A message the pipeline refuses every time (the DLQ has it) is not published forever."""
    from router.bus.kafka import KafkaBus
    from router.services.journal_relay import MAX_ATTEMPTS, JournalRelay

    async with (
        EmbeddedBroker() as broker,
        ConversationStore(database_url) as store,
        IntakeJournal(tmp_path / "j") as journal,
    ):
        settings = make_settings(database_url, kafka_bootstrap_servers=broker.bootstrap_servers)
        async with KafkaBus(settings, broker.bootstrap_servers, embedded=True) as bus:
            await bus.ensure_topics()
            await journal.append("poison", bus.topics.inbound_standard, None, b"not an envelope")
            relay = JournalRelay(journal, store, bus)
            for _ in range(MAX_ATTEMPTS):
                await journal.due_now()
                await relay.round()
            assert await records_in(bus, bus.topics.inbound_standard) == MAX_ATTEMPTS
            assert await journal.count() == 1  # still waiting: it might yet be stored
            await journal.due_now()
            await relay.round()
            assert await journal.count() == 0
            assert await records_in(bus, bus.topics.inbound_standard) == MAX_ATTEMPTS
