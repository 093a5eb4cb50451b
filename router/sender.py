"""SenderService: support.outbound → each channel's sender, or the sandbox outbox without one."""

from __future__ import annotations

import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from channels.base import DeliveryFailed, OutboundSender
from router.bus import ConsumerLoop, KafkaBus, PermanentError
from router.envelope import Outbound
from router.metrics import DELIVERED
from router.store import ConversationStore

log = structlog.get_logger("router.sender")


class SenderService:
    """`senders` maps a channel to what delivers on it; `socket_channels` are delivered by the
    gateway that holds the customer's socket, so the sender leaves them alone."""

    def __init__(
        self,
        bus: KafkaBus,
        store: ConversationStore,
        senders: dict[str, OutboundSender],
        socket_channels: frozenset[str] = frozenset({"chat"}),
    ):
        self.bus, self.store, self.senders, self.socket_channels = bus, store, senders, socket_channels
        group = f"{bus.settings.consumer_group_prefix}-sender"
        self.loop = ConsumerLoop(
            bus, [bus.topics.outbound], group, self.handle, "send", on_dead_letter=self._mark_failed
        )

    def _lifecycled(self) -> list:
        """Senders with their own connections (a pool, a bot) to open and close; each once."""
        unique = {id(s): s for s in self.senders.values()}.values()
        return [s for s in unique if hasattr(s, "start") and hasattr(s, "stop")]

    async def start(self) -> None:
        for sender in self._lifecycled():
            try:
                await sender.start()
            except Exception as exc:  # a provider away at start: each send tries again
                log.warning("sender.start_failed", sender=type(sender).__name__, error=repr(exc)[:300])
        await self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
        for sender in reversed(self._lifecycled()):
            try:
                await sender.stop()
            except Exception as exc:  # the others must still close
                log.warning("sender.stop_failed", sender=type(sender).__name__, error=repr(exc)[:300])

    async def handle(self, record: ConsumerRecord) -> None:
        try:
            out = Outbound.from_bytes(record.value)
        except ValidationError as exc:
            raise PermanentError(f"not an outbound message: {exc.error_count()} problems") from exc
        if out.channel in self.socket_channels:
            return
        sender = self.senders.get(out.channel)
        if sender is None:
            if await self.store.record_sandbox_delivery(out):
                await self.store.set_delivery_status(out.message_id, "sandboxed")
                DELIVERED.labels(channel=out.channel, mode="sandbox").inc()
                log.info("reply.sandboxed", trace_id=out.trace_id, channel=out.channel,
                         conversation_id=out.conversation_id)
            return
        try:
            await sender.send(out)
        except DeliveryFailed as exc:
            raise PermanentError(str(exc)) from exc
        DELIVERED.labels(channel=out.channel, mode="provider").inc()
        log.info("reply.sent", trace_id=out.trace_id, channel=out.channel, conversation_id=out.conversation_id)

    async def _mark_failed(self, record: ConsumerRecord, error: BaseException) -> None:
        """A reply that could not be delivered shows as failed on its conversation."""
        try:
            out = Outbound.from_bytes(record.value)
        except ValidationError:
            return
        await self.store.set_delivery_status(out.message_id, "failed", detail=str(error))
