"""Intake: the gateway's one way into Kafka. Redact, pick the lane (and classify, where the
dispatcher does not have a classifier stage before it), keep it in the intake journal (when there
is one), produce with acks=all; a yes to the customer only after both.

The messages taken in one turn of the event loop are redacted, classified and encoded together,
one after another: the turn's first at once, in its own request, and the others at the start of
the next turn. One at a time, between the HTTP parsing, the signature checks and the Kafka
client's work of every other request, a classification cost the gateway about twice its CPU in
a loop: the model's rows, the patterns and the classifier's code were no longer in the
processor's caches. In a burst a turn brings about fifteen messages; a message alone in its turn
(nearly every one at a steady rate) is prepared at once, and waits for nothing more than before.
"""

from __future__ import annotations

import asyncio

import structlog

from router.bus.kafka import KafkaBus
from router.classify.redact_fields import masked_fields
from router.core.envelope import Classification, Envelope, Lane
from router.observability.metrics import CLASSIFIED, RECEIVED, labelled
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
        # The rest of this turn's messages, prepared at the next turn; None: none taken yet.
        self._turn: list[tuple[Envelope, asyncio.Future]] | None = None
        self.prepared = 0  # messages prepared here, and in how many turns (as the journal
        self.turns = 0  # counts its writes and commits): how well they are grouped

    async def publish(self, envelope: Envelope) -> Envelope:
        """Return once Kafka acknowledged the redacted envelope; raise if it did not."""
        if self._turn is None:  # the first of this turn: at once
            self._open_turn()
            self.prepared += 1
            clean, value = self._prepared(envelope)
        else:
            clean, value = await self._prepared_in_turn(envelope, self._turn)
        lane = clean.lane
        topic = (
            self.bus.topics.inbound_urgent
            if lane is Lane.URGENT
            else self.bus.topics.inbound_standard
        )
        if self.journal is not None:
            await self.journal.append(clean.message_id, topic, clean.kafka_key, value)
        try:
            await self.bus.publish(topic, value, key=clean.kafka_key)
        except Exception:
            if self.journal is not None:  # kept: the relay publishes it once Kafka takes it
                await self.journal.due_now([clean.message_id])
            raise
        self.unconfirmed.add(clean.message_id)
        labelled(RECEIVED, clean.channel, lane).inc()
        classified: dict[str, object] = {}
        if clean.classification is not None:
            c = clean.classification
            labelled(CLASSIFIED, c.category, c.urgency).inc()
            classified = {"category": c.category, "urgency": c.urgency}
        log.info(
            "message.received",
            trace_id=clean.trace_id,
            received_at=clean.received_at.isoformat(),
            conversation_key=clean.conversation_key,
            channel=clean.channel,
            lane=lane,
            redactions=clean.redactions,
            chars=len(clean.text),
            attachments=len(clean.attachments),
            **classified,
        )
        return clean

    def _open_turn(self) -> None:
        self._turn = []
        self.turns += 1
        asyncio.get_running_loop().call_soon(self._prepare_turn)

    def _prepared_in_turn(
        self, envelope: Envelope, turn: list[tuple[Envelope, asyncio.Future]]
    ) -> asyncio.Future[tuple[Envelope, bytes]]:
        """`_prepared`, made with the rest of this turn's messages at the next turn."""
        future = asyncio.get_running_loop().create_future()
        turn.append((envelope, future))
        return future

    def _prepare_turn(self) -> None:
        turn, self._turn = self._turn or [], None
        for envelope, future in turn:
            if future.cancelled():  # a request given up (the gateway stopping) needs nothing
                continue
            try:
                future.set_result(self._prepared(envelope))
            except Exception as exc:  # raised in this message's request alone, as before
                future.set_exception(exc)
            self.prepared += 1

    def _prepared(self, envelope: Envelope) -> tuple[Envelope, bytes]:
        """The envelope as it goes to Kafka, and its bytes: redacted, on its lane, classified
        where this gateway classifies."""
        masked = masked_fields(envelope)  # text, subject, names, file names, thread values
        screened = self._screened(envelope, masked) if self.classifies else None
        if screened is not None:
            lane, classification = screened
        else:
            lane = self.rules.lane(f"{masked['subject'] or ''}\n{masked['text']}")
            classification = None
        clean = envelope.model_copy(
            update={**masked, "lane": lane, "classification": classification}
        )
        return clean, clean.to_bytes()

    def _screened(self, envelope: Envelope, masked: dict) -> tuple[Lane, Classification] | None:
        """The lane and the classification of the masked text; None if classifying failed (the
        message goes on unclassified: the dispatcher classifies it, or dead-letters it)."""
        try:
            return self.rules.screen(masked["text"], envelope.channel, masked["subject"])
        except Exception:
            log.exception("message.not_classified", trace_id=envelope.trace_id)
            return None
