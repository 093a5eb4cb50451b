"""WalCheckpointer: SQLite's WAL copied back into the database on a thread of its own.

In WAL mode, a commit that finds the log past 1,000 pages copies it into the database then and
there (the automatic checkpoint), with an fsync of each file: on this project's machines, 15 to
25 ms of waiting inside a commit. A dispatcher's chunk writes a page or more for every row and
every index it touches, so at a steady 500 messages/s one of its commits in six or so paid for
a checkpoint, on the event loop (its SQLite calls run there: inline_sqlite) and holding the
write lock that the sender and the other workers then waited for.

The workers that call SQLite on their loop therefore turn the automatic checkpoint off on their
connections and run this instead: a passive checkpoint every `interval` seconds from its own
connection, on its own thread (the sqlite3 module lets other threads run meanwhile). A passive
checkpoint waits for no reader and no writer; commits go on appending to the log while it runs.
What a commit promises is unchanged: `synchronous=NORMAL`, a crash of the router loses nothing
committed (see `sqlite_pragmas`).
"""

from __future__ import annotations

import sqlite3
import threading

import structlog

log = structlog.get_logger("router.store.checkpoints")


class WalCheckpointer:
    def __init__(self, path: str, interval: float = 0.5):
        self.path, self.interval = path, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("WalCheckpointer already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after one last checkpoint (what the thread is doing is finished first)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            while not self._stop.wait(self.interval):
                self._checkpoint(db)
            self._checkpoint(db)
        finally:
            db.close()

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            # Another process's checkpointer at work makes this one a no-op (busy), not an error.
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # a busy or missing file: the next round tries again
            log.warning("store.checkpoint_failed", path=self.path, error=str(exc)[:300])
