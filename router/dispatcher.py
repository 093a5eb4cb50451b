"""DispatcherService: support.classified → a place in a queue, an acknowledgement, a queue event."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from router.bus import ConsumerLoop, KafkaBus, PermanentError
from router.envelope import Envelope, Outbound, QueueEvent, now
from router.metrics import ROUTING_SECONDS
from router.rules import Rules
from router.store import ConversationStore

log = structlog.get_logger("router.dispatcher")


class OutboundRelay:
    """Publishes stored replies that have not reached Kafka yet; each is marked once acked."""

    def __init__(self, bus: KafkaBus, store: ConversationStore):
        self.bus, self.store = bus, store

    async def publish(self, out: Outbound) -> None:
        await self.bus.publish(self.bus.topics.outbound, out.to_bytes(), key=out.conversation_key.encode())
        await self.store.mark_published(out.message_id)
        log.info("reply.published", trace_id=out.trace_id, conversation_id=out.conversation_id,
                 channel=out.channel, kind=out.kind)

    async def flush(self, conversation_id: str | None = None, older_than: float = 0) -> None:
        for out in await self.store.unpublished(conversation_id, older_than):
            await self.publish(out)


class DispatcherService:
    def __init__(self, bus: KafkaBus, store: ConversationStore, rules: Rules, relay_interval: float = 5.0):
        self.bus, self.store, self.rules = bus, store, rules
        self.relay = OutboundRelay(bus, store)
        self.relay_interval = relay_interval
        group = f"{bus.settings.consumer_group_prefix}-dispatcher"
        self.loop = ConsumerLoop(bus, [bus.topics.classified], group, self.handle, "dispatch")
        self._relay_task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.loop.start()
        self._relay_task = asyncio.create_task(self._relay_forever(), name="dispatch:relay")

    async def stop(self) -> None:
        task, self._relay_task = self._relay_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.loop.stop()

    async def _relay_forever(self) -> None:
        while True:
            await asyncio.sleep(self.relay_interval)
            try:
                await self.relay.flush(older_than=self.relay_interval)
            except Exception as exc:  # Kafka or the database is away: try again next round
                log.warning("reply.relay_failed", error=repr(exc)[:300])

    async def handle(self, record: ConsumerRecord) -> None:
        try:
            envelope = Envelope.from_bytes(record.value)
        except ValidationError as exc:
            raise PermanentError(f"not an envelope: {exc.error_count()} problems") from exc
        if envelope.classification is None:
            raise PermanentError("envelope on support.classified carries no classification")
        c = envelope.classification
        queue = self.rules.config.queue_for(c.category)

        def acknowledge(conversation: dict, created: bool) -> Outbound | None:
            if not created and not envelope.redactions:
                return None
            # A channel marks what must never be answered automatically (auto-replies, bulk
            # and list mail, bounces): answering those is how mail loops start.
            if envelope.thread.get("no_auto_reply") == "1":
                return None
            return self.rules.acknowledgement(
                conversation, c.language, envelope.redactions,
                trace_id=envelope.trace_id, message_id=f"ack-{envelope.message_id}",
            )

        recorded = await self.store.record_inbound(envelope, queue, acknowledge)
        conversation = recorded.conversation
        # A redelivered record finds its reply already stored: publishing what is still
        # unpublished makes the second run finish what a crash interrupted, and nothing more.
        await self.relay.flush(conversation["id"])
        if recorded.duplicate:
            log.info("message.duplicate", trace_id=envelope.trace_id, message_id=envelope.message_id)
            return
        if recorded.requeued:
            event = QueueEvent(
                type="conversation.queued", conversation_id=conversation["id"], queue=conversation["queue"],
                urgency=conversation["urgency"], status=conversation["status"],
            )
            await self.bus.publish(self.bus.topics.events, event.to_bytes(), key=conversation["id"].encode())
        ROUTING_SECONDS.observe((now() - envelope.received_at).total_seconds())
        log.info(
            "conversation.queued" if recorded.requeued else "conversation.updated",
            trace_id=envelope.trace_id, conversation_key=envelope.conversation_key,
            conversation_id=conversation["id"], queue=conversation["queue"],
            urgency=conversation["urgency"], rules_version=c.rules_version,
        )
