"""Hot reload of the operators' files: config/ (the rules in force) and a channel's own (voice.yaml).

One mechanism, `FileWatch`: a cheap look at the files' inode, mtime and size says whether any moved;
only then is the candidate loaded and checked whole, off the event loop. A look happens on a timer
(config/, every SUPPORTROUTER_CONFIG_POLL_SECONDS), on request (SIGHUP, in the entry point), or
on use (voice.yaml, by the first call after it changed). A bad file is refused with file, line and
reason, and what is in force keeps running; a good one replaces it in one step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import structlog

from router.core.tasks import cancel_and_wait
from router.observability.metrics import CONFIG_RELOADS
from router.operator_files.config import ConfigError
from router.policy.rules import Rules

log = structlog.get_logger("router.policy.watcher")

Stamp = tuple[tuple[object, ...], ...]


def stamp(files: Callable[[], Iterable[Path]]) -> Stamp:
    """Each file's inode, mtime and size; a file missing for a moment (an editor saving) says so."""
    try:
        paths = sorted(files())
    except OSError:  # a file vanished while listing: look again next round
        return ()
    looks: list[tuple[object, ...]] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            looks.append((str(path),))
        else:
            looks.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(looks)


def problems_of(exc: BaseException) -> list[str]:
    """Why a candidate was refused, as file:line: reason where the loader knows them."""
    if isinstance(exc, ConfigError):
        return [str(p) for p in exc.problems]
    return [f"{type(exc).__name__}: {exc}"[:500]]


class FileWatch:
    """Calls `reload(reason)` when the files moved since the last look, or when asked.

    The stamp is taken before `reload` reads and kept only once it returned: a change made while
    reading is seen by the next look, and a look cancelled half-way leaves the reload to the next.
    """

    def __init__(
        self,
        files: Callable[[], Iterable[Path]],
        reload: Callable[[str], Awaitable[object]],
        interval: float = 0.0,
        name: str = "config:watch",
    ):
        self._files, self._reload, self.interval, self.name = files, reload, interval, name
        self._seen = stamp(files)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Look every `interval` seconds (0: only when asked)."""
        if self._task is not None:
            raise RuntimeError(f"{self.name} already started")
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def request(self) -> None:
        """Ask for a reload now (safe from a signal handler on the loop)."""
        self._wake.set()

    async def check(self, asked: bool = False) -> None:
        """Reload if the files moved (or if asked); a cheap look when they did not."""
        if not asked and stamp(self._files) == self._seen:
            return
        async with self._lock:
            seen = stamp(self._files)
            if asked or seen != self._seen:  # else another call reloaded while this one waited
                await self._reload("signal" if asked else "file change")
                self._seen = seen

    async def _run(self) -> None:
        while True:
            timeout = self.interval if self.interval > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            asked, self._wake = self._wake.is_set(), asyncio.Event()
            await self.check(asked)


class ConfigWatcher:
    """config/ in force: every *.yaml below it watched, the rules replaced whole or not at all."""

    def __init__(self, rules: Rules, interval: float = 2.0):
        self.rules = rules
        self.problems: list[str] = []  # of the last candidate refused, while it is still on disk
        self.files = FileWatch(
            lambda: Path(rules.config_dir).rglob("*.yaml"), self.reload, interval
        )

    async def start(self) -> None:
        await self.files.start()

    async def stop(self) -> None:
        await self.files.stop()

    def request(self) -> None:
        """Ask for a reload now (safe from a signal handler on the loop)."""
        self.files.request()

    async def reload(self, reason: str = "request") -> bool:
        """Load config/ again; True when new rules are in force."""
        in_force = self.rules.version
        try:
            fresh = await asyncio.to_thread(Rules, self.rules.config_dir)
        except Exception as exc:  # a bad file, or a classifier that cannot be built from it
            self.problems = problems_of(exc)
            CONFIG_RELOADS.labels(result="refused").inc()
            log.error(
                "config.refused", reason=reason, version_in_force=in_force, problems=self.problems
            )
            return False
        self.problems = []
        if fresh.version == in_force:
            log.info("config.unchanged", reason=reason, version=in_force)
            return False
        self.rules.adopt(fresh)
        CONFIG_RELOADS.labels(result="reloaded").inc()
        log.info("config.reloaded", reason=reason, version=fresh.version, previous=in_force)
        return True
