"""Gateway: the HTTP server in front of everything. Channels' routes, the agents' API, health."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import structlog
from aiohttp import web

from channels.base import ChannelAdapter
from router.bus.kafka import KafkaBus
from router.core.http import json_error_response
from router.core.settings import Settings
from router.observability.access_log import ACCESS_LOGGER, AccessLog
from router.services.api import AgentApi
from router.services.desk_api import DeskApi
from router.services.status_http import metrics_response, problems
from router.store.conversations import ConversationStore

log = structlog.get_logger("router.services.gateway")
STATIC = Path(__file__).parent / "static"


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every refusal is a JSON body with a reason; an unexpected fault is logged, never a crash."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return json_error_response(
                exc.reason,
                status=exc.status,
                headers={
                    k: v
                    for k, v in exc.headers.items()
                    if k.lower() in ("allow", "www-authenticate")
                },
            )
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("http.unhandled", path=request.path, method=request.method)
        return json_error_response("internal error; the request was logged", status=500)


# The console and the chat page load their script and the widget's styles from this origin
# only; the styles stay inline (the widget injects its own <style>), scripts never are.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the console's socket URL carries a token
    "X-Frame-Options": "DENY",
}


async def security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """On every answer, refusals and the sockets' handshakes included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        store: ConversationStore,
        bus: KafkaBus,
        api: AgentApi,
        channels: list[ChannelAdapter],
    ):
        self.settings, self.store, self.bus, self.api, self.channels = (
            settings,
            store,
            bus,
            api,
            channels,
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        # Set, /readyz answers 503 with it as the reason. The supervisor's gateway worker starts
        # with it set and clears it when every other worker is up (router/services/workers.py):
        # the webhooks it takes meanwhile are kept, but nothing is routed yet.
        self.waiting_for: str | None = None

    def build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_body_bytes, middlewares=[json_errors]
        )
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/console/", self.console)
        app.router.add_get("/console", self.console)
        app.router.add_get("/console/console.js", self.console_script)
        app.router.add_get("/", self.index)
        self.api.routes(app)
        DeskApi(self.api).routes(app)
        for channel in self.channels:
            channel.routes(app)
        app.on_shutdown.append(self._close_sockets)
        app.on_response_prepare.append(security_headers)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("Gateway already started")
        await self.api.start()
        for channel in self.channels:
            await channel.start()
        runner = web.AppRunner(
            self.build_app(),
            access_log=ACCESS_LOGGER,
            access_log_class=AccessLog,
            shutdown_timeout=5,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("gateway.listening", port=self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # stops intake first, then on_shutdown closes the sockets
        else:
            await self._close_sockets(None)

    async def _close_sockets(self, _app: web.Application | None) -> None:
        for channel in reversed(self.channels):
            await channel.stop()
        await self.api.stop()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        found = await problems(self.bus, self.store)
        if self.waiting_for is not None:
            found["workers"] = self.waiting_for
        if found:
            return web.json_response({"status": "unavailable", "problems": found}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        return metrics_response()

    async def console(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "console.html")

    async def console_script(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC / "console.js", headers={"Content-Type": "application/javascript"}
        )

    async def index(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "chat": "/chat/",
                "console": "/console/",
                "api": "/api/",
                "health": ["/healthz", "/readyz", "/metrics"],
            },
            dumps=lambda v: json.dumps(v, indent=2),
        )
