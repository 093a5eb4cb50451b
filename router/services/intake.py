"""Intake: the gateway's one way into Kafka. Redact, pick the lane, produce with acks=all."""

from __future__ import annotations

import structlog

from router.bus.kafka import KafkaBus
from router.classify.redact import redact
from router.core.envelope import Envelope, Lane
from router.observability.metrics import RECEIVED
from router.policy.rules import Rules

log = structlog.get_logger("router.services.intake")


class Intake:
    def __init__(self, bus: KafkaBus, rules: Rules):
        self.bus, self.rules = bus, rules

    async def publish(self, envelope: Envelope) -> Envelope:
        """Return once Kafka acknowledged the redacted envelope; raise if it did not."""
        text = redact(envelope.text)
        subject = redact(envelope.subject) if envelope.subject else None
        kinds = sorted(set(text.kinds) | set(subject.kinds if subject else []))
        lane = self.rules.lane(f"{subject.text if subject else ''}\n{text.text}")
        clean = envelope.model_copy(
            update={
                "text": text.text,
                "subject": subject.text if subject else None,
                "redactions": kinds,
                "lane": lane,
            }
        )
        topic = (
            self.bus.topics.inbound_urgent
            if lane is Lane.URGENT
            else self.bus.topics.inbound_standard
        )
        await self.bus.publish(topic, clean.to_bytes(), key=clean.kafka_key)
        RECEIVED.labels(channel=clean.channel, lane=lane).inc()
        log.info(
            "message.received",
            trace_id=clean.trace_id,
            conversation_key=clean.conversation_key,
            channel=clean.channel,
            lane=lane,
            redactions=kinds,
            chars=len(clean.text),
        )
        return clean
