"""SQLite called on the event loop's own thread, for the pipeline's workers (dispatcher, sender).

aiosqlite makes every call on a thread of its own, and SQLAlchemy's adapter makes about four
calls a statement (cursor, execute, fetch, close): a dispatcher's chunk is some eighty hand-offs
to that thread and back to the loop. On two busy cores each hand-off waits for the scheduler.
Measured at a steady 100 messages/s, the dispatcher's event loop sat idle half the time while a
chunk of 7 messages took 60 ms, and its messages waited 150 ms (p50) from classified to queued;
made on the loop, 90 ms. A statement on the local file takes microseconds to a millisecond, and
the loop waits for it: in a worker whose whole job is the next chunk, nothing else was waiting.
A write that finds another process holding SQLite's lock sleeps in SQLite's busy handler (up to
its `busy_timeout`) with the loop; the Kafka session outlives that.

The gateway keeps aiosqlite's thread: it answers HTTP while the store works. The connection is
aiosqlite's own (SQLAlchemy's dialect needs nothing else); only where its calls run differs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiosqlite
import sqlalchemy as sa


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, each call made at once on the calling thread. Its own thread
    still opens and closes the SQLite connection (and sets an isolation level, if asked)."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def inline_creator(url: str) -> Callable[[], Awaitable[aiosqlite.Connection]]:
    """`create_async_engine(url, async_creator=...)`: the connection SQLAlchemy would open for
    this sqlite+aiosqlite URL (same file, same options), its calls made inline."""
    parsed = sa.engine.make_url(url)
    args, options = parsed.get_dialect()().create_connect_args(parsed)
    options["check_same_thread"] = False  # opened on aiosqlite's thread, used on the loop's

    async def connect() -> aiosqlite.Connection:
        connection = InlineConnection(partial(sqlite3.connect, *args, **options), 64)
        connection._thread.daemon = True  # as SQLAlchemy's dialect does: never holds up an exit
        return await connection

    return connect
