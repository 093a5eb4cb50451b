"""The pipeline workers' SQLite log is checkpointed on a thread of its own, never inside one of
their commits (router/store/checkpoints.py): a commit there used to stop the event loop for an
fsync or two whenever the log passed 1,000 pages."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from router.store.database import Database
from tests.conftest import migrated_sqlite

ROWS = 3000  # a value of 2 KB each: some 1,500 pages of log, past the automatic checkpoint's 1,000


async def _fill(database: Database) -> None:
    table = sa.table("filler", sa.column("id"), sa.column("value"))
    async with database.write() as conn:
        await conn.execute(sa.text("CREATE TABLE filler (id INTEGER PRIMARY KEY, value TEXT)"))
    for start in range(0, ROWS, 100):  # many commits, as a dispatcher makes them
        async with database.write() as conn:
            await conn.execute(
                table.insert(), [{"id": n, "value": "x" * 2000} for n in range(start, start + 100)]
            )


def _pages_in_the_database(path: Path) -> int:
    """What the database file itself holds, the log aside (what a checkpoint copies there)."""
    return path.stat().st_size // 4096


def _log_bytes(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size


async def test_the_workers_commits_never_checkpoint_and_their_checkpointer_does(tmp_path):
    path = tmp_path / "store.db"
    url = await migrated_sqlite(path)
    before = _pages_in_the_database(path)

    idle = Database(url, sqlite_on_loop=True, checkpoint_seconds=3600)
    await idle.start()
    try:
        await _fill(idle)
        async with idle.engine.connect() as conn:
            assert await conn.scalar(sa.text("PRAGMA wal_autocheckpoint")) == 0
        # Some 6 MB committed, and none of it copied into the database by a commit.
        assert _pages_in_the_database(path) - before < 100
        assert _log_bytes(path) > 4 * 1024 * 1024
    finally:
        await idle.stop()  # its last checkpoint

    # The stop's checkpoint copied it: the filler's 1,500 pages or so, less the free pages the
    # migrations left in the file for it to take (0005 rebuilds `messages` to drop a column).
    assert _pages_in_the_database(path) - before > ROWS // 3

    working = Database(url, sqlite_on_loop=True, checkpoint_seconds=0.05)
    await working.start()
    try:
        grown = _pages_in_the_database(path)
        async with working.write() as conn:
            await conn.execute(
                sa.text("INSERT INTO filler (id, value) VALUES (:id, :value)"),
                [{"id": n, "value": "y" * 2000} for n in range(ROWS, 2 * ROWS)],
            )
        async with asyncio.timeout(30):  # the checkpointer copies it while the store runs
            while _pages_in_the_database(path) - grown < ROWS // 2:
                await asyncio.sleep(0.05)
    finally:
        await working.stop()


async def test_a_store_on_aiosqlites_thread_keeps_sqlites_own_checkpoints(tmp_path):
    url = await migrated_sqlite(tmp_path / "store.db")
    database = Database(url)  # the gateway's, the API's: their commits run on a thread anyway
    await database.start()
    try:
        async with database.engine.connect() as conn:
            assert await conn.scalar(sa.text("PRAGMA wal_autocheckpoint")) == 1000
            assert await conn.scalar(sa.text("PRAGMA cache_size")) == -32768  # 32 MB, every store
    finally:
        await database.stop()
    with sqlite3.connect(tmp_path / "store.db") as db:  # and the file is a sound database
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
