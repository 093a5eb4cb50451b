"""What the tests of a `ConsumerLoop` that takes its records in chunks share
(router/bus/consumer.py)."""

from __future__ import annotations

import asyncio

from aiokafka import ConsumerRecord

from router.bus.consumer import ConsumerLoop


async def handled_alone(record: ConsumerRecord) -> None:
    """The one-record handler of a loop whose test expects every record in a chunk."""
    raise AssertionError(f"handled alone: {record.value!r}")


async def run_until(loop: ConsumerLoop, done: asyncio.Event, timeout: float = 60) -> None:
    """Start the loop, wait for `done` (a TimeoutError after `timeout` seconds), stop it."""
    await loop.start()
    try:
        async with asyncio.timeout(timeout):
            await done.wait()
    finally:
        await loop.stop()
