"""The engine the store runs on, SQLite (aiosqlite) or PostgreSQL (asyncpg), from start() to
stop(); the base of the store's repositories, which all share it.

start() never makes or changes the schema: it checks that the database is at the schema's
latest revision (`supportrouter db upgrade`, router/store/migrate.py), waiting for it if told to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from router.store.revisions import wait_for_schema


class Database:
    """The engine of one `ConversationStore`, made by start() once the schema is at head (waiting
    up to `schema_wait_seconds` for it)."""

    def __init__(self, url: str, *, schema_wait_seconds: float = 0, **engine_options: Any):
        self.url = url
        self.schema_wait_seconds = schema_wait_seconds
        self._engine_options = engine_options
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("ConversationStore is not started")
        return self._engine

    async def start(self) -> None:
        if self._engine is not None:
            raise RuntimeError("ConversationStore already started")
        if self.url.startswith("sqlite"):
            ensure_sqlite_dir(self.url)
        engine = create_async_engine(self.url, **self._engine_options)
        if self.url.startswith("sqlite"):
            sa.event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        try:
            await wait_for_schema(engine, self.schema_wait_seconds)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine

    async def stop(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))


class Repository:
    """One aggregate's statements, on the engine of the store that holds it."""

    def __init__(self, database: Database):
        self._database = database

    @property
    def engine(self) -> AsyncEngine:
        return self._database.engine


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


def sqlite_pragmas(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    # WAL with NORMAL survives a crash of the router (not of the machine) without an fsync
    # per commit: the durable record of a message is Kafka until the consumer commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
