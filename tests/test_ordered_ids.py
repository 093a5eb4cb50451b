"""The rows the dispatcher opens get ids that sort by time, and tickets that do not.

Time-ordered ids keep each new row's index entries at the end of the index, instead of on a
random page of it (what a store transaction writes to SQLite's log shrinks by a third to a
half: docs/performance.md). A ticket is what a customer quotes: drawn on its own, distinct for
conversations opened in the same millisecond, and drawn again when another one has it.
"""

from __future__ import annotations

import asyncio
import re
import time

import sqlalchemy as sa

from router.bus.kafka import KafkaBus
from router.core.envelope import ordered_id
from router.policy.rules import Rules
from router.services.dispatcher import DispatcherService
from router.store import inbound
from router.store.conversations import ConversationStore
from router.store.schema import case_events, cases, conversations
from tests.kafka_helpers import fetch_uncommitted
from tests.test_reliability import classified_envelope


def test_ordered_ids_sort_by_the_millisecond_they_were_made_in_and_never_repeat():
    made = []
    started_ms = time.time_ns() // 1_000_000
    for _ in range(5):
        made.append([ordered_id() for _ in range(500)])
        time.sleep(0.002)
    ended_ms = time.time_ns() // 1_000_000
    every = [i for group in made for i in group]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in every)
    assert len(set(every)) == len(every)
    # Each group sorts after the one before; within a millisecond the random part decides.
    for earlier, later in zip(made, made[1:], strict=False):
        assert max(earlier) < min(later)
    # The first 12 digits are the time they were made, in milliseconds.
    assert all(started_ms <= int(i[:12], 16) <= ended_ms for i in every)


async def _chunk(bus: KafkaBus, store: ConversationStore, rules: Rules, tag: str, n: int) -> None:
    """n new customers' messages through the dispatcher as one chunk."""
    texts = ("my transfer failed", "how do I reset my password", "someone took money from me")
    batch = [
        classified_envelope(rules, texts[i % len(texts)], f"chat:ordered-{tag}-{i}", f"{tag}-{i}")
        for i in range(n)
    ]
    await bus.publish_many(bus.topics.classified, ((e.kafka_key, e.to_bytes()) for e in batch))
    group = f"{bus.settings.consumer_group_prefix}-dispatcher"
    records = await fetch_uncommitted(bus, [bus.topics.classified], group, n)
    await DispatcherService(bus, store, rules).handle_batch(records)


async def test_conversations_and_cases_opened_later_sort_later_and_keep_distinct_tickets(
    bus_and_store, rules
):
    bus, store = bus_and_store
    await _chunk(bus, store, rules, "1", 40)
    await asyncio.sleep(0.002)
    async with store.engine.connect() as conn:
        first = (await conn.execute(sa.select(conversations.c.id, conversations.c.ticket))).all()
        first_cases = set((await conn.execute(sa.select(cases.c.id))).scalars())
    await _chunk(bus, store, rules, "2", 40)
    async with store.engine.connect() as conn:
        every = (await conn.execute(sa.select(conversations.c.id, conversations.c.ticket))).all()
        every_cases = set((await conn.execute(sa.select(cases.c.id))).scalars())
        opened = set((await conn.execute(sa.select(case_events.c.case_id))).scalars())
    later = [row for row in every if row not in first]
    later_cases = every_cases - first_cases
    assert len(first) == len(later) == 40 and len(first_cases) == len(later_cases) == 40
    assert max(i for i, _ in first) < min(i for i, _ in later)
    assert max(first_cases) < min(later_cases)
    assert opened == every_cases  # each in the audit trail under the id it was stored with
    # 80 conversations opened within a few milliseconds: 80 tickets, none the time's digits.
    tickets = [t for _, t in every]
    assert len(set(tickets)) == 80
    assert all(re.fullmatch(r"T[0-9A-F]{8}", t) for t in tickets)
    assert len({t for t in tickets if t[1:] in {i[:8].upper() for i, _ in every}}) == 0


async def test_a_ticket_drawn_that_another_conversation_has_is_drawn_again(
    bus_and_store, rules, monkeypatch
):
    """Tickets are 32 random bits: in a large store a draw now and then is taken. The draws are
    fixed here so that the second chunk's first draws are the first chunk's tickets."""
    bus, store = bus_and_store
    draws = iter(["T0000000A", "T0000000B", "T0000000C"] + ["T0000000A", "T0000000B"] * 2)
    fresh = iter(f"T{n:08X}" for n in range(0xD, 0x100))
    monkeypatch.setattr(inbound, "new_ticket", lambda: next(draws, None) or next(fresh))
    await _chunk(bus, store, rules, "first", 3)
    await _chunk(bus, store, rules, "second", 2)
    async with store.engine.connect() as conn:
        tickets = (
            await conn.execute(
                sa.select(conversations.c.conversation_key, conversations.c.ticket).order_by(
                    conversations.c.ticket
                )
            )
        ).all()
    assert [t for _, t in tickets] == [
        "T0000000A",
        "T0000000B",
        "T0000000C",
        "T0000000D",
        "T0000000E",
    ]
    assert {k for k, t in tickets if t > "T0000000C"} == {
        "chat:ordered-second-0",
        "chat:ordered-second-1",
    }
