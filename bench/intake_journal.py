"""What the intake journal costs: accepted messages per second through the gateway's intake
(redact, lane, journal, produce acks=all) on the embedded broker, with and without the journal,
and the journal's own write rate, in the same run.

    .venv/bin/python bench/intake_journal.py --messages 20000 --concurrency 64 [--json]

Rows: the journal alone (appends awaited by `concurrency` callers at once; synchronous FULL and
NORMAL), intake without a journal (the ceiling: what the broker's acknowledgement allows), and
intake with the journal (FULL, the default; and NORMAL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from options import whole  # noqa: E402

from router.bus.embedded import EmbeddedBroker  # noqa: E402
from router.bus.kafka import KafkaBus  # noqa: E402
from router.core.envelope import Channel, Envelope, Sender  # noqa: E402
from router.core.settings import Settings  # noqa: E402
from router.observability.logs import configure_logging  # noqa: E402
from router.policy.rules import Rules  # noqa: E402
from router.services.intake import Intake  # noqa: E402
from router.store.journal import IntakeJournal  # noqa: E402


def envelopes(count: int, tag: str) -> list[Envelope]:
    return [
        Envelope.new(
            channel=Channel.SMS,
            channel_message_id=f"{tag}-{n}",
            conversation_key=f"sms:+1555{n:07d}",
            sender=Sender(address=f"+1555{n:07d}"),
            text=f"my transfer number {n} failed and the money has not arrived",
        )
        for n in range(count)
    ]


async def _rate(count: int, concurrency: int, one) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def bounded(n: int) -> None:
        async with slots:
            await one(n)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(n) for n in range(count)))
    return count / (time.perf_counter() - started)


async def journal_alone(workdir: Path, count: int, concurrency: int, sync: str) -> dict:
    async with IntakeJournal(workdir / f"alone-{sync}.journal", synchronous=sync) as journal:
        rate = await _rate(
            count, concurrency, lambda n: journal.append(f"m{n}", "t", None, b"x" * 400)
        )
        return {"rate": rate, "per_commit": journal.appended / max(journal.commits, 1)}


async def through_intake(
    bus: KafkaBus, rules: Rules, workdir: Path, count: int, concurrency: int, sync: str | None
) -> dict:
    batch = envelopes(count, f"{sync}-{time.monotonic_ns()}")
    if sync is None:
        intake = Intake(bus, rules)
        return {"rate": await _rate(count, concurrency, lambda n: intake.publish(batch[n]))}
    async with IntakeJournal(workdir / f"intake-{sync}.journal", synchronous=sync) as journal:
        intake = Intake(bus, rules, journal)
        rate = await _rate(count, concurrency, lambda n: intake.publish(batch[n]))
        return {"rate": rate, "per_commit": journal.appended / max(journal.commits, 1)}


async def main(args: argparse.Namespace) -> dict:
    configure_logging("json", "warning")
    rules = Rules(ROOT / "config")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for sync in ("full", "normal"):
            results[f"journal alone ({sync})"] = await journal_alone(
                workdir, args.messages, args.concurrency, sync
            )
        async with EmbeddedBroker() as broker:
            settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers)
            async with KafkaBus(settings, broker.bootstrap_servers, embedded=True) as bus:
                await bus.ensure_topics()
                await through_intake(bus, rules, workdir, 500, args.concurrency, None)  # warm up
                for sync in (None, "full", "normal"):
                    name = "intake, no journal (ceiling)" if sync is None else f"intake + {sync}"
                    results[name] = await through_intake(
                        bus, rules, workdir, args.messages, args.concurrency, sync
                    )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=whole(1, 10_000_000), default=20000)
    parser.add_argument("--concurrency", type=whole(1, 10_000), default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(main(args))
    if args.json:
        print(json.dumps(results))
    else:
        for name, row in results.items():
            grouped = f", {row['per_commit']:.1f} per commit" if "per_commit" in row else ""
            print(f"{name:32} {row['rate']:8.0f} messages/s{grouped}")
