"""`supportrouter tail TOPIC`: a topic's records as JSON lines, joining no consumer group."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from router.core.settings import Settings


def command(args: argparse.Namespace) -> int:
    from router.bus.fanout import TopicFanout
    from router.bus.kafka import KafkaBus

    settings = Settings()
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        print(
            "set SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS to the broker `supportrouter run` printed",
            file=sys.stderr,
        )
        return 2

    async def main() -> None:
        bus = KafkaBus(settings, bootstrap)
        remaining = args.max

        async def show(record) -> None:
            nonlocal remaining
            try:
                value = json.loads(record.value)
            except ValueError:
                value = record.value.decode(errors="replace")
            print(
                json.dumps(
                    {
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "key": record.key.decode(errors="replace") if record.key else None,
                        "value": value,
                    },
                    ensure_ascii=False,
                ),
                flush=True,
            )
            if remaining is not None:
                remaining -= 1
                if remaining <= 0:
                    done.set()

        done = asyncio.Event()
        fanout = TopicFanout(bus, args.topic, show, from_beginning=args.from_beginning)
        await fanout.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        try:
            await done.wait()
        finally:
            await fanout.stop()

    asyncio.run(main())
    return 0
