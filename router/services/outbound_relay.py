"""OutboundRelay: stored replies (acknowledgements, agents' messages) onto support.outbound.

A reply is stored first, unpublished, and published afterwards; a reply Kafka took is marked
published. Whatever a crash or a lost broker left unpublished is sent again by the next flush
(receivers dedupe by message_id). The dispatcher, the agents' API and the protect service share
it."""

from __future__ import annotations

import structlog

from router.bus.kafka import KafkaBus
from router.core.envelope import Outbound
from router.store.conversations import ConversationStore

log = structlog.get_logger("router.services.dispatcher")  # its lines keep their logger


class OutboundRelay:
    """Publishes stored replies that have not reached Kafka yet; each is marked once acked."""

    def __init__(self, bus: KafkaBus, store: ConversationStore):
        self.bus, self.store = bus, store

    async def publish(self, out: Outbound) -> None:
        await self.publish_many([out])

    async def publish_many(self, outs: list[Outbound]) -> None:
        """Send them all, wait for every acknowledgement, then mark them all published: a
        failure marks none, and the next flush sends them again (receivers dedupe by message_id)."""
        if not outs:
            return
        await self.bus.publish_many(
            self.bus.topics.outbound, ((o.conversation_key.encode(), o.to_bytes()) for o in outs)
        )
        await self.store.mark_published(*(o.message_id for o in outs))
        # At debug: a chunk's acknowledgements are in its `conversation.queued` lines already,
        # and the sender logs each reply as it goes out.
        for out in outs:
            log.debug(
                "reply.published",
                trace_id=out.trace_id,
                conversation_id=out.conversation_id,
                channel=out.channel,
                kind=out.kind,
            )

    async def flush(
        self,
        conversation_id: str | None = None,
        older_than: float = 0,
        *,
        conversation_ids: list[str] | None = None,
    ) -> None:
        left = await self.store.unpublished(
            conversation_id, older_than, conversation_ids=conversation_ids
        )
        await self.publish_many(left)
        if left:  # what a crash or a lost broker left behind: worth a line
            log.info("replies.republished", count=len(left), older_than_seconds=older_than)
