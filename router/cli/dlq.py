"""`supportrouter dlq list|show|replay`: see the dead letters and send them back.

Like `tail`, it talks to a running cluster (SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS) and joins no
consumer group, so looking never takes anything from the router.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiokafka.errors import KafkaError

from router.bus.dead_letters import DeadLetter, DeadLetterError, DeadLetters
from router.bus.kafka import KafkaBus
from router.core.settings import Settings
from router.observability.logs import configure_logging

ERROR_CHARS = 120


def command(args: argparse.Namespace) -> int:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)  # on stderr: stdout is the data
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        print(
            "set SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS to the broker `supportrouter run` printed",
            file=sys.stderr,
        )
        return 2
    if args.dlq_command == "replay":
        problem = _replay_args_problem(args)
        if problem:
            print(problem, file=sys.stderr)
            return 2
    bus = KafkaBus(settings, bootstrap)
    try:
        return asyncio.run(_COMMANDS[args.dlq_command](bus, args))
    except (DeadLetterError, LookupError) as exc:  # LookupError: no DLQ topic on that cluster
        print(exc, file=sys.stderr)
        return 1
    except (KafkaError, TimeoutError) as exc:
        print(f"cannot read {bus.topics.dlq} on {bootstrap}: {exc!r}", file=sys.stderr)
        return 1


def _replay_args_problem(args: argparse.Namespace) -> str | None:
    if args.all and args.ids:
        return "give entry ids or --all, not both"
    if not args.all and not args.ids:
        return "give the ids of entries to replay (see `supportrouter dlq list`), or --all"
    if args.stage and not args.all:
        return "--stage goes with --all"
    return None


async def _list(bus: KafkaBus, args: argparse.Namespace) -> int:
    entries = await DeadLetters(bus).entries(args.stage)
    for e in entries:
        if args.json:
            print(json.dumps(e.as_dict(), ensure_ascii=False), flush=True)
        else:
            print(summary(e), flush=True)
    if not args.json:
        print(f"{len(entries)} dead letter(s) in {bus.topics.dlq}", file=sys.stderr)
    return 0


async def _show(bus: KafkaBus, args: argparse.Namespace) -> int:
    entry = await DeadLetters(bus).entry(args.id)
    print(json.dumps(entry.as_dict(), ensure_ascii=False, indent=2))
    return 0


async def _replay(bus: KafkaBus, args: argparse.Namespace) -> int:
    dead_letters = DeadLetters(bus)
    # Chosen (and refused) before the producer starts: a refusal needs no producer.
    result = await dead_letters.select(None if args.all else args.ids, stage=args.stage)
    if result.replayed:
        # start() also makes sure the router's topics exist, as they do wherever it has run.
        async with bus:
            await dead_letters.publish(result.replayed, by="cli")
    for e in result.replayed:
        print(f"replayed {e.id} to {e.topic} (key {e.key})")
    for e, why in result.skipped:
        print(f"skipped  {e.id}: {why}")
    print(f"{len(result.replayed)} replayed, {len(result.skipped)} skipped")
    return 0


def summary(e: DeadLetter) -> str:
    """id, when, stage, topic, key, error (on one line, its first 120 characters)."""
    error = " ".join(e.error.split())[:ERROR_CHARS]
    return "  ".join(
        [e.id, e.at or "-", e.stage or "-", e.topic or "-", e.key or "-", error or "-"]
    )


_COMMANDS = {"list": _list, "show": _show, "replay": _replay}
