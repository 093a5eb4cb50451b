"""ClassifierService: both inbound lanes → support.classified; the urgent lane always first."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from router.bus import ConsumerLoop, KafkaBus, PermanentError
from router.envelope import Envelope, Lane, Urgency
from router.metrics import CLASSIFIED
from router.rules import Rules

log = structlog.get_logger("router.classifier")


class ClassifierService:
    def __init__(self, bus: KafkaBus, rules: Rules):
        self.bus, self.rules = bus, rules
        topics, group = bus.topics, f"{bus.settings.consumer_group_prefix}-classifier"
        self.urgent = ConsumerLoop(bus, [topics.inbound_urgent], f"{group}-urgent", self.handle, "classify-urgent")
        self.standard = ConsumerLoop(
            bus, [topics.inbound_standard], f"{group}-standard", self.handle, "classify-standard",
            yield_to=self.urgent,
        )

    async def start(self) -> None:
        await asyncio.gather(self.urgent.start(), self.standard.start())

    async def stop(self) -> None:
        await self.standard.stop()
        await self.urgent.stop()

    async def handle(self, record: ConsumerRecord) -> None:
        try:
            envelope = Envelope.from_bytes(record.value)
        except ValidationError as exc:
            raise PermanentError(f"not an envelope: {exc.error_count()} problems") from exc
        classification = self.rules.classify(envelope.text, channel=envelope.channel, subject=envelope.subject)
        classified = envelope.model_copy(update={"classification": classification})
        # An urgent-lane message, or one the classifier found critical, keeps its lead past this
        # stage: the dispatcher drains the urgent topic first.
        urgent = envelope.lane is Lane.URGENT or classification.urgency is Urgency.CRITICAL
        topic = self.bus.topics.classified_urgent if urgent else self.bus.topics.classified
        await self.bus.publish(topic, classified.to_bytes(), key=classified.kafka_key)
        CLASSIFIED.labels(category=classification.category, urgency=classification.urgency).inc()
        log.info(
            "message.classified",
            trace_id=envelope.trace_id,
            conversation_key=envelope.conversation_key,
            channel=envelope.channel,
            category=classification.category,
            urgency=classification.urgency,
            confidence=classification.confidence,
            lane=envelope.lane,
        )
