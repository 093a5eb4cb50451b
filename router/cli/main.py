"""`supportrouter` command line. The only place that turns errors into exit codes."""

# The parser and the dispatch; each command is a module of this package (run, config, simulate,
# evaluate, replay, tail, dlq, db, agent), imported only when it runs, so that `tail` does not load
# the classifier nor `config check` the Kafka client.

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable

from pydantic import ValidationError

from router.operator_files.config import ConfigError


def _command(module: str, function: str = "command") -> Callable[[argparse.Namespace], int]:
    """`router.cli.<module>.<function>`, imported when the command runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"router.cli.{module}"), function)(args)

    return run


def database_url_argument(value: str) -> str:
    """--database-url as the store opens it (postgresql:// means asyncpg), or argparse's error."""
    from router.core.settings import store_url

    try:
        return store_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """argparse's `type` for an option's one whole number from `low` to `high`: one out of range
    is refused with the option's name before the command starts."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low:,} to {high:,}, not {text!r}"
            )
        return number

    return parse


def _settings_refused(exc: ValidationError) -> str:
    """Each setting the environment got wrong: its variable, what is wrong, the value given."""
    from router.core.settings_reference import refused

    return "\n".join(["settings refused:", *(f"  {refused(e)}" for e in exc.errors())])


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
    # The supervisor's own: its gateway worker answers /readyz with 503 until SIGUSR2 says the
    # other workers are up (router/services/workers.py).
    run.add_argument("--held", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(func=_command("run"))

    config = sub.add_parser("config", help="operators' files")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="report every problem with file, line and reason")
    check.add_argument("dir", nargs="?")
    check.set_defaults(func=_command("config", "check"))
    reference = config_sub.add_parser(
        "reference", help="every environment variable, as the README's Markdown table"
    )
    reference.add_argument("--write", metavar="FILE", help="replace the table in FILE (README.md)")
    reference.set_defaults(func=_command("config", "reference"))

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
    simulate.set_defaults(func=_command("simulate"))

    evaluate = sub.add_parser("eval", help="score the classifier on CSVs of labelled messages")
    evaluate.add_argument(
        "files",
        nargs="+",
        metavar="file",
        help="CSV with columns text,category and optionally urgency,channel,language,id",
    )
    evaluate.add_argument(
        "--phenomena", help="CSV of id,phenomena (space-separated tags): a breakdown by tag"
    )
    evaluate.add_argument(
        "--progress", action="store_true", help="a progress bar on stderr even off a terminal"
    )
    evaluate.add_argument(
        "--json", action="store_true", help="one JSON object instead of the tables"
    )
    evaluate.add_argument(
        "--config", help="config directory (default: SUPPORTROUTER_CONFIG_DIR or config/)"
    )
    evaluate.set_defaults(func=_command("evaluate"))

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
    replay.add_argument(
        "--database-url", type=database_url_argument, help="default: SUPPORTROUTER_DATABASE_URL"
    )
    replay.add_argument(
        "--limit",
        type=whole_number(1, 10_000_000),
        default=100_000,
        help="at most this many conversations",
    )
    replay.add_argument(
        "--show",
        type=whole_number(0, 1_000_000),
        default=20,
        help="list this many changed conversations",
    )
    replay.add_argument("--json", action="store_true", help="the whole report as JSON")
    replay.set_defaults(func=_command("replay"))

    tail = sub.add_parser(
        "tail", help="print a topic's records as JSON lines (joins no consumer group)"
    )
    tail.add_argument("topic")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument(
        "--max", type=whole_number(1, 1_000_000_000), help="stop after this many records"
    )
    tail.set_defaults(func=_command("tail"))

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
    dlq_list.set_defaults(func=_command("dlq"))
    dlq_show = dlq_sub.add_parser("show", help="one entry, whole, as JSON")
    dlq_show.add_argument("id", help="the entry's id (<partition>-<offset>, as `dlq list` prints)")
    dlq_show.set_defaults(func=_command("dlq"))
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
    dlq_replay.set_defaults(func=_command("dlq"))

    _add_db(sub)

    bench = sub.add_parser(  # every option, --help too, is bench/throughput.py's own
        "bench",
        help="the router under a spike, from the webhook (bench/throughput.py)",
        prefix_chars="+",
        add_help=False,
    )
    bench.add_argument("options", nargs=argparse.REMAINDER, help="bench/throughput.py's options")
    bench.set_defaults(func=_command("bench"))

    agent = sub.add_parser("agent", help="agents' credentials")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True)
    password = agent_sub.add_parser(
        "password", help="set an agent's password (stored as a scrypt hash)"
    )
    password.add_argument("username")
    password.add_argument(
        "--stdin", action="store_true", help="read the password from standard input"
    )
    password.set_defaults(func=_command("agent", "password"))
    return parser


def _add_db(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="the database schema: upgrade it, see its revision")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    url_help = "default: SUPPORTROUTER_DATABASE_URL"
    upgrade = db_sub.add_parser(
        "upgrade",
        help="bring the schema to the latest revision (or REV); safe to repeat or run at once",
    )
    upgrade.add_argument("revision", nargs="?", default="head", metavar="REV")
    upgrade.add_argument("--database-url", type=database_url_argument, help=url_help)
    upgrade.set_defaults(func=_command("db", "upgrade"))
    current = db_sub.add_parser("current", help="the database's revision and the latest one")
    current.add_argument("--database-url", type=database_url_argument, help=url_help)
    current.add_argument(
        "--check", action="store_true", help="exit 3 unless at the latest revision"
    )
    current.set_defaults(func=_command("db", "current"))
    history = db_sub.add_parser("history", help="every revision this version knows, newest first")
    history.set_defaults(func=_command("db", "history"))
    revision = db_sub.add_parser(
        "revision",
        help="write the next revision from what router/store/schema.py changed (a source checkout)",
    )
    revision.add_argument("-m", "--message", required=True, help="what the revision does")
    revision.add_argument(
        "--empty", action="store_true", help="a blank revision to fill by hand (no autogenerate)"
    )
    revision.set_defaults(func=_command("db", "revision"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(BrokenPipeError):
        try:
            return args.func(args)
        except ConfigError as exc:
            # Every command that loads the rules refuses a bad file the same way.
            print(f"config refused:\n{exc}", file=sys.stderr)
            return 2
        except ValidationError as exc:
            if exc.title != "Settings":
                raise
            print(_settings_refused(exc), file=sys.stderr)
            return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
