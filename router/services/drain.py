"""Drain: a stop lets what was accepted reach the store before the pipeline stops.

Started just before the gateway, it stops just after it: intake is closed by then, the
consumers still run. Its stop waits (at most `seconds`) until the store has every message this
process accepted. Meanwhile it forgets, every few seconds, the ones stored already, so the set
stays small. What is not stored when time is up is still safe: in Kafka, or in the journal.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from router.core.tasks import cancel_and_wait
from router.services.intake import Intake
from router.store.conversations import ConversationStore

log = structlog.get_logger("router.services.drain")

_PAGE = 1000


class Drain:
    def __init__(
        self, intake: Intake, store: ConversationStore, *, seconds: float, interval: float = 2.0
    ):
        self.intake, self.store, self.seconds, self.interval = intake, store, seconds, interval
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("Drain already started")
        self._task = asyncio.create_task(self._run(), name="intake:drain")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)
        deadline = time.monotonic() + self.seconds
        while True:
            try:
                waiting = await self.confirm()
            except Exception as exc:  # the store away: what was accepted is in Kafka or the journal
                log.warning("intake.drain_failed", error=repr(exc)[:300])
                return
            if not waiting:
                log.info("intake.drained")
                return
            if time.monotonic() >= deadline:
                log.warning("intake.drain_timed_out", waiting=waiting)
                return
            await asyncio.sleep(0.2)

    async def confirm(self) -> int:
        """Forget the accepted messages the store has; return how many are still waiting."""
        waiting = sorted(self.intake.unconfirmed)
        for start in range(0, len(waiting), _PAGE):
            page = waiting[start : start + _PAGE]
            self.intake.unconfirmed -= await self.store.stored_message_ids(page)
        return len(self.intake.unconfirmed)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.confirm()
            except Exception as exc:  # the next round tries again
                log.warning("intake.confirm_failed", error=repr(exc)[:300])
