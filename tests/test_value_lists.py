"""A statement built once with `listed(name)` finds each run's own values, whatever their number,
on SQLite and PostgreSQL: the store builds the statements every chunk runs once, at import."""

from __future__ import annotations

import sqlalchemy as sa

from router.store.conversations import ConversationStore
from router.store.value_lists import listed, one_of

PROBE = sa.Table("listed_probe", sa.MetaData(), sa.Column("k", sa.Text, primary_key=True))
BUILT_ONCE = sa.select(PROBE.c.k).where(one_of(PROBE.c.k, listed("keys"))).order_by(PROBE.c.k)


async def test_a_statement_built_once_finds_each_runs_values(database_url):
    # SQLite both ways the store calls it: on the loop (the workers) and on aiosqlite's thread
    sqlite = database_url.startswith("sqlite")
    for on_loop in (True, False) if sqlite else (False,):
        async with ConversationStore(database_url, sqlite_on_loop=on_loop) as store:
            async with store.engine.begin() as conn:
                await conn.run_sync(PROBE.metadata.create_all)
                await conn.execute(PROBE.delete())
                await conn.execute(PROBE.insert(), [{"k": f"k{i:03d}"} for i in range(300)])
            texts: set[str] = set()
            sa.event.listen(
                store.engine.sync_engine,
                "before_cursor_execute",
                lambda conn, cursor, statement, *rest, texts=texts: texts.add(statement),
            )
            async with store.engine.connect() as conn:
                for asked in (
                    ["k001"],
                    ["k299", "k007", "nope"],
                    [],
                    [f"k{i:03d}" for i in range(250)],
                ):
                    rows = (await conn.execute(BUILT_ONCE, {"keys": asked})).scalars().all()
                    assert rows == sorted(k for k in asked if k != "nope"), (on_loop, asked)
            assert len(texts) == 1, texts  # one statement text for every length
