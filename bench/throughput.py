"""`make bench` (also `supportrouter bench`): the router under a spike, from the webhook.

Starts the real router (`supportrouter run`, the embedded default: Tansu and SQLite, or
--database-url for PostgreSQL, --kafka for an Apache Kafka cluster) as a subprocess and drives
it over HTTP from other processes: wrk with a Lua script over pre-signed Twilio SMS webhooks, one
customer each (bench/loadgen.py; an aiohttp client there when wrk cannot be installed). In the
same run it measures the two
ceilings (bench/bare_server.py): bare aiohttp with the same signature check, and a bare
Kafka-first gateway (+ one acks=all produce per request). Figures:

- throughput_msgs_per_s: first request → last message stored in its queue (polled from the store)
- accept_rps: the same burst's requests answered per second
- p50_ms_at_500 / p99_ms_at_500: answered → stored, sending a steady 500 messages/s
- answer_p50_ms_at_500 / answer_p99_ms_at_500, and answer_p50_ms / answer_p99_ms in each
  latency_by_rate row: the 200 itself, sent → answered (what a provider waits for)
- latency_by_rate (--latency-rates 100,200): the same at other steady rates, e.g. below what
  the router sustains, where the figure is its latency and not a queue's length
- hops_at_500, and hops in each latency_by_rate row: where that time went, stage to stage,
  from the router's own log lines (bench/stages.py)
- critical_behind_backlog_s: a fraud report's answer → stored in the fraud queue, sent just
  after a burst of --backlog standard messages was answered
- bare_http_msgs_per_s, bare_gateway_msgs_per_s: the ceilings, each a burst of --ceiling
- cpu_ms_per_msg: each process's CPU time (user + system) during that burst, per message;
  cpu_ms_per_msg_at_500, and cpu_ms_per_msg in each latency_by_rate row: the same for a steady
  phase, from its first request to its last message stored (smaller chunks than a burst's)
- peak_rss_mb: every process's peak resident memory (VmHWM), the router's children by name
- soak (--soak-seconds): every process's resident memory through a steady run
- scale_out (--scale-out 1,2,4): the burst again with N dispatcher processes (and N classifier
  processes when that stage runs: SUPPORTROUTER_CLASSIFY_IN)
- burst_runs, bare_http_runs, bare_gateway_runs (--repeat N): every run of the burst and of the
  ceilings; the figures above are the median run's (the lower middle one of an even count)

Prints a table and writes bench/results/latest.json (--out elsewhere). --quick: small numbers.

    .venv/bin/python bench/throughput.py [--quick] [--database-url URL] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import (  # noqa: E402
    ROOT,
    PeakMemory,
    Progress,
    StoreView,
    database_server_pid,
    listening_pid,
    machine,
    running,
    stop_process,
    wait_ready,
)
from loadgen import PATH, Signed, burst_command, ensure_wrk, sign_sms, threads_of  # noqa: E402
from options import number_list, whole  # noqa: E402
from stages import hops  # noqa: E402

from router.bus.embedded import free_port  # noqa: E402
from router.cli.main import database_url_argument  # noqa: E402
from router.core.settings import Settings, Topics  # noqa: E402

TOKEN = "bench-twilio-auth-token"
RATE = 500  # messages per second in the steady phase
STANDARD_TEXTS = [
    "what is the fee for a withdrawal to my bank card",
    "how do I raise my daily transfer limit",
    "提现手续费是多少",
    "can I top up with a credit card",
    "我想修改绑定的手机号",
]
FRAUD_TEXT = "someone made a payment from my wallet that I did not make"
SIZES = {
    "default": {"ceiling": 20_000, "burst": 20_000, "steady_seconds": 20, "backlog": 20_000},
    "quick": {"ceiling": 1_000, "burst": 500, "steady_seconds": 2, "backlog": 500},
}


async def logged_hops(log: Path, start: int, messages: int) -> dict:
    """The hops of the messages logged in `log` after `start` (bench/stages.py). The dispatcher
    writes its line just after the store has the message, and the sender after that: wait a
    little for the last ones (at most five seconds)."""
    for _ in range(25):
        with log.open(errors="replace") as lines:
            lines.seek(start)
            found = hops(lines)
        if found.get("dispatcher → sender", {}).get("n", 0) >= messages:
            break
        await asyncio.sleep(0.2)
    return found


def texts(n: int) -> list[str]:
    return [STANDARD_TEXTS[i % len(STANDARD_TEXTS)] for i in range(n)]


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args, self.tmp = args, tmp
        self.size = SIZES["quick" if args.quick else "default"]
        for key in self.size:
            if getattr(args, key, None):
                self.size[key] = getattr(args, key)
        self.run_id = secrets.token_hex(2)
        self.steady_customers = 2_000_000  # the next steady phase's first customer
        self.progress = Progress()
        self.memory = PeakMemory()
        self.wrk = ensure_wrk()
        self.database_url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        # The servers on this machine the router uses (--kafka, a PostgreSQL --database-url):
        # their CPU and memory are measured with the router's processes, found by their ports.
        self.servers = {
            name: pid
            for name, pid in (
                ("kafka", listening_pid(int(args.kafka.rsplit(":", 1)[1])) if args.kafka else None),
                ("postgres", database_server_pid(self.database_url)),
            )
            if pid is not None
        }
        self.figures: dict = {}

    async def burst(self, phase: str, base_url: str, requests: list[Signed]) -> tuple:
        """Every request through the load generator: (first sent, last answered, not OK)."""
        file = self.tmp / f"{re.sub(r'[^A-Za-z0-9]+', '_', phase)}.txt"
        file.write_text("".join(f"{r.signature} {r.body}\n" for r in requests))
        command = burst_command(self.wrk, file, base_url, self.args.connections)
        started = time.time()
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        finished = bad = 0
        said = b""
        try:
            while finished < threads_of(command):
                line = await process.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise RuntimeError(f"the load generator {command[0]} stopped early: {said!r}")
                said = line
                if line.startswith(b"finished"):
                    finished += 1
                    bad += int(line.split()[1])
            answered = time.time()
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            await stop_process(process, timeout=10)
        return started, answered, bad

    async def ceiling(self, mode: str) -> None:
        """bare_{mode}_msgs_per_s (the median run) and bare_{mode}_runs (each of --repeat)."""
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, str(ROOT / "bench" / "bare_server.py"), mode]
        command += ["--port", str(port), "--token", TOKEN, "--url", base + PATH]
        if mode == "gateway" and self.args.kafka:
            command += ["--kafka", self.args.kafka, "--topic", f"bench.{self.run_id}.bare"]
        n = self.size["ceiling"]
        requests = sign_sms(base + PATH, TOKEN, f"{self.run_id}a", texts(n))
        self.progress.show(f"ceiling: bare {mode}", 0, n)
        async with running(command, log=self.tmp / f"bare_{mode}.log") as process:
            self.memory.watch(process.pid, f"bare_{mode}")
            while (line := await process.stdout.readline()) != b"ready\n":  # type: ignore[union-attr]
                if not line:
                    raise RuntimeError(f"bare {mode} server exited; see its log")
            rates = []
            for _ in range(self.args.repeat):  # the same requests: the bare server keeps nothing
                started, answered, bad = await self.burst(f"bare {mode}", base, requests)
                rates.append(round((n - bad) / (answered - started), 1))
            self.memory.sample()
        self.progress.show(f"ceiling: bare {mode}", n, n)
        self.figures[f"bare_{mode}_msgs_per_s"] = statistics.median_low(rates)
        self.figures[f"bare_{mode}_runs"] = rates

    @property
    def every_core(self) -> str:
        """SUPPORTROUTER_PROCESSES for a router with a process per stage on every core: `auto`
        is one process on a cluster (--kafka), so there it is the number of cores."""
        return str(os.cpu_count() or 1) if self.args.kafka else "auto"

    def router_env_for(self, database_url: str) -> dict[str, str]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTROUTER_")}
        env.pop("TWILIO_ACCOUNT_SID", None)  # never send to the real Twilio
        env.update(
            PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            SUPPORTROUTER_HTTP_PORT=str(port),
            SUPPORTROUTER_HTTP_HOST="127.0.0.1",
            SUPPORTROUTER_PUBLIC_URL=f"http://127.0.0.1:{port}",
            SUPPORTROUTER_DATABASE_URL=database_url,
            SUPPORTROUTER_CONFIG_DIR=str(ROOT / "config"),
            SUPPORTROUTER_CHANNELS='["sms"]',
            SUPPORTROUTER_ADMIN_PASSWORD="bench-password",
            SUPPORTROUTER_LOG_FORMAT="json",
            TWILIO_AUTH_TOKEN=TOKEN,
        )
        if self.args.processes:
            env["SUPPORTROUTER_PROCESSES"] = self.args.processes
        if self.args.kafka:  # every core, as on the embedded broker; topics and groups its own
            env.setdefault("SUPPORTROUTER_PROCESSES", self.every_core)
            names = f"bench.{self.run_id}.{port}"
            env["SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS"] = self.args.kafka
            env["SUPPORTROUTER_CONSUMER_GROUP_PREFIX"] = names
            for name, topic in Topics().model_dump().items():
                env[f"SUPPORTROUTER_TOPICS__{name.upper()}"] = f"{names}.{topic}"
        env.update((f"SUPPORTROUTER_{name.upper()}", value) for name, value in self.args.setting)
        return env

    async def wait_stored(
        self, store: StoreView, phase: str, prefix: str, n: int, seq: int
    ) -> float:
        """When the n-th message under `prefix` was seen in the store. Each poll reads only the
        rows stored after `seq` (the top before the phase began): a count over the whole table
        every 20 ms cost the router under test a seventh of the machine."""
        stored: set[str] = set()
        last_change = time.monotonic()
        while True:
            seq, sids = await store.stored_since(seq, prefix)
            now = time.time()
            before = len(stored)
            stored.update(sids)
            self.progress.show(phase, len(stored), n)
            if len(stored) >= n:
                return now
            if len(stored) != before:
                last_change = time.monotonic()
            elif time.monotonic() - last_change > 60:
                raise RuntimeError(f"{phase}: stuck at {len(stored)} of {n} stored")
            await asyncio.sleep(0.02)

    async def end_to_end(self, base: str, store: StoreView) -> None:
        """The burst, --repeat times (new customers each time): the figures of the median run
        by throughput, and every run's under `burst_runs`."""
        runs = [
            await self.burst_to_store(
                base,
                store,
                self.memory,
                "router: burst, end to end",
                f"{self.run_id}b{i:x}",
                first_customer=1_000_000 + i * self.size["burst"],
            )
            for i in range(self.args.repeat)
        ]
        rates = [run["throughput_msgs_per_s"] for run in runs]
        self.figures.update(runs[rates.index(statistics.median_low(rates))])
        self.figures["burst_runs"] = runs

    async def burst_to_store(
        self,
        base: str,
        store: StoreView,
        memory: PeakMemory,
        phase: str,
        prefix: str,
        first_customer: int = 1_000_000,
    ) -> dict:
        """A burst of --burst messages: accept_rps, throughput_msgs_per_s (first request →
        last stored), burst_not_ok, and cpu_ms_per_msg: each process's CPU time (user + system)
        from the first request to the last stored, per message."""
        n = self.size["burst"]
        requests = sign_sms(base + PATH, TOKEN, prefix, texts(n), start=first_customer)
        self.progress.show(phase, 0, n)
        seq = await store.top_seq()
        cpu = memory.cpu_seconds()
        started, answered, bad = await self.burst(phase, base, requests)
        if bad == n:
            raise RuntimeError(f"{phase}: the router refused every request of the burst")
        stored = await self.wait_stored(store, phase, prefix, n - bad, seq)
        return {
            "cpu_ms_per_msg": memory.cpu_ms_per_msg(cpu, n - bad),
            "accept_rps": round((n - bad) / (answered - started), 1),
            "throughput_msgs_per_s": round((n - bad) / (stored - started), 1),
            "burst_not_ok": bad,
        }

    async def steady(self, base: str, store: StoreView, rate: int = RATE) -> dict:
        """`rate` messages a second for --steady-seconds: p50 and p99 of answered → stored.
        Steady means not still digesting a spike: it begins once the replies of the phases
        before it (a burst of thousands of acknowledgements) went through the sender."""
        quiet_after_s = await store.quiet()
        n = rate * self.size["steady_seconds"]
        prefix = f"{self.run_id}c{rate:04x}"  # each rate its own SIDs (hex: the SID format)
        # New customers each phase: a returning one's message joins their open conversation,
        # which is not acknowledged again (no reply for the sender, a lighter path).
        start, self.steady_customers = self.steady_customers, self.steady_customers + n
        requests = sign_sms(base + PATH, TOKEN, prefix, texts(n), start=start)
        accepted: dict[str, float] = {}
        answer_ms: list[float] = []  # each 200's own time: sent → answered
        stored: dict[str, float] = {}
        seq = await store.top_seq()
        cpu = self.memory.cpu_seconds()
        log = self.tmp / f"router-{base.rsplit(':', 1)[1]}.log"  # see `started`
        log_from = log.stat().st_size
        sending = True

        async def post(http: aiohttp.ClientSession, r: Signed) -> None:
            headers = {"X-Twilio-Signature": r.signature}
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            sent = time.time()
            try:  # a router that cannot keep up refuses or drops some: counted, not fatal
                async with http.post(base + PATH, data=r.body.encode(), headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        accepted[r.sid] = time.time()
                        answer_ms.append((accepted[r.sid] - sent) * 1000)
            except (aiohttp.ClientError, TimeoutError):
                pass

        async def poll() -> None:
            nonlocal seq
            last_change = time.monotonic()
            while sending or not accepted.keys() <= stored.keys():
                seq, sids = await store.stored_since(seq, prefix)
                now = time.time()
                for sid in sids:
                    stored.setdefault(sid, now)
                if sids:  # the clock of `last_change` is monotonic: never mixed with time()
                    last_change = time.monotonic()
                self.progress.show(f"router: steady {rate}/s", len(stored), n)
                if not sending and time.monotonic() - last_change > 60:
                    raise RuntimeError(f"steady: stuck at {len(stored)} of {len(accepted)}")
                await asyncio.sleep(0.01)

        poller = asyncio.create_task(poll())
        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            start, tasks = time.monotonic(), []
            for i, r in enumerate(requests):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(http, r)))
            await asyncio.gather(*tasks)
        sending = False
        await poller
        cpu_ms_per_msg = self.memory.cpu_ms_per_msg(cpu, len(accepted))
        waits = sorted(max(0.0, stored[s] - accepted[s]) * 1000 for s in accepted)
        if not waits:
            raise RuntimeError(f"steady {rate}/s: the router answered none of {n} requests")
        between = await logged_hops(log, log_from, len(accepted))
        return {
            "rate": rate,
            "p50_ms": round(statistics.median(waits), 1),
            "p99_ms": round(percentile(waits, 0.99), 1),
            "not_ok": n - len(accepted),
            "answer_p50_ms": round(statistics.median(answer_ms), 1),
            "answer_p99_ms": round(percentile(sorted(answer_ms), 0.99), 1),
            "hops": between,
            "cpu_ms_per_msg": cpu_ms_per_msg,
            "quiet_after_s": quiet_after_s,
        }

    async def soak(self, base: str, store: StoreView) -> None:
        """--soak-seconds at --soak-rate: each process's resident memory once the first fifth
        of the time has passed, at each whole minute, and at the end, when everything sent is
        stored (does any grow without bound?)."""
        seconds, rate = self.args.soak_seconds, self.args.soak_rate
        n, prefix, phase = seconds * rate, f"{self.run_id}f", f"router: soak {rate}/s"
        requests = sign_sms(base + PATH, TOKEN, prefix, texts(n), start=5_000_000)
        answered: list[int] = []
        warm: dict[str, float] = {}
        minutes: list[dict[str, float]] = []  # every process's resident set at each minute
        seq = await store.top_seq()
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post(r: Signed) -> None:
                headers = {"X-Twilio-Signature": r.signature}
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.post(base + PATH, data=r.body.encode(), headers=headers) as a:
                        answered.append(a.status)

            start, tasks = time.monotonic(), []
            for i, r in enumerate(requests):
                if i == n // 5:
                    warm = self.memory.resident_mb()
                if i and i % (60 * rate) == 0:
                    minutes.append(self.memory.resident_mb())
                if i % rate == 0:
                    self.progress.show(phase, i, n)
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(r)))
            await asyncio.gather(*tasks)
        ok = answered.count(200)
        await self.wait_stored(store, phase, prefix, ok, seq)
        end = self.memory.resident_mb()
        self.figures["soak"] = {
            "seconds": seconds,
            "rate": rate,
            "not_ok": n - ok,
            "rss_mb_after_first_fifth": warm,
            "rss_mb_at_end": end,
            "rss_mb_each_minute": minutes,
        }

    async def critical(self, base: str, store: StoreView) -> None:
        n = self.size["backlog"]
        prefix = f"{self.run_id}d"
        backlog = sign_sms(base + PATH, TOKEN, prefix, texts(n), start=3_000_000)
        fraud = sign_sms(base + PATH, TOKEN, f"{self.run_id}e", [FRAUD_TEXT], start=4_000_000)[0]
        phase = "router: fraud report behind backlog"
        self.progress.show(phase, 0, n)
        await self.burst("router backlog", base, backlog)
        seq = await store.top_seq()
        headers = {"X-Twilio-Signature": fraud.signature}
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        async with aiohttp.ClientSession() as http:
            async with http.post(base + PATH, data=fraud.body.encode(), headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"the fraud report was answered {resp.status}")
        accepted = time.time()
        while True:
            seq, sids = await store.stored_since(seq, f"{self.run_id}e")
            if sids:
                break
            await asyncio.sleep(0.005)
        self.figures["critical_behind_backlog_s"] = round(max(time.time() - accepted, 1e-3), 3)
        self.figures["backlog_unrouted_then"] = n - await store.count(prefix)
        self.progress.show(phase, n, n)

    @contextlib.asynccontextmanager
    async def profiled(self, pid: int) -> AsyncIterator[None]:
        """py-spy sampling the router and its children while the block runs, with --profile."""
        if not self.args.profile:
            yield
            return
        # The virtual environment's own, when it is not on PATH (make bench does not activate it).
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        command = [py_spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
        command += ["--format", "raw", "--rate", "50", "-o", str(self.args.profile)]
        profiler = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            yield
        finally:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(profiler.wait(), 60)
            await stop_process(profiler, timeout=10)

    async def router(self) -> None:
        """The router as configured (--processes), through every phase."""
        async with self.started(self.router_env_for(self.database_url), self.memory) as (base, pid):
            store = StoreView(self.database_url)
            try:
                async with self.profiled(pid):
                    await self.end_to_end(base, store)
                    at_500 = await self.steady(base, store)
                    self.figures["p50_ms_at_500"] = at_500["p50_ms"]
                    self.figures["p99_ms_at_500"] = at_500["p99_ms"]
                    self.figures["answer_p50_ms_at_500"] = at_500["answer_p50_ms"]
                    self.figures["answer_p99_ms_at_500"] = at_500["answer_p99_ms"]
                    self.figures["steady_not_ok"] = at_500["not_ok"]
                    self.figures["hops_at_500"] = at_500["hops"]
                    self.figures["cpu_ms_per_msg_at_500"] = at_500["cpu_ms_per_msg"]
                    self.figures["quiet_before_500_s"] = at_500["quiet_after_s"]
                    if self.args.latency_rates:
                        self.figures["latency_by_rate"] = [
                            await self.steady(base, store, rate) for rate in self.args.latency_rates
                        ]
                    await self.critical(base, store)
                    if self.args.soak_seconds:
                        await self.soak(base, store)
            finally:
                await store.close()

    async def scale_out(self, counts: list[int]) -> list[dict]:
        """The burst end to end with N classifier (when that stage runs) and N dispatcher
        processes for each N, over
        --partitions partitions (at least N), each on a fresh SQLite store, or on PostgreSQL in
        the same database, after the phases before (it holds their rows); the rest as
        configured."""
        rows = []
        # Without a classifier stage (SUPPORTROUTER_CLASSIFY_IN) the gateway classifies.
        stage = Settings(
            kafka_bootstrap_servers=self.args.kafka or None,
            classify_in=dict(self.args.setting).get("classify_in", "auto"),
        ).classifier_stage
        # each run's message SIDs: SM, the run id, "a", n in hex (SID format); new customers
        # each run, as in the bursts (on PostgreSQL the database holds the bursts' customers,
        # whose next message would take the lighter path of a conversation already open)
        for i, n in enumerate(counts):
            url = self.database_url
            if url.startswith("sqlite"):
                url = f"sqlite+aiosqlite:///{self.tmp}/scale-{n}.db"
            env = self.router_env_for(url)
            env.update(
                SUPPORTROUTER_PROCESSES=self.every_core,
                SUPPORTROUTER_CLASSIFIER_PROCESSES=str(n),
                SUPPORTROUTER_DISPATCHER_PROCESSES=str(n),
                SUPPORTROUTER_PARTITIONS=str(max(n, self.args.partitions)),
            )
            memory = PeakMemory()
            phase = f"scale-out: {n} + {n}"
            async with self.started(env, memory, phase=phase) as (base, _):
                store = StoreView(url)
                try:
                    figures = await self.burst_to_store(
                        base,
                        store,
                        memory,
                        phase,
                        f"{self.run_id}a{n:02x}",
                        first_customer=6_000_000 + i * self.size["burst"],
                    )
                finally:
                    await store.close()
            await memory.stop()
            peaks = memory.peaks_mb
            rows.append(
                {
                    "classifiers": n if stage else 0,
                    "dispatchers": n,
                    "partitions": max(n, self.args.partitions),
                    **figures,
                    # the router's processes, not the servers' (--kafka, PostgreSQL)
                    "peak_rss_mb_total": round(
                        sum(mb for name, mb in peaks.items() if name.startswith("router")), 1
                    ),
                }
            )
        return rows

    @contextlib.asynccontextmanager
    async def started(
        self, env: dict[str, str], memory: PeakMemory, phase: str = "router: starting"
    ) -> AsyncIterator[tuple[str, int]]:
        """A `supportrouter run` with `env`, ready: its base URL and pid; stopped after."""
        port = int(env["SUPPORTROUTER_HTTP_PORT"])
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "router.cli", "run"]
        log = self.tmp / f"router-{port}.log"
        self.progress.show(phase, 0, 1)
        async with running(command, env=env, log=log) as process:
            memory.watch(process.pid, "router")
            for name, pid in self.servers.items():
                memory.watch(pid, name, whole=True)
            await wait_ready(base + "/readyz", process, log=log)
            self.progress.show(phase, 1, 1)
            yield base, process.pid
            memory.sample()

    async def run(self) -> dict:
        await self.ceiling("http")
        await self.ceiling("gateway")
        await self.router()
        await self.memory.stop()
        if self.args.scale_out:
            self.figures["scale_out"] = await self.scale_out(self.args.scale_out)
        self.progress.end()
        url = self.database_url
        return {
            **self.figures,
            "share_of_bare_gateway": round(
                self.figures["throughput_msgs_per_s"] / self.figures["bare_gateway_msgs_per_s"], 3
            ),
            "peak_rss_mb": dict(sorted(self.memory.peaks_mb.items())),
            "database": url.split(":", 1)[0].split("+")[0],
            "broker": f"apache kafka ({self.args.kafka})"
            if self.args.kafka
            else "tansu (embedded)",
            "load_generator": "wrk" if self.wrk else "aiohttp (bench/loadgen.py)",
            "sizes": self.size,
            "settings": dict(self.args.setting),  # --setting: the routers' settings changed
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "command": " ".join(["bench/throughput.py", *sys.argv[1:]]),
        }


def _runs(rates: list[float]) -> str:
    """With --repeat: every run's figure, after the median's."""
    return f"; runs {' / '.join(f'{r:,}' for r in rates)}" if len(rates) > 1 else ""


def percentile(ordered: list[float], share: float) -> float:
    """The value below which `share` of the sorted values lie (the nearest rank below)."""
    return ordered[int(share * (len(ordered) - 1))]


def _p50_p99(p50: float, p99: float) -> str:
    return f"p50 {p50} ms, p99 {p99} ms"


def _cpu(by_process: dict[str, float]) -> str:
    """CPU per message: the sum, then each process's, largest first."""
    ordered = sorted(by_process.items(), key=lambda i: -i[1])
    return f"{sum(by_process.values()):.2f} ms: " + ", ".join(
        f"{name} {ms:.2f}" for name, ms in ordered
    )


def table(result: dict) -> str:
    gateway = result["bare_gateway_msgs_per_s"]
    bursts = [run["throughput_msgs_per_s"] for run in result["burst_runs"]]
    rows = [
        (
            "bare aiohttp (signature check, empty TwiML)",
            f"{result['bare_http_msgs_per_s']:,} req/s{_runs(result['bare_http_runs'])}",
        ),
        (
            "bare Kafka-first gateway (+ acks=all produce)",
            f"{gateway:,} req/s{_runs(result['bare_gateway_runs'])}",
        ),
        ("router accepting webhooks", f"{result['accept_rps']:,} req/s"),
        (
            "router end to end (first request → last stored)",
            f"{result['throughput_msgs_per_s']:,} msgs/s ({result['share_of_bare_gateway']:.0%} of the gateway){_runs(bursts)}",
        ),
        (
            f"accepted → stored at a steady {RATE}/s",
            _p50_p99(result["p50_ms_at_500"], result["p99_ms_at_500"]),
        ),
        (
            f"  the 200 itself (sent → answered) at {RATE}/s",
            _p50_p99(result["answer_p50_ms_at_500"], result["answer_p99_ms_at_500"]),
        ),
        (
            f"fraud report behind {result['sizes']['backlog']:,} messages",
            f"{result['critical_behind_backlog_s']} s ({result['backlog_unrouted_then']:,} still unrouted)",
        ),
    ]
    rows.append(("CPU per message in the burst", _cpu(result["cpu_ms_per_msg"])))
    rows.append((f"CPU per message at a steady {RATE}/s", _cpu(result["cpu_ms_per_msg_at_500"])))
    rows += [(f"peak RSS {name}", f"{mb} MB") for name, mb in result["peak_rss_mb"].items()]
    if "soak" in result:
        soak = result["soak"]
        title = f"RSS over {soak['seconds']} s at {soak['rate']}/s"
        rows += [
            (f"{title}: {name}", f"{soak['rss_mb_after_first_fifth'].get(name, '?')} → {mb} MB")
            for name, mb in soak["rss_mb_at_end"].items()
        ]
    for row in result.get("latency_by_rate", []):
        rows.append(
            (
                f"accepted → stored at a steady {row['rate']}/s",
                _p50_p99(row["p50_ms"], row["p99_ms"])
                + (f" ({row['not_ok']} not answered 200)" if row["not_ok"] else ""),
            )
        )
        rows.append(
            (
                "  the 200 itself (sent → answered)",
                _p50_p99(row["answer_p50_ms"], row["answer_p99_ms"]),
            )
        )
        rows.append(("  CPU per message", _cpu(row["cpu_ms_per_msg"])))
        rows += [
            (f"  {hop}", _p50_p99(figures["p50_ms"], figures["p99_ms"]))
            for hop, figures in row.get("hops", {}).items()
        ]
    for row in result.get("scale_out", []):
        rows.append(
            (
                f"scale-out: {row['classifiers']} classifier + {row['dispatchers']} dispatcher"
                f" processes, {row['partitions']} partitions",
                f"{row['throughput_msgs_per_s']:,} msgs/s end to end, accepting"
                f" {row['accept_rps']:,} req/s, {row['peak_rss_mb_total']} MB in all",
            )
        )
    width = max(len(r[0]) for r in rows)
    head = f"{result['date']}  {result['database']} + {result['broker']}  {result['machine']}"
    return "\n".join([head, *(f"  {a:<{width}}  {b}" for a, b in rows)])


def process_counts(text: str) -> list[int]:
    """--scale-out's value: process counts from 1 to 64 (what the settings allow), comma-separated."""
    return number_list(text, 1, 64, "counts", "1,2,4")


def rates(text: str) -> list[int]:
    """--latency-rates' value: messages a second from 1 to 5,000, comma-separated."""
    return number_list(text, 1, 5000, "rates", "100,200")


def setting(text: str) -> tuple[str, str]:
    """--setting's value: NAME=VALUE, NAME one of the router's settings (router/core/settings.py)."""
    name, equals, value = text.partition("=")
    name = name.strip().lower()
    if not equals or name not in Settings.model_fields:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME a router setting like consumer_fetch_wait_ms=20, "
            f"not {text!r}"
        )
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small numbers (tests)")
    parser.add_argument(
        "--database-url",
        type=database_url_argument,
        help="default: SQLite in a temporary directory",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--connections", type=whole(1, 10_000), default=64)
    parser.add_argument("--processes", help="SUPPORTROUTER_PROCESSES for the router")
    parser.add_argument(
        "--kafka",
        metavar="HOST:PORT",
        help="an Apache Kafka cluster instead of the embedded broker (the router with every "
        "core, topics and groups of each run's own; the bare gateway produces there too)",
    )
    parser.add_argument("--profile", type=Path, help="py-spy's collapsed stacks of the router")
    parser.add_argument(
        "--soak-seconds",
        type=whole(0, 86_400),
        default=0,
        help="then this long at --soak-rate (memory growth)",
    )
    parser.add_argument(
        "--soak-rate", type=whole(1, 5_000), default=100, help="messages/s of the soak"
    )
    parser.add_argument(
        "--scale-out",
        metavar="N,N,...",
        type=process_counts,
        help="then the burst again with N classifier and N dispatcher processes for each N",
    )
    parser.add_argument(
        "--partitions",
        type=whole(1, 256),
        default=4,
        help="partitions per topic in the scale-out runs",
    )
    parser.add_argument(
        "--latency-rates",
        metavar="N,N,...",
        type=rates,
        help="then the steady phase again at each of these rates (messages/s)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="work in DIR and keep it: the routers' logs, the database, the signed requests",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        choices=range(1, 10),
        default=1,
        metavar="N",
        help="each ceiling and the end-to-end burst N times (1 to 9): the median run's figures, "
        "every run's kept in the JSON (this machine's speed moves between runs minutes apart)",
    )
    parser.add_argument(
        "--setting",
        metavar="NAME=VALUE",
        type=setting,
        action="append",
        default=[],
        help="a router setting for every router of the run (SUPPORTROUTER_NAME), e.g. "
        "consumer_fetch_wait_ms=20; repeatable",
    )
    for key in SIZES["default"]:
        most = 3_600 if key == "steady_seconds" else 10_000_000
        parser.add_argument(f"--{key.replace('_', '-')}", type=whole(1, most), dest=key)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        result = asyncio.run(Bench(args, Path(tmp)).run())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(table(result))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
