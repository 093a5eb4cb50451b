"""On SQLite the writers of one process take turns (`Database.write`): a second writer starts
its transaction once the first has committed, instead of polling SQLite's lock; a task already
writing may open another transaction inside its own without waiting for itself."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from router.core.envelope import now
from router.store.database import Database
from router.store.schema import cases
from tests.conftest import migrated_sqlite


async def test_a_second_writer_starts_after_the_first_has_committed(tmp_path):
    db = Database(await migrated_sqlite(tmp_path / "store.db"))
    await db.start()
    try:
        first_wrote, release = asyncio.Event(), asyncio.Event()
        counted: list[int] = []

        async def first() -> None:
            async with db.write() as conn:
                await conn.execute(cases.insert().values(id="first", created_at=now()))
                first_wrote.set()
                await release.wait()

        async def second() -> None:
            await first_wrote.wait()
            async with db.write() as conn:
                count = sa.select(sa.func.count()).select_from(cases)
                counted.append((await conn.execute(count)).scalar_one())
                await conn.execute(cases.insert().values(id="second", created_at=now()))

        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await first_wrote.wait()
        for _ in range(20):  # the second writer has every chance to begin
            await asyncio.sleep(0.01)
        assert counted == [], "the second writer began while the first held its transaction"
        release.set()
        await asyncio.gather(*tasks)
        assert counted == [1]  # it read after the first's commit
    finally:
        await db.stop()


async def test_a_writer_may_open_a_transaction_inside_its_own(tmp_path):
    db = Database(await migrated_sqlite(tmp_path / "store.db"))
    await db.start()
    try:
        async with asyncio.timeout(30), db.write() as outer:
            await outer.execute(cases.insert().values(id="outer", created_at=now()))
            async with db.write() as inner:  # a read inside: no wait for itself
                assert (await inner.execute(sa.select(sa.literal(1)))).scalar_one() == 1
    finally:
        await db.stop()
