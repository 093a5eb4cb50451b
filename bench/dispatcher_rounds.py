"""A dispatcher chunk's CPU by its size, and its rounds' time on a full store, in this process.

The dispatcher as its worker runs it (SQLite called on the loop, `sqlite_on_loop`), on the
embedded broker: chunks of classified SMS messages (new customers each) go straight to
`handle_batch`, each size `--chunks` times, and the CPU time of this process (the Kafka client's
publishes included, the broker's own not) is divided by the chunks. Then the same customers
write again, as many chunks of the same size: later messages, into open conversations. Then the
store is filled until `--waiting` conversations wait, and each of the dispatcher's rounds runs
five times: the timers' tick (every second), the queue gauges and the relay (every five). On the
worker's event loop, a round's time is a stall of every chunk behind it.

    .venv/bin/python bench/dispatcher_rounds.py [--sizes 1,20,200] [--chunks 100] [--waiting 24000]
        [--database-url postgresql+asyncpg://...]

The wall time a chunk beside its CPU: on PostgreSQL, the difference is mostly the server's
round trips and its own work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import ConsumerRecord

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from options import number_list, whole  # noqa: E402

from router.bus.embedded import EmbeddedBroker  # noqa: E402
from router.bus.kafka import KafkaBus  # noqa: E402
from router.cli.main import database_url_argument  # noqa: E402
from router.core.envelope import Channel, Envelope, Sender  # noqa: E402
from router.core.settings import Settings  # noqa: E402
from router.observability.logs import configure_logging  # noqa: E402
from router.policy.rules import Rules  # noqa: E402
from router.services.dispatcher import DispatcherService  # noqa: E402
from router.store.conversations import ConversationStore  # noqa: E402
from router.store.migrate import upgrade  # noqa: E402

TEXTS = (
    "my transfer failed and the money is gone from my balance",
    "how can I change the password of my wallet",
    "my phone was stolen yesterday, please help",
    "what does a withdrawal to my bank cost",
    "the verification code never comes by sms",
)


LATER = "any news on this? still waiting"


class Messages:
    """Classified SMS records, one new customer each; or the next message of a customer who
    wrote before (their conversation open)."""

    def __init__(self, rules: Rules, topic: str):
        self.rules, self.topic, self.sent, self.followed = rules, topic, 0, 0

    def chunk(self, size: int) -> list[ConsumerRecord]:
        records = []
        for _ in range(size):
            self.sent += 1
            records.append(self._record(self.sent, TEXTS[self.sent % len(TEXTS)], "new"))
        return records

    def later(self, size: int) -> list[ConsumerRecord]:
        """The next message of `size` customers who wrote before, in the order they wrote."""
        records = []
        for _ in range(size):
            self.followed += 1
            assert self.followed <= self.sent, "only a customer who wrote before writes again"
            records.append(self._record(self.followed, LATER, "later"))
        return records

    def _record(self, customer: int, text: str, kind: str) -> ConsumerRecord:
        phone = f"+1555{customer:07d}"
        envelope = Envelope.new(
            channel=Channel.SMS,
            channel_message_id=f"bench-{kind}-{customer}",
            conversation_key=f"sms:{phone}",
            sender=Sender(address=phone),
            text=text,
        ).model_copy(update={"classification": self.rules.classify(text)})
        value = envelope.to_bytes()
        return ConsumerRecord(self.topic, 0, customer, 0, 0, None, value, None, 0, len(value), ())


async def cpu_ms(work: Callable[[], Awaitable[object]]) -> float:
    started = time.process_time()
    await work()
    return (time.process_time() - started) * 1000


async def timed(
    dispatcher: DispatcherService, batches: list[list[ConsumerRecord]]
) -> tuple[float, float]:
    """The CPU and the wall time of handling `batches`, in ms."""

    async def handle_all() -> None:
        for batch in batches:
            await dispatcher.handle_batch(batch)

    started = time.perf_counter()
    spent = await cpu_ms(handle_all)
    return spent, (time.perf_counter() - started) * 1000


async def run(sizes: list[int], chunks: int, waiting: int, database_url: str | None) -> None:
    directory = tempfile.mkdtemp(prefix="dispatcher-rounds-")
    url = database_url or f"sqlite+aiosqlite:///{directory}/store.db"
    await upgrade(url)
    rules = Rules(ROOT / "config")
    async with (
        EmbeddedBroker() as broker,
        KafkaBus(Settings(database_url=url), broker.bootstrap_servers, embedded=True) as bus,
        ConversationStore(url, sqlite_on_loop=True) as store,
    ):
        dispatcher = DispatcherService(bus, store, rules)
        messages = Messages(rules, bus.topics.classified)
        print(
            "chunk size   CPU a chunk   CPU a message   wall a chunk"
            "   later messages: CPU a message   wall a chunk"
        )
        for size in sizes:
            for _ in range(5):  # warm: statements prepared, pools filled
                await dispatcher.handle_batch(messages.chunk(size))
                await dispatcher.handle_batch(messages.later(size))
            first = [messages.chunk(size) for _ in range(chunks)]
            spent, wall = await timed(dispatcher, first)
            # The same customers write again: their conversations are open, each in its case.
            spent_later, wall_later = await timed(
                dispatcher, [messages.later(size) for _ in range(chunks)]
            )
            print(
                f"{size:10d} {spent / chunks:10.2f} ms {spent / chunks / size:11.3f} ms"
                f" {wall / chunks:11.2f} ms {spent_later / chunks / size:27.3f} ms"
                f" {wall_later / chunks:11.2f} ms"
            )
        while messages.sent < waiting:
            await dispatcher.handle_batch(messages.chunk(200))
        summaries = await store.queue_summaries()
        print(f"rounds with {sum(q['waiting'] for q in summaries.values()):,} waiting (wall ms):")
        rounds = {
            "timers' tick": dispatcher.tick,
            "queue gauges": dispatcher.measure_queues,
            "relay": lambda: dispatcher.relay.flush(older_than=dispatcher.relay_interval),
        }
        for name, work in rounds.items():
            times = []
            for _ in range(5):
                started = time.perf_counter()
                await work()
                times.append((time.perf_counter() - started) * 1000)
            print(f"  {name:14s} " + " ".join(f"{t:6.1f}" for t in times))


def sizes_list(text: str) -> list[int]:
    return number_list(text, 1, 1000, "chunk sizes", "1,20,200")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=sizes_list, default=[1, 20, 200])
    parser.add_argument("--chunks", type=whole(0, 10_000_000), default=100)
    parser.add_argument("--waiting", type=whole(0, 10_000_000), default=24_000)
    parser.add_argument(
        "--database-url",
        type=database_url_argument,
        help="an empty database, e.g. PostgreSQL (default: SQLite, temporary)",
    )
    args = parser.parse_args()
    # Its log lines at info, as the worker writes them (to nowhere here): part of a chunk's cost.
    configure_logging("json", "info", open(os.devnull, "w"), once=True)  # noqa: SIM115
    asyncio.run(run(args.sizes, max(args.chunks, 1), args.waiting, args.database_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
