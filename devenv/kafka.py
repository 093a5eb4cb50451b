"""Apache Kafka in KRaft mode (one node: broker and controller in one JVM), from Maven Central.

The jars are fetched once with `mvn dependency:copy-dependencies` (scripts/kafka/pom.xml) into a
cache outside the repository, ~/.cache/supportrouter/kafka-VERSION (SUPPORTROUTER_CACHE_DIR
moves it). Each server has its own directory (properties, formatted storage, server.log) and
free loopback ports, and is ready only once it answers a Kafka request naming itself as a broker.
"""

from __future__ import annotations

import base64
import ctypes
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from devenv.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "scripts" / "kafka" / "pom.xml"
LOG_CONFIG = ROOT / "scripts" / "kafka" / "log4j2.properties"
HEAP = ("-Xms256m", "-Xmx512m")

# Test-friendly group settings, never the router's defaults: a first join is not held back, and
# a test may ask for a session shorter than Kafka's 6 s minimum.
TEST_OVERRIDES = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
}


def version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not match:
        raise RuntimeError(f"{POM}: no <kafka.version>")
    return match.group(1)


def cache_dir() -> Path:
    base = os.environ.get("SUPPORTROUTER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "supportrouter"
    )
    return Path(base) / f"kafka-{version()}"


def libs() -> Path:
    """The broker's jars, fetched from Maven Central on first use."""
    target = cache_dir() / "libs"
    if (target / f"kafka_2.13-{version()}.jar").exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed to fetch Apache Kafka's jars from Maven Central")
    partial = target.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"fetching Apache Kafka {version()} from Maven Central into {target.parent}", flush=True)
    subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ],
        check=True,
    )
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # all or nothing: an interrupted fetch is retried whole
    return target


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("Java 17 or newer is needed to run Apache Kafka")
    return java


def _cluster_id() -> str:
    """A random cluster id as Kafka writes them (base64url, 22 characters). Like Kafka's own
    Uuid.randomUuid, never one that starts with "-": the storage tool would read it as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphan broker if our process dies


@dataclass
class KafkaServer:
    workdir: Path
    port: int = 0
    controller_port: int = 0
    overrides: dict[str, str] = field(default_factory=dict)
    # Dies with the thread that started it (PR_SET_PDEATHSIG): start it from a long-lived
    # thread, never from a worker pool's.
    die_with_parent: bool = True
    _process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _properties(self) -> str:
        values = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "3",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
        }
        values.update(self.overrides)
        return "".join(f"{key}={value}\n" for key, value in values.items())

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            _java(),
            *HEAP,
            f"-Dlog4j2.configurationFile={LOG_CONFIG}",
            "-cp",
            f"{libs()}/*",
            main,
            *args,
        ]

    def _configure(self) -> Path:
        """Pick the ports (unless given) and write server.properties."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        config = self.workdir / "server.properties"
        config.write_text(self._properties())
        return config

    def format(self) -> None:
        """Fresh storage: a new cluster id, formatted for this node's static quorum."""
        shutil.rmtree(self.workdir / "data", ignore_errors=True)
        config = self._configure()
        cluster_id = _cluster_id()
        done = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"formatting Kafka's storage failed: {done.stderr.strip() or done.stdout.strip()}"
            )

    def start(self, timeout: float = 90.0) -> float:
        """Start on formatted storage (format first if there is none); return the seconds taken."""
        began = time.monotonic()
        if self._process is not None:
            raise RuntimeError("KafkaServer already started")
        if (self.workdir / "data" / "meta.properties").exists():
            self._configure()  # the storage is kept; the ports may be new
        else:
            self.format()
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self._process = subprocess.Popen(
                self._java("kafka.Kafka", str(self.workdir / "server.properties")),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
                start_new_session=True,  # a Ctrl-C reaches whoever started it, who stops it in order
            )
        finally:
            log.close()
        self.wait_ready(timeout)
        return time.monotonic() - began

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                code, self._process = self._process.returncode, None
                raise RuntimeError(
                    f"Kafka exited with status {code}; see {self.workdir / 'server.log'}"
                )
            if answers(self.bootstrap_servers):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Kafka did not answer on {self.bootstrap_servers} within {timeout:.0f}s;"
                    f" see {self.workdir / 'server.log'}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        """A controlled shutdown (SIGTERM); SIGKILL if it takes longer than `timeout`."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL: what a crash or a pulled plug looks like to the clients."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def answers(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """Whether a broker there answers a Metadata request (v4) naming at least one live broker:
    a broker that accepts connections but has not joined its cluster yet names none."""
    host, _, port = bootstrap_servers.rpartition(":")
    client_id = b"devenv"
    request = (
        struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id + struct.pack(">i?", -1, False)
    )  # all topics, create none
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            header = _read(sock, 4)
            body = _read(sock, struct.unpack(">i", header)[0])
    except OSError:
        return False
    correlation, _throttle, brokers = struct.unpack(">iii", body[:12])
    return correlation == 1 and brokers > 0


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed mid-answer")
        data += chunk
    return data
