"""Stopping background tasks: one way, used by every service's stop()."""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger("router.core.tasks")


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel the tasks and wait for each. A task that had already died with an error is
    logged, not re-raised, so the rest of a service's stop (closing its clients) still runs."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    for task in live:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            log.error("task.died", task=task.get_name(), error=repr(exc)[:300])
