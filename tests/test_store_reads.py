"""The store's reads, and a write of one statement, on PostgreSQL in autocommit: one round trip
a statement, with no BEGIN before it and no ROLLBACK after. Its transactions still hold together,
and on SQLite everything is as before."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from router.store.database import Database, Repository

PROBE = sa.Table("reads_probe", sa.MetaData(), sa.Column("k", sa.Text, primary_key=True))


async def _count(database: Database) -> int:
    async with database.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(PROBE))).scalar_one()


async def test_reads_run_alone_on_postgres_and_transactions_stay_whole(database_url):
    database = Database(database_url)
    await database.start()
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(PROBE.metadata.create_all)
            await conn.execute(PROBE.delete())
        repository = Repository(database)
        postgres = database_url.startswith("postgresql")
        # VACUUM cannot run inside a transaction block: it runs on a read's connection only if
        # nothing began one before it (the BEGIN that was a round trip of its own).
        async with repository.engine.connect() as conn:
            if postgres:
                await conn.execute(sa.text("VACUUM reads_probe"))
            else:
                assert repository.engine is database.engine
        # One statement written alone: on PostgreSQL committed as it runs, seen at once from
        # another connection; on SQLite a transaction of its own, seen once it is over.
        async with repository.write_one() as conn:
            await conn.execute(PROBE.insert(), [{"k": "alone"}])
            assert await _count(database) == (1 if postgres else 0)
        assert await _count(database) == 1
        # A transaction is still one: what failed half-way left nothing.
        with pytest.raises(RuntimeError):
            async with repository.write() as conn:
                await conn.execute(PROBE.insert(), [{"k": "first"}])
                await conn.execute(PROBE.insert(), [{"k": "second"}])
                raise RuntimeError("the chunk failed")
        assert await _count(database) == 1
    finally:
        async with database.engine.begin() as conn:
            await conn.run_sync(PROBE.metadata.drop_all)
        await database.stop()
