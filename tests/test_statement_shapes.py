"""The store's statements keep one text whatever the number of values they carry, and none of
them reads a whole table that grows with the traffic.

Each text is a statement that SQLite (and asyncpg) prepares and keeps per connection. When a
list of ids was written out as one placeholder per id, each batch length was a statement of its
own: under a steady load the gateway and dispatcher workers kept preparing new ones, and their
memory grew by megabytes a minute (router/store/value_lists.py).

The dispatcher counts the waiting conversations with each chunk and looks for SLA breaches each
second: without an index for them, each read every conversation ever stored (migration 0003)."""

from __future__ import annotations

import asyncio
import re
import sqlite3

import sqlalchemy as sa

from tests.test_reliability import wait_for
from tests.twilio_standin import twilio_router

PLACEHOLDERS = re.compile(r"\?(\s*,\s*\?)*")
ROWS = re.compile(r"\(\?\)(\s*,\s*\(\?\))*")
# What grows with every message; the agents' own tables stay the size of the team.
GROWING = ("conversations", "messages", "cases", "case_facts", "case_events", "customer_agents")


def shape(statement: str) -> str:
    """The statement with each run of placeholders (and of VALUES rows) written as one."""
    return ROWS.sub("(?)", PLACEHOLDERS.sub("?", statement))


async def test_sms_bursts_of_different_sizes_run_each_query_as_one_statement_text(
    tmp_path, monkeypatch
):
    async with twilio_router(
        f"sqlite+aiosqlite:///{tmp_path}/store.db", monkeypatch, channels=["sms"]
    ) as t:
        texts: dict[str, tuple] = {}  # each statement, with the parameters it first ran with

        def seen(conn, cursor, statement, parameters, context, executemany) -> None:
            if not executemany:
                texts.setdefault(statement, parameters)

        engine = t.router.store.engine.sync_engine
        sa.event.listen(engine, "before_cursor_execute", seen)

        async def stored_inbound() -> int:  # read aside: not one of the router's statements
            with sqlite3.connect(tmp_path / "store.db") as db:
                return db.execute(
                    "SELECT count(*) FROM messages WHERE direction = 'in'"
                ).fetchone()[0]

        sent = 0
        # Each burst reaches the dispatcher, the intake journal's relay and the drain in
        # batches of its own length (one customer a message: every list is as long as it).
        for burst in (1, 7, 2, 23, 4):
            answers = await asyncio.gather(
                *(t.sms("what is the fee", sender=f"+1999{sent + n:07d}") for n in range(burst))
            )
            assert [status for status, _ in answers] == [200] * burst
            sent += burst
            await wait_for(lambda total=sent: _at_least(stored_inbound, total), timeout=30)
        await asyncio.sleep(2.5)  # a round of the relay and of the drain over what was stored
        # The dispatcher's own rounds, on what was stored: the timers, the gauges, the relay.
        dispatcher = t.router.dispatcher
        await dispatcher.tick()
        await dispatcher.measure_queues()
        await dispatcher.relay.flush(older_than=0.001)
        sa.event.remove(engine, "before_cursor_execute", seen)

    by_shape: dict[str, set[str]] = {}
    for text in texts:
        by_shape.setdefault(shape(text), set()).add(text)
    varying = {s: len(found) for s, found in by_shape.items() if len(found) > 1}
    assert varying == {}

    with sqlite3.connect(tmp_path / "store.db") as db:
        plans = [
            (" ".join(text.split())[:160], step)
            for text, parameters in texts.items()
            if not text.lstrip().upper().startswith(("BEGIN", "PRAGMA", "COMMIT"))
            for *_, step in db.execute(f"EXPLAIN QUERY PLAN {text}", parameters)
        ]
        # A partial index holds only what its round looks for (e.g. replies not yet on Kafka).
        partial = {
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'"
            )
        }
    scans = {
        text: step
        for text, step in plans
        if step.startswith("SCAN ")
        and step.split()[1] in GROWING
        and not any(step.endswith(f"INDEX {name}") for name in partial)
    }
    assert scans == {}
    # The ladder's round each second reads the steps due, not every waiting conversation.
    ladder = [
        step
        for text, step in plans
        if "conversations.step_due_at <= ?" in text and step.startswith(("SEARCH", "SCAN"))
    ]
    assert ladder and all(step.endswith("(status=? AND step_due_at<?)") for step in ladder)


async def _at_least(count, total: int) -> bool:
    return await count() >= total
