"""The pipeline's workers make their SQLite calls on the event loop's thread, through
SQLAlchemy's synchronous engine (router/store/inline_sqlite.py); the gateway's store keeps
aiosqlite's thread. Either way the connection is set up alike: WAL, a busy timeout, foreign
keys, and a write that finds the database locked by another process waits for it instead of
failing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
import sqlalchemy as sa

from router.core.envelope import now
from router.store.database import LOOKUP_PAGE_CACHE_MB, PAGE_CACHE_MB, Database
from router.store.schema import cases
from tests.conftest import migrated_sqlite


def _thread_of_statements(dbapi_conn, _record) -> None:
    dbapi_conn.create_function("thread_id", 0, threading.get_ident)


@pytest.mark.parametrize("on_loop", [True, False], ids=["worker", "gateway"])
async def test_where_the_statements_run_and_how_the_connection_is_set_up(tmp_path, on_loop):
    db = Database(await migrated_sqlite(tmp_path / "store.db"), sqlite_on_loop=on_loop)
    await db.start()
    try:
        await db.engine.dispose()  # the connections opened from now on know thread_id()
        sa.event.listen(db.engine.sync_engine, "connect", _thread_of_statements)
        async with db.engine.connect() as conn:
            thread = (await conn.execute(sa.text("SELECT thread_id()"))).scalar_one()
            pragmas = [
                (await conn.execute(sa.text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "busy_timeout", "foreign_keys")
            ]
    finally:
        await db.stop()
    assert (thread == threading.get_ident()) is on_loop
    assert pragmas == ["wal", 5000, 1]


@pytest.mark.parametrize(
    ("options", "kib"),
    [({}, PAGE_CACHE_MB * 1024), ({"page_cache_mb": LOOKUP_PAGE_CACHE_MB}, 8 * 1024)],
    ids=["the store's writers", "the gateway"],
)
async def test_each_connection_is_opened_with_its_page_cache(tmp_path, options, kib):
    """The gateway's connections take a smaller cache: SQLite frees a closed connection's
    pages, but the process keeps them (docs/performance.md, "Thirteenth round")."""
    db = Database(await migrated_sqlite(tmp_path / "store.db"), **options)
    await db.start()
    try:
        async with db.engine.connect() as first, db.engine.connect() as second:
            sizes = [
                (await conn.execute(sa.text("PRAGMA cache_size"))).scalar_one()
                for conn in (first, second)
            ]
    finally:
        await db.stop()
    assert sizes == [-kib, -kib]  # negative: KiB, not pages


@pytest.mark.parametrize("on_loop", [True, False], ids=["worker", "gateway"])
async def test_a_write_waits_for_another_process_holding_the_lock(tmp_path, on_loop):
    url = await migrated_sqlite(tmp_path / "store.db")
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other process's write transaction, held
    other.execute("INSERT INTO cases (id, created_at) VALUES ('other', '2026-12-02 00:00:00')")
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    db = Database(url, sqlite_on_loop=on_loop)
    await db.start()
    try:
        release.start()
        async with asyncio.timeout(30), db.write() as conn:
            await conn.execute(cases.insert().values(id="ours", created_at=now()))
        async with db.engine.connect() as conn:
            stored = set((await conn.execute(sa.select(cases.c.id))).scalars())
    finally:
        release.join()
        other.close()
        await db.stop()
    assert stored == {"other", "ours"}
