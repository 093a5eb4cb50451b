"""What a dispatcher's chunk reads about agents before it routes (`ConversationStore.presence`).

Each chunk reads who is available. The waiting counts (what a quoted wait is made of) and the
agents' loads only count for an available agent, and in a spike the count reads every
conversation still waiting, on every chunk: with nobody available neither is read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from router.core.envelope import Urgency, now
from router.store.conversations import ConversationStore
from tests.routing_helpers import classified
from tests.store_helpers import statements_run


@pytest.fixture
async def store(database_url) -> AsyncIterator[ConversationStore]:
    async with ConversationStore(database_url, sqlite_on_loop=True) as store:
        yield store


async def waiting(store: ConversationStore, customer: str, urgency: Urgency) -> None:
    envelope = classified("transaction_failed", urgency.value, channel="sms", key=customer)
    await store.record_inbound(envelope, "payments", lambda *_: None)


async def presence_and_statements(store: ConversationStore):
    with statements_run(store.engine) as statements:
        return await store.presence(), statements


async def test_nobody_available_reads_who_is_and_nothing_else(store):
    for n, urgency in enumerate([Urgency.NORMAL, Urgency.NORMAL, Urgency.CRITICAL]):
        await waiting(store, f"+1999000000{n}", urgency)
    (available, loads, counts), statements = await presence_and_statements(store)
    assert (available, loads, dict(counts)) == (set(), {}, {})
    assert len(statements) == 1 and "agent_state" in statements[0], statements


async def test_someone_available_reads_the_waiting_counts_and_the_loads(store):
    for n, urgency in enumerate([Urgency.NORMAL, Urgency.NORMAL, Urgency.CRITICAL]):
        await waiting(store, f"+1999000001{n}", urgency)
    await store.set_agent_status("alice", "available", now())
    (available, loads, counts), statements = await presence_and_statements(store)
    assert available == {"alice"} and loads == {}
    rank = {u: u.rank for u in Urgency}
    assert dict(counts) == {
        ("payments", 0, rank[Urgency.NORMAL]): 2,
        ("payments", 0, rank[Urgency.CRITICAL]): 1,
    }
    assert len(statements) == 3, statements
