"""The small protocol every channel adapter implements. Imports nothing concrete."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from aiohttp import web

from router.envelope import Envelope, Outbound

# What a channel calls with each inbound message; it returns once Kafka acknowledged the
# record (acks=all), so a webhook may answer its provider with success only after it returns.
Publish = Callable[[Envelope], Awaitable[Envelope]]


@runtime_checkable
class ChannelAdapter(Protocol):
    name: str

    def routes(self, app: web.Application) -> None:
        """Add this channel's HTTP routes (webhooks, sockets, pages) to the gateway."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class OutboundSender(Protocol):
    async def send(self, out: Outbound) -> None:
        """Deliver one reply; raise to have it retried, then dead-lettered."""
