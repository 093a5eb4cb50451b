"""SQLite called on the event loop's own thread, for the pipeline's workers (dispatcher, sender).

aiosqlite makes every call on a thread of its own, and SQLAlchemy's adapter makes about four
calls a statement (cursor, execute, fetch, close): a dispatcher's chunk was some eighty hand-offs
to that thread and back to the loop. On two busy cores each hand-off waits for the scheduler.
Measured at a steady 100 messages/s, the dispatcher's event loop sat idle half the time while a
chunk of 7 messages took 60 ms, and its messages waited 150 ms (p50) from classified to queued;
made on the loop, 90 ms. A statement on the local file takes microseconds to a millisecond, and
the loop waits for it: in a worker whose whole job is the next chunk, nothing else was waiting.
A write that finds another process holding SQLite's lock sleeps in SQLite's busy handler (up to
its `busy_timeout`) with the loop; the Kafka session outlives that.

Once the calls were made on the loop, SQLAlchemy's asyncio layer was most of what was left: a
greenlet switch and a coroutine for each of those calls, and for taking and returning a
connection. Measured on an empty store (1,000 calls each, one selected row): a statement 94 µs
of CPU through it, 49 µs through SQLAlchemy's own synchronous engine; a connection taken, used
once and given back, 233 µs against 128. A dispatcher's chunk makes a dozen statements on six
connections: a chunk of one message went from 5.2-5.8 ms of CPU to 3.7-3.9
(bench/dispatcher_rounds.py).
So these workers run SQLAlchemy's synchronous engine (the standard `sqlite3` driver, the same
pool, options and statements) behind `InlineEngine`: the part of `AsyncEngine`'s surface the
store uses, each call made at once.

The gateway keeps aiosqlite's thread: it answers HTTP while the store works.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")


class InlineConnection:
    """`AsyncConnection`'s methods the store calls, made on a synchronous `sa.Connection`."""

    def __init__(self, sync_connection: sa.Connection):
        self.sync_connection = sync_connection

    @property
    def dialect(self) -> sa.Dialect:
        return self.sync_connection.dialect

    async def execute(self, statement: Any, parameters: Any = None, **options: Any) -> Any:
        return self.sync_connection.execute(statement, parameters, **options)

    async def exec_driver_sql(self, statement: str, parameters: Any = None, **options: Any) -> Any:
        return self.sync_connection.exec_driver_sql(statement, parameters, **options)

    async def scalar(self, statement: Any, parameters: Any = None, **options: Any) -> Any:
        return self.sync_connection.scalar(statement, parameters, **options)

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(self.sync_connection, *args, **kwargs)


class InlineEngine:
    """`AsyncEngine`'s methods the store calls (connect, begin, dispose), on a synchronous
    engine. `sync_engine` is that engine, for event listeners, as on an `AsyncEngine`."""

    def __init__(self, sync_engine: sa.Engine):
        self.sync_engine = sync_engine

    @property
    def dialect(self) -> sa.Dialect:
        return self.sync_engine.dialect

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[InlineConnection]:
        with self.sync_engine.connect() as conn:
            yield InlineConnection(conn)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[InlineConnection]:
        with self.sync_engine.begin() as conn:
            yield InlineConnection(conn)

    async def dispose(self) -> None:
        self.sync_engine.dispose()


def inline_engine(url: str, **engine_options: Any) -> InlineEngine:
    """The engine for this sqlite+aiosqlite URL (same file, same options), synchronous, its
    connections usable from any thread as aiosqlite's were (the checkpointer has its own)."""
    parsed = sa.engine.make_url(url).set(drivername="sqlite+pysqlite")
    connect_args = {"check_same_thread": False, **engine_options.pop("connect_args", {})}
    return InlineEngine(sa.create_engine(parsed, connect_args=connect_args, **engine_options))
