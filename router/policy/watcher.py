"""Hot reload of config/: on a file change (polled) and on request (SIGHUP, in the entry point).

A candidate is loaded and checked whole, off the event loop; a bad file is refused with file,
line and reason, and the rules in force keep running. A good one replaces them in one step, and
every decision from then on records its version.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.core.tasks import cancel_and_wait
from router.observability.metrics import CONFIG_RELOADS
from router.operator_files.config import ConfigError
from router.policy.rules import Rules

log = structlog.get_logger("router.policy.watcher")


class ReloadSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUPPORTROUTER_", extra="ignore")

    config_poll_seconds: float = 2.0  # 0: reload only on SIGHUP


class ConfigWatcher:
    def __init__(self, rules: Rules, interval: float | None = None):
        self.rules = rules
        self.interval = ReloadSettings().config_poll_seconds if interval is None else interval
        self.problems: list[str] = []  # of the last candidate refused, while it is still on disk
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._seen = self._fingerprint()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("ConfigWatcher already started")
        self._task = asyncio.create_task(self._run(), name="config:watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def request(self) -> None:
        """Ask for a reload now (safe from a signal handler on the loop)."""
        self._wake.set()

    def _fingerprint(self) -> tuple:
        root = Path(self.rules.config_dir)
        try:
            return tuple(
                sorted(
                    (str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*.yaml")
                )
            )
        except OSError:  # a file vanished while listing: an editor is saving; look again next round
            return ()

    async def _run(self) -> None:
        while True:
            timeout = self.interval if self.interval > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            asked, self._wake = self._wake.is_set(), asyncio.Event()
            seen = self._fingerprint()
            if asked or seen != self._seen:
                self._seen = seen
                await self.reload("signal" if asked else "file change")

    async def reload(self, reason: str = "request") -> bool:
        """Load config/ again; True when new rules are in force."""
        in_force = self.rules.version
        try:
            fresh = await asyncio.to_thread(Rules, self.rules.config_dir)
        except ConfigError as exc:
            self.problems = [str(p) for p in exc.problems]
            CONFIG_RELOADS.labels(result="refused").inc()
            log.error(
                "config.refused", reason=reason, version_in_force=in_force, problems=self.problems
            )
            return False
        except Exception as exc:  # the classifier could not be built from it: refused the same way
            self.problems = [f"{type(exc).__name__}: {exc}"[:500]]
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
