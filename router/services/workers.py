"""The pipeline's stages in processes of their own, so `supportrouter run` uses every core.

Each worker is `supportrouter run ROLE` (router/app.py's roles) talking to the supervisor's
embedded broker, or to the Kafka cluster it was given when a number of processes is set. The
supervisor keeps the broker and the store's start-up work, starts the workers together and
reports ready only when every one printed its banner. The gateway worker, which serves the
router's /readyz, answers 503 until then: the supervisor tells it (SIGUSR2) once every worker is
up, so a load balancer or a benchmark never takes a started gateway for a ready router.
Stopping is the reverse: the gateway first (its drain waits for accepted messages to be stored
while the pipeline still runs), then the consumers. The workers run in their own process group,
so a Ctrl-C reaches the supervisor alone and it stops them in that order; each one also dies
with the supervisor (PR_SET_PDEATHSIG), so nothing is orphaned even by a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass

import structlog

from router.bus.embedded import _die_with_parent
from router.core.settings import Settings

log = structlog.get_logger("router.workers")
READY_LINE = b"supportrouter is running"


@dataclass(frozen=True)
class Plan:
    """How many processes of each stage; the gateway and the sender are one each. No classifier
    when the gateway classifies (SUPPORTROUTER_CLASSIFY_IN)."""

    classifier: int
    dispatcher: int

    def roles(self) -> list[str]:
        """Every worker's role, the gateway (which stops first) last."""
        return (
            ["classifier"] * self.classifier
            + ["dispatcher"] * self.dispatcher
            + [
                "sender",
                "gateway",
            ]
        )


def plan_for(settings: Settings) -> Plan | None:
    """None: everything in this one process (SUPPORTROUTER_PROCESSES=1, or a single core, or
    "auto" on a Kafka cluster, where each service is run and scaled on its own)."""
    wanted = settings.processes
    if wanted == "1" or (wanted == "auto" and not settings.embedded):
        return None
    count = (os.cpu_count() or 1) if wanted == "auto" else int(wanted)
    if count <= 1:
        return None
    share = max(1, count // 2)
    return Plan(
        classifier=(settings.classifier_processes or share) if settings.classifier_stage else 0,
        dispatcher=settings.dispatcher_processes or share,
    )


class WorkerProcesses:
    def __init__(
        self, settings: Settings, plan: Plan, bootstrap_servers: str, *, embedded: bool = True
    ):
        self.settings, self.plan, self.bootstrap = settings, plan, bootstrap_servers
        self.embedded = embedded  # the supervisor's own broker, or a cluster it was given
        self.processes: list[tuple[str, asyncio.subprocess.Process]] = []
        # A signal for a worker not up yet (no banner: its handlers may not be in place, and a
        # SIGHUP or SIGUSR1 would end it) waits here, its role's and its own, until it is up.
        self._starting: list[tuple[str, list[int]]] = []
        self._up: set[int] = set()  # the workers that printed their banner, by pid
        self._watch: asyncio.Task | None = None
        self.exited = asyncio.Event()  # set when a worker dies on its own

    def _env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            SUPPORTROUTER_KAFKA_IS_EMBEDDED="1" if self.embedded else "0",
            SUPPORTROUTER_PROCESSES="1",
            SUPPORTROUTER_INTAKE_JOURNAL="on" if s.journaled else "off",
            SUPPORTROUTER_DATABASE_URL=s.database_url,
            # Several workers of a role on one host: each serves /metrics on a free port, logged.
            SUPPORTROUTER_STATUS_PORT="0",
        )
        if s.journaled:
            env["SUPPORTROUTER_JOURNAL_PATH"] = str(s.journal_file().resolve())
        return env

    async def start(self, timeout: float = 60.0) -> None:
        if self.processes:
            raise RuntimeError("WorkerProcesses already started")
        env = self._env()
        # All at once: what the gateway accepts waits in the broker for the consumers, and the
        # supervisor is ready only when every one is.
        results = await asyncio.gather(
            *(self._spawn(role, env, timeout) for role in self.plan.roles()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._watch = asyncio.create_task(self._watch_exits(), name="workers:watch")
        self.signal("gateway", signal.SIGUSR2)  # every worker is up: the gateway is ready
        log.info("workers.started", roles=[role for role, _ in self.processes])

    async def _spawn(self, role: str, env: dict[str, str], timeout: float) -> None:
        held: list[int] = []
        self._starting.append((role, held))
        try:
            process = await self._started(role, env, timeout)
        finally:
            self._starting = [(r, h) for r, h in self._starting if h is not held]
        self._up.add(process.pid)
        for sig in dict.fromkeys(held):  # each once, in order
            _send(process, sig)
        assert process.stdout is not None
        # The rest of its banner and anything else it prints is read and dropped.
        asyncio.get_running_loop().create_task(_drain(process.stdout))

    async def _started(
        self, role: str, env: dict[str, str], timeout: float
    ) -> asyncio.subprocess.Process:
        """A worker started and up (its banner printed)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "router.cli",
            "run",
            *(["--held"] if role == "gateway" else []),
            role,  # last: what `ps` shows a worker runs
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        self.processes.append((role, process))
        assert process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while not (line := await process.stdout.readline()).startswith(READY_LINE):
                    if not line:
                        raise RuntimeError(f"the {role} worker exited ({await process.wait()})")
        except TimeoutError:
            raise RuntimeError(f"the {role} worker was not ready after {timeout} s") from None
        return process

    async def _watch_exits(self) -> None:
        waits = {asyncio.ensure_future(p.wait()): role for role, p in self.processes}
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            log.error("workers.exited", role=waits[task], returncode=task.result())
        self.exited.set()

    def signal(self, role: str, sig: int) -> None:
        for name, held in self._starting:
            if name == role:
                held.append(sig)
        for name, process in self.processes:
            if name == role and process.pid in self._up and process.returncode is None:
                _send(process, sig)

    async def stop(self, timeout: float | None = None) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        timeout = timeout or self.settings.drain_seconds + 10
        gateway = [p for role, p in self.processes if role == "gateway"]
        rest = [p for role, p in self.processes if role != "gateway"]
        for group in (gateway, rest):
            await asyncio.gather(*(_terminate(p, timeout) for p in group))
        self.processes = []


def _send(process: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def _terminate(process: asyncio.subprocess.Process, timeout: float) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
