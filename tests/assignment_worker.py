"""One dispatcher's assignment loop in its own OS process, for tests/test_assignment_race.py.

    python -m tests.assignment_worker DATABASE_URL CONFIG_DIR NAME

Connects, prints "ready", waits for a line on stdin (so two workers start together), then
offers waiting conversations until none can be placed, and prints what it did as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from router.services.assignment.offers import Assigner
from router.services.sla import SystemClock
from router.store.conversations import ConversationStore
from tests.routing_helpers import rules_from


async def main(url: str, config_dir: str, name: str) -> None:
    rules = rules_from(config_dir)
    async with ConversationStore(url) as store:
        await store.ping()
        assigner = Assigner(store, rules, SystemClock(), worker=name)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started, assigned, idle_rounds = time.perf_counter(), [], 0
        while idle_rounds < 3:
            done = await assigner.assign_waiting(limit=5)
            assigned += [d.conversation_id for d in done]
            idle_rounds = 0 if done else idle_rounds + 1
        print(
            json.dumps(
                {"worker": name, "assigned": assigned, "seconds": time.perf_counter() - started}
            ),
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
