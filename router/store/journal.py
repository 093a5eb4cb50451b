"""IntakeJournal: every accepted message on disk before the gateway answers yes.

The embedded broker keeps records in memory only, so its acknowledgement alone would not make a
200 safe. The gateway therefore writes each message here first: one SQLite file, written by one
thread, in WAL mode, with **group commit** (every write that arrived while the previous commit
was on disk goes into the next transaction, so a burst costs one fsync per group, not per
message). An entry stays until the store has its message (`JournalRelay` deletes it then); what
a crash, a stop or a broker restart left behind is published again, and the store's dedupe by
message_id keeps it stored once.

`synchronous=FULL` (the default) survives a power cut as well as a killed process; `NORMAL`
survives a killed process only and is cheaper.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("router.store.journal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    message_id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at REAL NOT NULL
)
"""
_GROUP_LIMIT = 2000  # writes per transaction at most, so one group never holds the others long
# A new entry is on its way through Kafka: the relay publishes it again only if it is still not
# stored this long after, or sooner when something says Kafka lost it (a restart, a refusal).
_NOT_BEFORE = 600.0


@dataclass(frozen=True)
class Entry:
    message_id: str
    topic: str
    key: bytes | None
    value: bytes
    accepted_at: float
    attempts: int


@dataclass
class _Write:
    """One request to the writer thread; `append` requests are grouped into one commit."""

    kind: str
    args: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class IntakeJournal:
    def __init__(self, path: Path, *, synchronous: str = "full"):
        if synchronous.lower() not in ("full", "normal"):
            raise ValueError(f"journal synchronous must be full or normal, not {synchronous!r}")
        self.path = path
        self.synchronous = synchronous.upper()
        self._requests: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.commits = 0  # transactions written; with `appended`, how well writes are grouped
        self.appended = 0

    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("IntakeJournal already started")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready, asyncio.get_running_loop()), name="intake-journal"
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        log.info("journal.opened", path=str(self.path), pending=await self.count())

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._requests.put(None)
        await asyncio.to_thread(thread.join)

    async def __aenter__(self) -> IntakeJournal:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what the router asks -------------------------------------------------------------

    async def append(self, message_id: str, topic: str, key: bytes | None, value: bytes) -> None:
        """Return once the entry is committed to disk (a message already there is kept as is)."""
        await self._ask("append", (message_id, topic, key, value))

    async def pending(
        self, limit: int = 500, *, due_before: float | None = None, after: str = ""
    ) -> list[Entry]:
        """Entries in message_id order from `after`; with `due_before`, only those due by then."""
        return await self._ask("pending", (limit, due_before, after))

    async def ids(self, limit: int = 1000, *, after: str = "") -> list[str]:
        """The message ids of entries in order from `after` (what pruning needs: no values)."""
        return await self._ask("ids", (limit, after))

    async def done(self, message_ids: list[str]) -> None:
        """The store has these messages: forget them."""
        if message_ids:
            await self._ask("done", message_ids)

    async def retry_later(self, message_ids: list[str], delay: Callable[[int], float]) -> None:
        """Published again: count the attempt and set the next one `delay(attempts)` ahead."""
        if message_ids:
            await self._ask("retry_later", (message_ids, delay))

    async def due_now(self, message_ids: list[str] | None = None) -> None:
        """Make these (None: every entry) due at once, e.g. after the broker lost its records."""
        await self._ask("due_now", message_ids)

    async def count(self) -> int:
        """Entries waiting for the store."""
        return await self._ask("count", None)

    async def _ask(self, kind: str, args: Any) -> Any:
        if self._thread is None:
            raise RuntimeError("IntakeJournal is not started")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._requests.put(_Write(kind, args, future, loop))
        return await future

    # --- the writer thread ----------------------------------------------------------------

    def _run(self, ready: asyncio.Future, loop: asyncio.AbstractEventLoop) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            error = RuntimeError(f"cannot open the intake journal {self.path}: {exc}")
            loop.call_soon_threadsafe(_settle, ready, None, error)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        try:
            while True:
                first = self._requests.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < _GROUP_LIMIT:
                    try:
                        more = self._requests.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._requests.put(None)  # stop after this group
                        break
                    batch.append(more)
                self._serve(db, batch)
        finally:
            db.close()

    def _serve(self, db: sqlite3.Connection, batch: list[_Write]) -> None:
        appends = [w for w in batch if w.kind == "append"]
        if appends:
            now = time.time()
            try:
                db.execute("BEGIN")
                db.executemany(
                    "INSERT OR IGNORE INTO entries"
                    " (message_id, topic, key, value, accepted_at, due_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(*w.args, now, now + _NOT_BEFORE) for w in appends],
                )
                db.execute("COMMIT")
                self.commits += 1
                self.appended += len(appends)
                _settle_all(appends, None)
            except sqlite3.Error as exc:
                _rollback(db)
                _settle_all(appends, RuntimeError(f"the intake journal could not write: {exc}"))
        for w in batch:
            if w.kind == "append":
                continue
            try:
                result = getattr(self, f"_{w.kind}")(db, w.args)
            except sqlite3.Error as exc:
                _rollback(db)
                w.loop.call_soon_threadsafe(_settle, w.future, None, exc)
            else:
                w.loop.call_soon_threadsafe(_settle, w.future, result, None)

    @staticmethod
    def _pending(db: sqlite3.Connection, args: tuple[int, float | None, str]) -> list[Entry]:
        limit, due_before, after = args
        sql = (
            "SELECT message_id, topic, key, value, accepted_at, attempts FROM entries"
            " WHERE message_id > ?"
        )
        params: list[Any] = [after]
        if due_before is not None:
            sql += " AND due_at <= ?"
            params.append(due_before)
        sql += " ORDER BY message_id LIMIT ?"
        params.append(limit)
        return [Entry(*row) for row in db.execute(sql, params)]

    @staticmethod
    def _ids(db: sqlite3.Connection, args: tuple[int, str]) -> list[str]:
        limit, after = args
        sql = "SELECT message_id FROM entries WHERE message_id > ? ORDER BY message_id LIMIT ?"
        return [row[0] for row in db.execute(sql, (after, limit))]

    @staticmethod
    def _done(db: sqlite3.Connection, message_ids: list[str]) -> None:
        # One transaction: in autocommit each DELETE would be a commit (an fsync) of its own.
        db.execute("BEGIN")
        db.executemany("DELETE FROM entries WHERE message_id = ?", [(m,) for m in message_ids])
        db.execute("COMMIT")

    @staticmethod
    def _retry_later(
        db: sqlite3.Connection, args: tuple[list[str], Callable[[int], float]]
    ) -> None:
        message_ids, delay = args
        now = time.time()
        db.execute("BEGIN")
        for message_id in message_ids:
            row = db.execute(
                "SELECT attempts FROM entries WHERE message_id = ?", (message_id,)
            ).fetchone()
            if row is not None:
                attempts = row[0] + 1
                db.execute(
                    "UPDATE entries SET attempts = ?, due_at = ? WHERE message_id = ?",
                    (attempts, now + delay(attempts), message_id),
                )
        db.execute("COMMIT")

    @staticmethod
    def _due_now(db: sqlite3.Connection, message_ids: list[str] | None) -> None:
        now = time.time()
        if message_ids is None:
            db.execute("UPDATE entries SET due_at = ?", (now,))
        else:
            db.execute("BEGIN")
            db.executemany(
                "UPDATE entries SET due_at = ? WHERE message_id = ?",
                [(now, m) for m in message_ids],
            )
            db.execute("COMMIT")

    @staticmethod
    def _count(db: sqlite3.Connection, _: None) -> int:
        return db.execute("SELECT count(*) FROM entries").fetchone()[0]


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller went away (cancelled); the write stands
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _settle_all(writes: list[_Write], error: BaseException | None) -> None:
    """Settle a group's writes with one wake-up of each loop they came from, not one each: the
    loop is woken through a pipe, and at a thousand a second those wake-ups add up."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for w in writes:
        by_loop.setdefault(w.loop, []).append(w.future)
    for loop, futures in by_loop.items():
        loop.call_soon_threadsafe(_settle_many, futures, error)


def _settle_many(futures: list[asyncio.Future], error: BaseException | None) -> None:
    for future in futures:
        _settle(future, None, error)


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")
