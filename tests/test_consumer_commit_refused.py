"""A batch whose commit the group refused (router/bus/consumer.py, `ConsumerLoop._run`).

When the embedded broker is started again (a crash, or the recycler bounding its memory) while a
batch is in hand, the group that batch was fetched in is gone, and its commit is refused
(CommitFailedError: the member is unknown). The batch's effects are stored already; what the
broker lost is published again by its owners (the intake journal, the store's replies) and the
idempotent handlers absorb what comes twice. Nothing there needs a pause: the next fetch waits
for the group to be joined again. The loop used to pause after it as after a lost broker, a
second in which it fetched nothing even once the group was joined again (docs/performance.md,
"Twenty-first round"). A rebalance refuses a commit the same way, and is handled the same way.

On the real Tansu, started again by the test inside the batch. The pause after a failed batch is
an hour here: a loop that took it after the refused commit would not read the records published
after the restart within the test's minute."""

from __future__ import annotations

import asyncio

from router.bus.consumer import ConsumerLoop
from router.bus.embedded import EmbeddedBroker
from router.bus.kafka import KafkaBus
from router.core.settings import Settings
from tests.chunk_loops import handled_alone, run_until


async def test_a_commit_refused_after_the_broker_came_back_is_followed_by_the_next_fetch_at_once():
    settings = Settings(partitions=1)
    topic = settings.topics.classified
    async with EmbeddedBroker(topics=[topic], partitions=1) as tansu:
        async with KafkaBus(settings, tansu.bootstrap_servers, embedded=True) as bus:
            handled: list[list[bytes]] = []
            done = asyncio.Event()

            async def handle_chunk(records) -> None:
                handled.append([r.value for r in records])
                if len(handled) == 1:
                    await tansu.recycle()  # inside the batch: its group is gone when it commits
                    await bus.publish(topic, b"after", key=b"k")  # what the journal would send
                elif b"after" in handled[-1]:
                    done.set()

            await bus.publish(topic, b"before", key=b"k")
            loop = ConsumerLoop(
                bus, [topic], "refused", handled_alone, "test", batch_handler=handle_chunk
            )
            loop.failure_pause = 3600.0
            await run_until(loop, done)
    assert handled[0] == [b"before"]
    assert handled[-1] == [b"after"]
    assert loop.commits_refused >= 1
