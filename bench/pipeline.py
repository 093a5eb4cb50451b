"""End-to-end pipeline benchmark: a backlog of standard messages, then fraud reports behind it.

Starts the whole router in this process on the embedded default (its own broker, a SQLite file in
a temporary directory), produces BACKLOG standard-lane envelopes straight onto Kafka, then sends
URGENT fraud reports through the gateway's intake, and reports:

- how long each fraud report took from intake to its place at the head of the fraud queue, and
  how many backlog messages were still unrouted at that moment (the lanes at work);
- how long the whole backlog took to drain, and the end-to-end rate in messages per second;
- how long until every acknowledgement had also been delivered (here: kept in the sandbox
  outbox by the sender, the stage after the dispatcher).

    .venv/bin/python bench/pipeline.py --backlog 5000 --urgent 5 [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from options import whole  # noqa: E402

from router.app import Router  # noqa: E402
from router.cli.main import database_url_argument  # noqa: E402
from router.core.envelope import Channel, Envelope, Sender  # noqa: E402
from router.core.settings import Settings  # noqa: E402
from router.observability.logs import configure_logging  # noqa: E402
from router.services.intake import Intake  # noqa: E402

STANDARD_TEXTS = [
    "what is the fee for a withdrawal to my bank card",
    "how do I raise my daily transfer limit",
    "提现手续费是多少",
    "can I top up with a credit card",
    "我想修改绑定的手机号",
]
FRAUD_TEXT = "someone made a payment from my wallet that I did not make"


async def _count_stored(router: Router) -> int:
    import sqlalchemy as sa

    from router.store.schema import messages

    async with router.store.engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(sa.func.count()).select_from(messages).where(messages.c.direction == "in")
            )
        ).scalar_one()


async def _count_delivered(router: Router) -> int:
    import sqlalchemy as sa

    from router.store.schema import outbox

    async with router.store.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()


async def run(backlog: int, urgent: int, database_url: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=database_url or f"sqlite+aiosqlite:///{tmp}/bench.db",
            http_host="127.0.0.1",
            http_port=0,
            config_dir=ROOT / "config",
            admin_password="bench-password",
            log_level="warning",
        )
        async with Router(settings) as router:
            bus = router.bus
            envelopes = [
                Envelope.new(
                    channel=Channel.SMS,
                    channel_message_id=f"bench-{i}",
                    conversation_key=f"sms:+1555{i:07d}",
                    sender=Sender(address=f"+1555{i:07d}"),
                    text=STANDARD_TEXTS[i % len(STANDARD_TEXTS)],
                )
                for i in range(backlog)
            ]
            started = time.perf_counter()
            await bus.publish_many(
                bus.topics.inbound_standard, ((e.kafka_key, e.to_bytes()) for e in envelopes)
            )
            produced = time.perf_counter() - started

            intake = Intake(bus, router.rules)
            results = []
            for n in range(urgent):
                env = Envelope.new(
                    channel=Channel.CHAT,
                    channel_message_id=f"fraud-{n}",
                    conversation_key=f"chat:fraud-{n}",
                    sender=Sender(address=f"chat:fraud-{n}"),
                    text=FRAUD_TEXT,
                )
                sent = time.perf_counter()
                await intake.publish(env)
                while True:
                    head = await router.store.queue_conversations("fraud")
                    if any(c["conversation_key"] == env.conversation_key for c in head):
                        break
                    await asyncio.sleep(0.005)
                routed_after = time.perf_counter() - sent
                behind = backlog + n - (await _count_stored(router) - n - 1)
                results.append({"seconds": routed_after, "backlog_unrouted": max(behind, 0)})

            while await _count_stored(router) < backlog + urgent:
                await asyncio.sleep(0.05)
            drained = time.perf_counter() - started
            # Chat acknowledgements go to the customer's socket, not the sandbox outbox.
            while await _count_delivered(router) < backlog:
                await asyncio.sleep(0.05)
            delivered = time.perf_counter() - started
    latencies = [r["seconds"] for r in results]
    return {
        "backlog": backlog,
        "urgent": urgent,
        "produce_backlog_seconds": round(produced, 3),
        "urgent_to_queue_seconds": {
            "median": round(statistics.median(latencies), 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
        },
        "backlog_unrouted_when_urgent_routed": [r["backlog_unrouted"] for r in results],
        "drain_seconds": round(drained, 2),
        "end_to_end_messages_per_second": round((backlog + urgent) / drained, 1),
        "acknowledgements_delivered_seconds": round(delivered, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=whole(1, 10_000_000), default=5000)
    parser.add_argument("--urgent", type=whole(1, 10_000), default=5)
    parser.add_argument("--database-url", type=database_url_argument)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging("json", "warning", stream=open("/dev/null", "w"))  # noqa: SIM115
    result = asyncio.run(run(args.backlog, args.urgent, args.database_url))
    if args.json:
        print(json.dumps(result))
        return
    u = result["urgent_to_queue_seconds"]
    print(
        f"backlog {result['backlog']} standard messages, produced in {result['produce_backlog_seconds']} s"
    )
    print(
        f"fraud report → head of the fraud queue: median {u['median']} s, max {u['max']} s "
        f"(backlog still unrouted at those moments: {result['backlog_unrouted_when_urgent_routed']})"
    )
    print(
        f"whole backlog drained in {result['drain_seconds']} s: "
        f"{result['end_to_end_messages_per_second']} messages/s end to end"
    )
    print(
        f"every acknowledgement delivered (sandbox outbox) after {result['acknowledgements_delivered_seconds']} s"
    )


if __name__ == "__main__":
    main()
