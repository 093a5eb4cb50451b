"""An open websocket is only as good as the credential that opened it: closed (4401) when that
credential expires or is revoked, found at its expiry time or by a check every few seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime

import structlog
from aiohttp import web

from router.core.envelope import now

log = structlog.get_logger("router.core.socket_auth")

# 4000-4999 are the application's own close codes; 4401 reads as HTTP's 401.
CLOSE_UNAUTHORIZED = 4401
ValidUntil = Callable[[], Awaitable[datetime | None]]


class CredentialWatch:
    def __init__(self, ws: web.WebSocketResponse, valid_until: ValidUntil, check_seconds: float):
        self._ws, self._valid_until, self._check_seconds = ws, valid_until, check_seconds
        self.closing = False

    async def run(self) -> None:
        while not self._ws.closed:
            try:
                until = await self._valid_until()
            except Exception as exc:  # the store is away: keep the socket, ask again later
                log.warning("socket.credential_unchecked", error=repr(exc)[:300])
                await asyncio.sleep(self._check_seconds)
                continue
            remaining = (until - now()).total_seconds() if until else 0.0
            if remaining <= 0:
                self.closing = True
                await self._ws.close(code=CLOSE_UNAUTHORIZED, message=b"token expired or revoked")
                return
            await asyncio.sleep(min(self._check_seconds, remaining))


@asynccontextmanager
async def closed_when_invalid(
    ws: web.WebSocketResponse, valid_until: ValidUntil, check_seconds: float
) -> AsyncIterator[None]:
    """While the body runs, `ws` is closed once `valid_until()` answers None or a past time."""
    watch = CredentialWatch(ws, valid_until, check_seconds)
    task = asyncio.create_task(watch.run(), name="socket-credential-watch")
    try:
        yield
    finally:
        if not (watch.closing and not task.done()):
            task.cancel()
        with suppress(asyncio.CancelledError):
            await task  # a close under way finishes its handshake
