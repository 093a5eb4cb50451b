"""The engine the store runs on, SQLite (aiosqlite) or PostgreSQL (asyncpg), from start() to
stop(); the base of the store's repositories, which all share it.

start() never makes or changes the schema: it checks that the database is at the schema's
latest revision (`supportrouter db upgrade`, router/store/migrate.py), waiting for it if told to."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from router.store import json_text
from router.store.checkpoints import WalCheckpointer
from router.store.inline_sqlite import inline_engine
from router.store.revisions import wait_for_schema

# 32 MB of pages per SQLite connection instead of SQLite's 2 MB, where the store writes: a
# chunk's inserts land on index pages all over each table (the ids are random), and past a few
# thousand conversations the default cache missed on most of them (the dispatcher's CPU a
# message grew by 10-18% from the first burst of 3,000 to the third; with this, by 5-10%).
# SQLite frees a connection's cache when the pool closes it, but the allocator keeps the pages
# for the process: a process that mostly looks rows up (the gateway: the journal relay's
# lookups, the desk's reads, an agent's few writes) takes LOOKUP_PAGE_CACHE_MB.
PAGE_CACHE_MB = 32
LOOKUP_PAGE_CACHE_MB = 8


class Database:
    """The engine of one `ConversationStore`, made by start() once the schema is at head (waiting
    up to `schema_wait_seconds` for it). `sqlite_on_loop`: on SQLite, its calls are made on the
    event loop's thread through SQLAlchemy's synchronous engine instead of on aiosqlite's
    thread (for the pipeline's workers; see inline_sqlite), and the log is checkpointed on a
    thread of its own, never in a commit (see checkpoints)."""

    def __init__(
        self,
        url: str,
        *,
        schema_wait_seconds: float = 0,
        sqlite_on_loop: bool = False,
        checkpoint_seconds: float = 0.5,
        page_cache_mb: int = PAGE_CACHE_MB,
        **engine_options: Any,
    ):
        self.url = url
        self.page_cache_mb = page_cache_mb
        self.schema_wait_seconds = schema_wait_seconds
        self._checkpointer: WalCheckpointer | None = None
        # SQLite's calls made on the event loop's thread (router/store/inline_sqlite.py).
        self._inline = sqlite_on_loop and url.startswith("sqlite")
        if self._inline:
            path = sa.engine.make_url(url).database
            if path and path != ":memory:":
                self._checkpointer = WalCheckpointer(path, checkpoint_seconds)
        self._engine_options = {"json_serializer": json_text.dumps, **engine_options}
        self._engine: AsyncEngine | None = None
        self._reads: AsyncEngine | None = None
        self._writer = WriterTurn() if url.startswith("sqlite") else None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("ConversationStore is not started")
        return self._engine

    @property
    def reads(self) -> AsyncEngine:
        """The engine for reads and for one statement that writes on its own. On PostgreSQL it
        runs in autocommit: one round trip a statement, without the BEGIN before it and the
        ROLLBACK when its connection goes back to the pool (three for a one-statement read).
        Under PostgreSQL's READ COMMITTED each statement sees its own snapshot inside a
        transaction too, so a read of several statements sees what it saw before. Elsewhere it
        is `engine`."""
        if self._reads is None:
            raise RuntimeError("ConversationStore is not started")
        return self._reads

    async def start(self) -> None:
        if self._engine is not None:
            raise RuntimeError("ConversationStore already started")
        if self.url.startswith("sqlite"):
            ensure_sqlite_dir(self.url)
        engine = (
            # The part of AsyncEngine's surface the store uses, over a synchronous engine.
            cast(AsyncEngine, inline_engine(self.url, **self._engine_options))
            if self._inline
            else create_async_engine(self.url, **self._engine_options)
        )
        if self.url.startswith("sqlite"):
            sa.event.listen(
                engine.sync_engine,
                "connect",
                functools.partial(sqlite_pragmas, page_cache_mb=self.page_cache_mb),
            )
        if self._checkpointer is not None:
            sa.event.listen(engine.sync_engine, "connect", no_checkpoint_in_commits)
        try:
            await wait_for_schema(engine, self.schema_wait_seconds)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._reads = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )
        if self._checkpointer is not None:
            self._checkpointer.start()

    async def stop(self) -> None:
        if self._engine is not None:
            engine, self._engine, self._reads = self._engine, None, None
            await engine.dispose()
            if self._checkpointer is not None:
                await asyncio.to_thread(self._checkpointer.stop)

    @contextlib.asynccontextmanager
    async def write_one(self) -> AsyncIterator[AsyncConnection]:
        """One statement that writes, committed on its own: on PostgreSQL in autocommit (one
        round trip instead of three); on SQLite a `write` (this process's writers in turn)."""
        if self._writer is not None:
            async with self.write() as conn:
                yield conn
            return
        async with self.reads.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that may write. SQLite has one writer at a time, and a writer that finds
        the database locked polls it, sleeping up to 100 ms a try (its busy handler): under load
        the router's own writers (dispatcher, sender, relays, timers) lost more time polling
        than they spent writing. So on SQLite this process's writers take turns here first, in
        order; the busy handler is left for other processes."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._writer.turn(), self.engine.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))


class WriterTurn:
    """One writer at a time among this process's tasks; the task holding the turn may open
    another transaction inside it (a nested write then meets SQLite's own lock, as before)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            yield
            return
        async with self._lock:
            self._holder = task
            try:
                yield
            finally:
                self._holder = None


class Repository:
    """One aggregate's statements, on the engine of the store that holds it."""

    def __init__(self, database: Database):
        self._database = database

    @property
    def engine(self) -> AsyncEngine:
        """For reads (`Database.reads`); what writes goes through `write`, or `write_one`."""
        return self._database.reads

    def write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction (see `Database.write`)."""
        return self._database.write()

    def write_one(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """One statement that writes, committed on its own (see `Database.write_one`)."""
        return self._database.write_one()


async def hold_sqlite_writes(conn: AsyncConnection) -> None:
    """On SQLite, take the database's write lock now (BEGIN IMMEDIATE), before reading: what the
    transaction reads then stays true until it commits, and no later write of it meets a busy
    database half-way. Must be the transaction's first statement; elsewhere a no-op."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


# Each key's advisory lock, in the order of its hash: built once (every dispatcher chunk runs it).
_HOLD_KEYS = sa.text(
    "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h "
    "FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h) AS held"
)


async def hold_keys(conn: AsyncConnection, keys: Iterable[str]) -> None:
    """On PostgreSQL, hold each key (a transaction-scoped advisory lock on its text's hash) until
    the transaction ends, all in one statement and one order, so two transactions holding keys
    in common wait for each other instead of deadlocking. Elsewhere a no-op: SQLite's writers
    wait for its one write lock (`hold_sqlite_writes`)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_HOLD_KEYS, {"keys": sorted(set(keys))})


def insert_for(dialect: str) -> Callable[[sa.Table], Any]:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING (both SQLite and PostgreSQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def ensure_sqlite_dir(url: str) -> None:
    from pathlib import Path

    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def sqlite_pragmas(dbapi_conn, _record, *, page_cache_mb: int) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    # WAL with NORMAL survives a crash of the router (not of the machine) without an fsync
    # per commit: the durable record of a message is Kafka until the consumer commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Each connection's page cache, at most (see PAGE_CACHE_MB).
    cursor.execute(f"PRAGMA cache_size=-{page_cache_mb * 1024}")
    cursor.close()


def no_checkpoint_in_commits(dbapi_conn, _record) -> None:
    """No automatic checkpoint in this connection's commits: a `WalCheckpointer` runs them."""
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()
