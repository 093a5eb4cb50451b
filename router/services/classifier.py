"""ClassifierService: both inbound lanes → support.classified; the urgent lane always first.

It runs when SUPPORTROUTER_CLASSIFY_IN says so (a Kafka cluster, by default); otherwise the
gateway classifies each message as it takes it (router/services/intake.py), and the dispatcher,
with `classified` below, whatever still arrives unclassified."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from router.bus.consumer import ConsumerLoop, PermanentError
from router.bus.kafka import KafkaBus
from router.core.envelope import Envelope, Lane
from router.observability.metrics import CLASSIFIED
from router.policy.rules import Rules, lane_after

log = structlog.get_logger("router.classify.classifier")


class ClassifierService:
    """Each message is classified on its own; a chunk of a partition is published with one
    `publish_many` per topic (one round trip) before its offsets are committed. The standard
    lane gives way to the urgent one between chunks."""

    def __init__(self, bus: KafkaBus, rules: Rules, *, batch_size: int = 50):
        self.bus, self.rules = bus, rules
        topics, group = bus.topics, f"{bus.settings.consumer_group_prefix}-classifier"
        self.urgent = ConsumerLoop(
            bus,
            [topics.inbound_urgent],
            f"{group}-urgent",
            self.handle,
            "classify-urgent",
            batch_handler=self.handle_batch,
            chunk=batch_size,
        )
        self.standard = ConsumerLoop(
            bus,
            [topics.inbound_standard],
            f"{group}-standard",
            self.handle,
            "classify-standard",
            yield_to=self.urgent,
            batch_handler=self.handle_batch,
            chunk=batch_size,
        )

    async def start(self) -> None:
        await asyncio.gather(self.urgent.start(), self.standard.start())

    async def stop(self) -> None:
        await self.standard.stop()
        await self.urgent.stop()

    async def handle(self, record: ConsumerRecord) -> None:
        """One record: the chunk of one (what a failed chunk falls back to, with retries)."""
        await self.handle_batch([record])

    async def handle_batch(self, records: list[ConsumerRecord]) -> None:
        """Classify each record, then publish them all, in order, and wait for every ack.

        A record that does not parse fails the chunk before anything is published; a failed
        publish may leave some of the chunk on Kafka, which the record-by-record retry then
        publishes again: the dispatcher dedupes by message_id."""
        classified = [self._classify(record) for record in records]
        by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
        for topic, envelope in classified:
            by_topic.setdefault(topic, []).append((envelope.kafka_key, envelope.to_bytes()))
        await asyncio.gather(
            *(self.bus.publish_many(topic, items) for topic, items in by_topic.items())
        )
        for _, envelope in classified:
            classification = envelope.classification
            assert classification is not None
            CLASSIFIED.labels(
                category=classification.category, urgency=classification.urgency
            ).inc()
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

    def _classify(self, record: ConsumerRecord) -> tuple[str, Envelope]:
        """The classified envelope and the topic it goes to."""
        envelope = classified(self.rules, read_envelope(record))
        assert envelope.classification is not None
        # An urgent-lane message, or one the classifier found critical, keeps its lead past this
        # stage: the dispatcher drains the urgent topic first.
        urgent = lane_after(envelope.lane, envelope.classification) is Lane.URGENT
        topic = self.bus.topics.classified_urgent if urgent else self.bus.topics.classified
        return topic, envelope


def read_envelope(record: ConsumerRecord) -> Envelope:
    """The record's envelope; one that does not parse is never retried (the DLQ takes it)."""
    try:
        return Envelope.from_bytes(record.value)
    except ValidationError as exc:
        raise PermanentError(f"not an envelope: {exc.error_count()} problems") from exc


def classified(rules: Rules, envelope: Envelope) -> Envelope:
    """The envelope with the rules' classification of its (redacted) text."""
    classification = rules.classify(
        envelope.text, channel=envelope.channel, subject=envelope.subject
    )
    return envelope.model_copy(update={"classification": classification})
