"""A service's own small HTTP server when it runs alone: /metrics, /healthz and /readyz.

The gateway serves these on its own port; a classifier, dispatcher or sender run apart
(`supportrouter run classifier`) has no other port, so its counters, consumer lag and queue
gauges would be invisible. Ready means its broker answers and, when it has one, its store does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router.bus.kafka import KafkaBus

log = structlog.get_logger("router.services.status_http")


class StatusServer:
    def __init__(self, role: str, host: str, port: int, bus: KafkaBus, store: Any | None):
        self.role, self.host, self.port = role, host, port
        self.bus, self.store = bus, store
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # a free port was asked for: remember the one given
            self.port = self._runner.addresses[0][1]
        log.info("status.listening", role=self.role, port=self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": self.role})

    async def readyz(self, request: web.Request) -> web.Response:
        found = await problems(self.bus, self.store)
        if found:
            body = {"status": "unavailable", "role": self.role, "problems": found}
            return web.json_response(body, status=503)
        return web.json_response({"status": "ready", "role": self.role})

    async def metrics(self, request: web.Request) -> web.Response:
        return metrics_response()


async def problems(bus: KafkaBus, store: Any | None) -> dict[str, str]:
    """What keeps a service from being ready: its broker, and its store when it has one."""
    found: dict[str, str] = {}
    try:
        await bus.ping()
    except Exception as exc:
        found["kafka"] = f"unreachable: {exc!r}"[:300]
    if store is not None:
        try:
            await asyncio.wait_for(store.ping(), 2)
        except Exception as exc:
            found["database"] = f"unreachable: {exc!r}"[:300]
    return found


def metrics_response() -> web.Response:
    """Every metric of this process, as Prometheus text."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
