"""The small protocol every channel adapter implements. Imports nothing concrete."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aiohttp import web

from router.core.envelope import Envelope, Outbound

if TYPE_CHECKING:  # only for annotations: this module stays free of concrete imports
    from router.bus.kafka import KafkaBus
    from router.core.settings import Settings
    from router.store.conversations import ConversationStore

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


class DeliveryFailed(Exception):
    """A provider refused a reply for good (a bad number, a blocked chat): no retry helps."""


@dataclass
class ChannelContext:
    """What a channel's `build` gets: dependencies passed in, never an app to reach into."""

    settings: Settings
    store: ConversationStore
    bus: KafkaBus
    publish: Publish  # the gateway's intake; only the gateway role calls it
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChannelParts:
    """An inbound adapter for the gateway, and the senders for the sender service, keyed by
    channel name ("sms", "whatsapp", ...). A channel without credentials returns no sender and
    its replies go to the sandbox outbox."""

    adapter: ChannelAdapter | None = None
    senders: dict[str, OutboundSender] = field(default_factory=dict)
