"""Intake: the gateway's one way into Kafka. Redact, pick the lane (and classify, where the
dispatcher does not have a classifier stage before it), keep it in the intake journal (when there
is one), produce with acks=all; a yes to the customer only after both."""

from __future__ import annotations

import structlog

from router.bus.kafka import KafkaBus
from router.classify.redact_fields import masked_fields
from router.core.envelope import Classification, Envelope, Lane
from router.observability.metrics import CLASSIFIED, RECEIVED
from router.policy.rules import Rules
from router.store.journal import IntakeJournal

log = structlog.get_logger("router.services.intake")


class Intake:
    def __init__(
        self,
        bus: KafkaBus,
        rules: Rules,
        journal: IntakeJournal | None = None,
        *,
        classifies: bool = False,
    ):
        self.bus, self.rules, self.journal = bus, rules, journal
        # No classifier stage (SUPPORTROUTER_CLASSIFY_IN): each message is classified here, once,
        # and its lane is urgent when the pre-screen or the classification says so.
        self.classifies = classifies
        # Accepted by this process and not yet known to be stored: what a stop waits for.
        self.unconfirmed: set[str] = set()

    async def publish(self, envelope: Envelope) -> Envelope:
        """Return once Kafka acknowledged the redacted envelope; raise if it did not."""
        masked = masked_fields(envelope)  # text, subject, names, file names, thread values
        kinds = masked["redactions"]
        screened = self._screened(envelope, masked) if self.classifies else None
        if screened is not None:
            lane, classification = screened
        else:
            lane = self.rules.lane(f"{masked['subject'] or ''}\n{masked['text']}")
            classification = None
        clean = envelope.model_copy(
            update={**masked, "lane": lane, "classification": classification}
        )
        topic = (
            self.bus.topics.inbound_urgent
            if lane is Lane.URGENT
            else self.bus.topics.inbound_standard
        )
        value = clean.to_bytes()
        if self.journal is not None:
            await self.journal.append(clean.message_id, topic, clean.kafka_key, value)
        try:
            await self.bus.publish(topic, value, key=clean.kafka_key)
        except Exception:
            if self.journal is not None:  # kept: the relay publishes it once Kafka takes it
                await self.journal.due_now([clean.message_id])
            raise
        self.unconfirmed.add(clean.message_id)
        RECEIVED.labels(channel=clean.channel, lane=lane).inc()
        classified: dict[str, object] = {}
        if clean.classification is not None:
            c = clean.classification
            CLASSIFIED.labels(category=c.category, urgency=c.urgency).inc()
            classified = {"category": c.category, "urgency": c.urgency}
        log.info(
            "message.received",
            trace_id=clean.trace_id,
            received_at=clean.received_at.isoformat(),
            conversation_key=clean.conversation_key,
            channel=clean.channel,
            lane=lane,
            redactions=kinds,
            chars=len(clean.text),
            attachments=len(clean.attachments),
            **classified,
        )
        return clean

    def _screened(self, envelope: Envelope, masked: dict) -> tuple[Lane, Classification] | None:
        """The lane and the classification of the masked text; None if classifying failed (the
        message goes on unclassified: the dispatcher classifies it, or dead-letters it)."""
        try:
            return self.rules.screen(masked["text"], envelope.channel, masked["subject"])
        except Exception:
            log.exception("message.not_classified", trace_id=envelope.trace_id)
            return None
