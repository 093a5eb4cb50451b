"""An in-process stand-in for the wallet's backend that takes protective actions (freeze, confirm,
lift), reached over HTTP by the router. It checks every request with the verifier the docs give
backends (router.core.signature.verify, with a replay guard), does each Idempotency-Key once,
records every request and can be told to fail the next ones first."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from router.core.signature import HEADER, SignatureError, verify

SECRET = "stand-in-protect-secret-0123456789"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int = 0
    refused: str | None = None  # why the signature check refused it

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class WalletBackendStandIn:
    secret: str = SECRET
    received: list[Received] = field(default_factory=list)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # Idempotency-Key → answer
    fail_next: int = 0  # the next requests that pass the signature check get 503
    seen: set[str] = field(default_factory=set)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> WalletBackendStandIn:
        app = web.Application()
        app.router.add_post("/protect", self._protect)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/protect"
        return self

    async def __aexit__(self, *exc: object) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def accepted(self, action: str | None = None) -> list[Received]:
        return [
            r
            for r in self.received
            if r.status == 200 and (action is None or r.json["action"] == action)
        ]

    async def wait_for(self, action: str, timeout: float = 20) -> Received:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.accepted(action):
            assert asyncio.get_running_loop().time() < deadline, (
                f"no {action} request accepted: {[(r.status, r.refused) for r in self.received]}"
            )
            await asyncio.sleep(0.05)
        [found] = self.accepted(action)
        return found

    async def _protect(self, request: web.Request) -> web.Response:
        body = await request.read()
        received = Received(dict(request.headers), body)
        self.received.append(received)
        try:
            verify(self.secret, request.headers.get(HEADER, ""), body, seen=self.seen)
        except SignatureError as exc:
            received.status, received.refused = 401, str(exc)
            return web.json_response({"error": str(exc)}, status=401)
        if self.fail_next:
            self.fail_next -= 1
            received.status = 503
            return web.json_response({"error": "try again"}, status=503)
        key = request.headers.get("Idempotency-Key", "")
        if key not in self.done:
            action = json.loads(body)["action"]
            self.done[key] = {
                "decision": {"freeze": "held", "confirm": "frozen", "lift": "released"}[action],
                "reference": f"W-{len(self.done) + 1}",
            }
        received.status = 200
        return web.json_response(self.done[key])
