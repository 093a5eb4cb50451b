"""`supportrouter` command line. The only place that turns errors into exit codes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from router.core.settings import Settings
from router.observability.logs import configure_logging
from router.operator_files.config import ConfigError, load_config

if TYPE_CHECKING:
    from router.app import Router


def _run(args: argparse.Namespace) -> int:
    from router.app import Router

    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)

    async def main() -> None:
        router = Router(settings, role=args.role)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, router.reload)
        await router.start()
        try:
            _banner(router)
            await stop.wait()
            print("\nstopping: intake closed, flushing and committing ...", flush=True)
        finally:
            await router.stop()
        print("stopped.", flush=True)

    try:
        asyncio.run(main())
    except RuntimeError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _banner(router: Router) -> None:
    s = router.settings
    lines = [f"supportrouter is running ({router.role}); Ctrl-C stops it."]
    if router.broker:
        lines.append(f"  embedded Kafka broker   {router.broker.bootstrap_servers}")
    else:
        lines.append(f"  Kafka                   {s.kafka_bootstrap_servers}")
    if router.store:
        lines.append(f"  store                   {s.database_url}")
    if router.gateway:
        base = f"http://localhost:{router.gateway.port}"
        lines += [
            f"  customer chat demo      {base}/chat/",
            f"  agents' console         {base}/console/",
            f"  agents' API             {base}/api/  (POST /api/login)",
            f"  health                  {base}/healthz  {base}/readyz  {base}/metrics",
        ]
    if router.admin_password:
        lines.append(
            f"  supervisor login        admin / {router.admin_password}   (generated now; "
            "set SUPPORTROUTER_ADMIN_PASSWORD to choose it)"
        )
    elif router.settings.admin_password is not None:
        lines.append(
            "  supervisor login        admin / the password in SUPPORTROUTER_ADMIN_PASSWORD"
        )
    elif router.store:
        lines.append(
            "  supervisor login        admin / the password printed at its first start "
            "(`supportrouter agent password admin` resets it)"
        )
    print("\n".join(lines), flush=True)


def _channel_config_problems(directory: Path) -> list:
    """Channels with operators' files of their own (voice.yaml) expose check_config(dir)."""
    import importlib

    from channels import REGISTRY

    problems = []
    for module_name in dict.fromkeys(target.partition(":")[0] for target in REGISTRY.values()):
        check = getattr(importlib.import_module(module_name), "check_config", None)
        if check is None:
            continue
        try:
            check(directory)
        except ConfigError as exc:
            problems += exc.problems
    return problems


def _config_check(args: argparse.Namespace) -> int:
    directory = Path(args.dir or Settings().config_dir)
    problems, config = [], None
    try:
        config = load_config(directory)
    except ConfigError as exc:
        problems += exc.problems
    problems += _channel_config_problems(directory)
    if problems:
        print(ConfigError(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s) in {directory}", file=sys.stderr)
        return 1
    assert config is not None  # no problem: load_config returned it
    print(
        f"{directory}: OK (rules version {config.version}; {len(config.routing.queues)} queues, "
        f"{len(config.classifier.categories)} categories, {len(config.agents.agents)} agents)"
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from router.classify.redact import redact
    from router.classify.textprep import prepare
    from router.policy.rules import Rules

    rules = Rules(Path(args.config or Settings().config_dir))
    text = sys.stdin.read() if args.text == "-" else args.text
    redacted = redact(text)
    subject = redact(args.subject).text if args.subject else None
    c = rules.classify(redacted.text, channel=args.channel, subject=subject)
    routed = _simulated_route(rules, args, redacted, c)
    result = {
        "channel": args.channel,
        "text": redacted.text,
        "classified_text": prepare(redacted.text, subject),
        "redactions": redacted.kinds,
        "lane": rules.lane(redacted.text, subject).value,
        "category": c.category,
        "urgency": c.urgency.value,
        "confidence": c.confidence,
        "language": c.language,
        "rules_fired": c.rules,
        "entities": c.entities,
        "rules_version": c.rules_version,
        **routed,
    }
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def _simulated_route(rules, args: argparse.Namespace, redacted, classification) -> dict:
    """The routing part of simulate: filter matched, queue, priority, and the reply."""
    from router.classify.redact import redact
    from router.cli.replay import offline_decision
    from router.core.envelope import Channel, Envelope, Sender

    envelope = Envelope.new(
        channel=Channel(args.channel),
        channel_message_id="simulate",
        conversation_key="simulate",
        sender=Sender(address="simulate"),
        text=redacted.text,
        redactions=redacted.kinds,
        subject=redact(args.subject).text if args.subject else None,
        classification=classification,
    )
    customer = {"vip": True} if args.vip else {}
    decision = offline_decision(rules, envelope, language=args.language, customer=customer)
    return {
        "filter_matched": decision["filter"],
        "queue": decision["queue"],
        "priority": decision["priority"],
        "ladder_step": decision["step"],
        "next_step_after_seconds": decision["next_step_after_seconds"],
        "explanation": decision["explanation"],
        "routing_rules_version": decision["rules_version"],
        "reply": decision["reply"],
    }


def _eval(args: argparse.Namespace) -> int:
    from router.cli.evaluate import EvalFileError, evaluate, format_json, format_text, read_rows
    from router.policy.rules import Rules

    try:
        rows = read_rows(args.file)
    except EvalFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    rules = Rules(Path(args.config or Settings().config_dir))
    report = evaluate(rules, rows)
    print(format_json(report) if args.json else format_text(report))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from router.cli.replay import format_report, parse_since, replay
    from router.policy.rules import Rules
    from router.store.conversations import ConversationStore

    settings = Settings()
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        in_force = Rules(Path(args.current or settings.config_dir))
    except ConfigError as exc:
        print(f"the rules in force do not load:\n{exc}", file=sys.stderr)
        return 2
    try:
        candidate = Rules(Path(args.config))
    except ConfigError as exc:
        print(f"candidate refused:\n{exc}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {args.config}", file=sys.stderr)
        return 1

    async def main():
        async with ConversationStore(args.database_url or settings.database_url) as store:
            return await replay(store, in_force, candidate, since, args.limit)

    report = asyncio.run(main())
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_report(report, args.show))
    return 0


def _tail(args: argparse.Namespace) -> int:
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


def _dlq(args: argparse.Namespace) -> int:
    from router.cli.dlq import run

    return run(args)


def _agent_password(args: argparse.Namespace) -> int:
    from router.store.conversations import ConversationStore

    settings = Settings()
    config = load_config(settings.config_dir)
    if config.agent(args.username) is None:
        print(f"{args.username!r} is not in {settings.config_dir}/agents.yaml", file=sys.stderr)
        return 1
    password = (
        sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("new password: ")
    )
    if len(password) < 8:
        print("a password needs at least 8 characters", file=sys.stderr)
        return 1

    async def main() -> None:
        async with ConversationStore(settings.database_url) as store:
            await store.set_password(args.username, password)

    asyncio.run(main())
    print(f"password set for {args.username}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supportrouter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every service (default) or one")
    run.add_argument(
        "role",
        nargs="?",
        default="all",
        choices=["all", "gateway", "classifier", "dispatcher", "sender"],
    )
    run.set_defaults(func=_run)

    config = sub.add_parser("config", help="operators' files")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="report every problem with file, line and reason")
    check.add_argument("dir", nargs="?")
    check.set_defaults(func=_config_check)

    simulate = sub.add_parser("simulate", help="what would happen to a message; nothing is sent")
    simulate.add_argument(
        "text", help="the message; - reads it from standard input (an email with its quotes)"
    )
    simulate.add_argument("--subject", help="an email's subject line")
    simulate.add_argument(
        "--channel",
        default="chat",
        choices=["sms", "whatsapp", "voice", "email", "chat", "telegram"],
    )
    simulate.add_argument(
        "--config", help="config directory (default: SUPPORTROUTER_CONFIG_DIR or config/)"
    )
    simulate.add_argument(
        "--language", choices=["zh", "en"], help="the customer's language (default: as detected)"
    )
    simulate.add_argument(
        "--vip", action="store_true", help="as if the customer were a VIP (customer.vip)"
    )
    simulate.set_defaults(func=_simulate)

    evaluate = sub.add_parser("eval", help="score the classifier on a CSV of labelled messages")
    evaluate.add_argument(
        "file", help="CSV with columns text,category and optionally urgency,channel"
    )
    evaluate.add_argument(
        "--json", action="store_true", help="one JSON object instead of the tables"
    )
    evaluate.add_argument(
        "--config", help="config directory (default: SUPPORTROUTER_CONFIG_DIR or config/)"
    )
    evaluate.set_defaults(func=_eval)

    replay = sub.add_parser(
        "replay", help="recorded conversations under candidate rules: what would change"
    )
    replay.add_argument("--config", required=True, help="the candidate config directory")
    replay.add_argument(
        "--current", help="the rules in force (default: SUPPORTROUTER_CONFIG_DIR or config/)"
    )
    replay.add_argument(
        "--since", help="only conversations since: 7d, 12h, 30m or a date (default: all)"
    )
    replay.add_argument("--database-url", help="default: SUPPORTROUTER_DATABASE_URL")
    replay.add_argument(
        "--limit", type=int, default=100_000, help="at most this many conversations"
    )
    replay.add_argument("--show", type=int, default=20, help="list this many changed conversations")
    replay.add_argument("--json", action="store_true", help="the whole report as JSON")
    replay.set_defaults(func=_replay)

    tail = sub.add_parser(
        "tail", help="print a topic's records as JSON lines (joins no consumer group)"
    )
    tail.add_argument("topic")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--max", type=int, help="stop after this many records")
    tail.set_defaults(func=_tail)

    dlq = sub.add_parser(
        "dlq",
        help="dead letters: list, show, replay (needs SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS)",
    )
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser(
        "list", help="one line per entry: id, when, stage, topic, key, error"
    )
    dlq_list.add_argument("--stage", help="only entries of this stage, e.g. classify-standard")
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per line")
    dlq_list.set_defaults(func=_dlq)
    dlq_show = dlq_sub.add_parser("show", help="one entry, whole, as JSON")
    dlq_show.add_argument("id", help="the entry's id (<partition>-<offset>, as `dlq list` prints)")
    dlq_show.set_defaults(func=_dlq)
    replay_help = (
        "publish entries' original value and key back to their original topic. Safe to repeat: "
        "the consumers are idempotent by message_id, so a record already handled changes "
        "nothing. An entry stays in the DLQ; one that fails again is dead-lettered anew. An entry "
        "that did not parse is refused: it would only fail again."
    )
    dlq_replay = dlq_sub.add_parser("replay", help=replay_help, description=replay_help)
    dlq_replay.add_argument("ids", nargs="*", metavar="ID", help="entries to replay")
    dlq_replay.add_argument("--all", action="store_true", help="every entry that can be replayed")
    dlq_replay.add_argument("--stage", help="with --all: only entries of this stage")
    dlq_replay.set_defaults(func=_dlq)

    agent = sub.add_parser("agent", help="agents' credentials")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True)
    password = agent_sub.add_parser(
        "password", help="set an agent's password (stored as a scrypt hash)"
    )
    password.add_argument("username")
    password.add_argument(
        "--stdin", action="store_true", help="read the password from standard input"
    )
    password.set_defaults(func=_agent_password)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(BrokenPipeError):
        try:
            return args.func(args)
        except ConfigError as exc:
            # Every command that loads the rules refuses a bad file the same way.
            print(f"config refused:\n{exc}", file=sys.stderr)
            return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
