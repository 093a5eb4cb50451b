"""`python -m devenv up|down|status|run -- CMD|kafka`: the services beside the router.

- `run -- CMD...` (what `make test` does): install what is missing, start PostgreSQL and Kafka,
  run CMD with SUPPORTROUTER_TEST_POSTGRES and SUPPORTROUTER_TEST_KAFKA set, and stop both when
  CMD ends, fails or is interrupted; exit with CMD's status.
- `up` / `down`: the same services left running for `pytest` by hand, and stopped again
  (`var/devenv.json` tells the tests where they are).
- `kafka` (what `make kafka` does): a single-node Kafka in the foreground on 127.0.0.1:9092 (or
  a free port), its data kept under var/kafka/dev; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devenv import system
from devenv.kafka import TEST_OVERRIDES, KafkaServer
from devenv.kafka import version as kafka_version
from devenv.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
STATE = VAR / "devenv.json"


def _java_version() -> str:
    done = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    first = (done.stderr or done.stdout).splitlines()[0] if (done.stderr or done.stdout) else "?"
    return first.split('"')[1] if '"' in first else first


def _line(name: str, version: str, where: str, seconds: float | None) -> None:
    took = f"started in {seconds:.1f} s" if seconds is not None else ""
    print(f"  {name:<11}{version:<34}{where:<30}{took}", flush=True)


class Services:
    def __init__(self, *, detached: bool):
        self.postgres = PostgresCluster(VAR / "postgres")
        self.kafka = KafkaServer(
            VAR / "kafka" / "test", overrides=dict(TEST_OVERRIDES), die_with_parent=not detached
        )

    def up(self) -> dict[str, str]:
        system.install()
        print("services for the tests:", flush=True)
        pg_seconds = self.postgres.start()
        _line(
            "postgresql",
            self.postgres.version(),
            f"127.0.0.1:{self.postgres.port}/test",
            pg_seconds,
        )
        self.kafka.format()  # every run starts from empty storage
        kafka_seconds = self.kafka.start()
        _line(
            "kafka",
            f"{kafka_version()} KRaft, Java {_java_version()}",
            self.kafka.bootstrap_servers,
            kafka_seconds,
        )
        _line("dovecot", system.version("dovecot-imapd"), "one per test, free loopback port", None)
        _line("chromium", system.version("chromium"), "/usr/bin/chromium, headless", None)
        state = {
            "SUPPORTROUTER_TEST_POSTGRES": self.postgres.dsn,
            "SUPPORTROUTER_TEST_KAFKA": self.kafka.bootstrap_servers,
            "kafka_pid": str(self.kafka.pid),
        }
        STATE.write_text(json.dumps(state, indent=1))
        return state

    def down(self) -> None:
        self.kafka.stop()
        self.postgres.stop()
        STATE.unlink(missing_ok=True)


def run(command: list[str]) -> int:
    services = Services(detached=False)
    child: subprocess.Popen | None = None

    def forward(signum: int, _frame: object) -> None:
        # The command runs in a process group of its own, so a Ctrl-C at the terminal reaches
        # only us; we pass it (or a TERM) on once, and stop the services when it has ended.
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        elif child is None:
            raise KeyboardInterrupt  # still starting: stop what has started

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        state = services.up()
        env = dict(os.environ, **{k: v for k, v in state.items() if k.startswith("SUPPORTROUTER_")})
        child = subprocess.Popen(command, env=env, process_group=0)
        return child.wait()
    finally:
        began = time.monotonic()
        services.down()
        print(f"services stopped in {time.monotonic() - began:.1f} s", flush=True)


def down() -> None:
    if STATE.exists():
        pid = json.loads(STATE.read_text()).get("kafka_pid")
        if pid and pid.isdigit():
            try:
                os.kill(int(pid), signal.SIGTERM)
                for _ in range(300):
                    os.kill(int(pid), 0)
                    time.sleep(0.1)
            except ProcessLookupError:
                pass
    PostgresCluster(VAR / "postgres").stop()
    STATE.unlink(missing_ok=True)
    print("services stopped")


def kafka_foreground(port: int) -> int:
    from devenv.ports import free_port

    server = KafkaServer(VAR / "kafka" / "dev", port=free_port(port))
    seconds = server.start()
    _line(
        "kafka",
        f"{kafka_version()} KRaft, Java {_java_version()}",
        server.bootstrap_servers,
        seconds,
    )
    print(
        f"  data and server.log under {server.workdir}; Ctrl-C stops it.\n"
        f"  run the router against it:\n"
        f"    SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS={server.bootstrap_servers} .venv/bin/supportrouter run",
        flush=True,
    )
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"] and server.pid is not None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("kafka stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devenv",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="install and start PostgreSQL and Kafka, left running")
    commands.add_parser("down", help="stop what `up` started")
    runner = commands.add_parser("run", help="start the services, run a command, stop them")
    runner.add_argument("cmd", nargs=argparse.REMAINDER)
    kafka = commands.add_parser("kafka", help="a single-node Kafka in the foreground")
    kafka.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)
    VAR.mkdir(exist_ok=True)
    if args.command == "up":
        Services(detached=True).up()
        print(
            f"left running; `python -m devenv down` stops them ({STATE.relative_to(ROOT)} says where they are)"
        )
        return 0
    if args.command == "down":
        down()
        return 0
    if args.command == "run":
        command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not command:
            parser.error("run needs a command: python -m devenv run -- pytest")
        return run(command)
    return kafka_foreground(args.port)


if __name__ == "__main__":
    sys.exit(main())
