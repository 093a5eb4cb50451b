"""DispatcherService: support.classified → a routing decision, a place in a queue, an
acknowledgement, an agent; and the timers (ladder steps, SLA breaches, silent agents). Without a
classifier stage (SUPPORTROUTER_CLASSIFY_IN), it reads the inbound lanes too, where the gateway
classified each message as it took it (one Kafka hop fewer); one that arrives unclassified (the
gateway's classification failed, or a replay of an older record) is classified here.

At least once, idempotent: the message, its decision and its acknowledgement are stored in one
transaction keyed by message_id; a redelivered record finds them stored and only publishes what
had not reached Kafka yet. Records come in chunks of a partition (up to `batch_size`, 200: a
chunk's statements cost about the same for 20 messages as for 200, so a backlog drains in big
ones): one transaction and one round of lookups per chunk, the acknowledgements published
together, then the commit. The standard lane gives way to the urgent one between chunks.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog
from aiokafka import ConsumerRecord

from router.bus.consumer import ConsumerLoop, PermanentError
from router.bus.kafka import KafkaBus
from router.classify.textprep import in_script_of
from router.core.envelope import Envelope, Outbound, QueueEvent, Urgency, now
from router.core.tasks import cancel_and_wait
from router.observability.metrics import (
    CLASSIFIED,
    QUEUE_OLDEST_WAIT,
    QUEUE_WAITING,
    ROUTING_SECONDS,
    labelled,
)
from router.operator_files.config import RouterConfig
from router.policy.rules import Rules
from router.routing.replies import Replies, Wait
from router.routing.workflow import Decision, Workflow, facts_for
from router.services.assignment.availability import Snapshot
from router.services.assignment.offers import Assigner
from router.services.cases import CaseKeeper
from router.services.classifier import classified, read_envelope
from router.services.groups import dispatcher_topics
from router.services.outbound_relay import OutboundRelay
from router.services.sla import Calendar, Clock, SlaMonitor, SystemClock, calendar_for, placement
from router.store.conversations import ConversationStore
from router.store.inbound import Inbound, Recorded

log = structlog.get_logger("router.services.dispatcher")
GAUGE_SECONDS = 5.0  # how often the queue gauges are measured


class DispatcherService:
    def __init__(
        self,
        bus: KafkaBus,
        store: ConversationStore,
        rules: Rules,
        relay_interval: float = 5.0,
        *,
        clock: Clock | None = None,
        timer_interval: float = 1.0,
        batch_size: int = 200,
        classifies: bool = False,
    ):
        self.bus, self.store, self.rules = bus, store, rules
        self.classifies = classifies  # no classifier stage: unclassified envelopes come here
        self.clock = clock or SystemClock()
        self.relay = OutboundRelay(bus, store)
        self.relay_interval, self.timer_interval = relay_interval, timer_interval
        self.assigner = Assigner(store, rules, self.clock, publish=self.publish_event)
        self.sla = SlaMonitor(
            store, rules, self.clock, self.publish_event, availability=self.assigner.availability
        )
        self.cases = CaseKeeper(
            store,
            rules,
            protect_configured=bool(bus.settings.protect_url and bus.settings.protect_secret),
        )
        group = f"{bus.settings.consumer_group_prefix}-dispatcher"
        # Two lanes here too: standard records wait whenever urgent ones are in hand.
        # Each fetched partition is handled in chunks, one store transaction each.
        urgent_topics, standard_topics = dispatcher_topics(bus.topics, classifies)
        self.urgent_loop = ConsumerLoop(
            bus,
            urgent_topics,
            f"{group}-urgent",
            self.handle,
            "dispatch-urgent",
            batch_handler=self.handle_batch,
            chunk=batch_size,
        )
        self.loop = ConsumerLoop(
            bus,
            standard_topics,
            group,
            self.handle,
            "dispatch",
            yield_to=self.urgent_loop,
            batch_handler=self.handle_batch,
            chunk=batch_size,
        )
        self._tasks: list[asyncio.Task] = []
        self.rounds_started = self.rounds_done = 0  # timer rounds: what tests count, not seconds

    async def start(self) -> None:
        await asyncio.gather(self.urgent_loop.start(), self.loop.start())
        self._tasks = [
            asyncio.create_task(
                self._every(self.relay_interval, self._relay_round), name="dispatch:relay"
            ),
            asyncio.create_task(
                self._every(self.timer_interval, self.tick), name="dispatch:timers"
            ),
            asyncio.create_task(
                self._every(GAUGE_SECONDS, self.measure_queues), name="dispatch:gauges"
            ),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        await self.loop.stop()
        await self.urgent_loop.stop()

    async def _every(self, interval: float, work) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await work()
            except Exception as exc:  # Kafka or the database is away: try again next round
                log.warning("dispatch.round_failed", work=work.__name__, error=repr(exc)[:300])

    async def measure_queues(self) -> None:
        """Queue depth and oldest wait per queue, for /metrics (every queue, 0 when empty)."""
        summaries = await self.store.queue_summaries()
        for queue in {*self.rules.config.routing.queues, *summaries}:
            summary = summaries.get(queue, {})
            QUEUE_WAITING.labels(queue).set(summary.get("waiting", 0))
            QUEUE_OLDEST_WAIT.labels(queue).set(summary.get("oldest_wait_seconds") or 0)

    async def _relay_round(self) -> None:
        await self.relay.flush(older_than=self.relay_interval)

    async def tick(self) -> None:
        """One round of the timers: ladders and SLAs, silent agents, then offers to agents (so a
        lapsed offer reaches the next agent in the round that took it back)."""
        self.rounds_started += 1
        try:
            await self.sla.sweep()
            await self.assigner.reassign_timed_out()
            await self.assigner.assign_waiting()
        finally:
            self.rounds_done += 1

    async def publish_event(self, event: QueueEvent) -> None:
        await self.bus.publish(
            self.bus.topics.events, event.to_bytes(), key=event.conversation_id.encode()
        )

    # --- classified messages ----------------------------------------------------------------

    async def handle(self, record: ConsumerRecord) -> None:
        """One record: the batch of one (what a chunk falls back to, record by record)."""
        await self.handle_batch([record])

    async def handle_batch(self, records: list[ConsumerRecord]) -> None:
        """Route, store and acknowledge a partition's records, in order, as one.

        Every lookup is made once for the batch (customers, last agents, availability, queue
        lengths); the messages, their decisions and acknowledgements go to the store in one
        transaction, idempotent by message_id; the replies still unpublished in these
        conversations (the new ones, or the ones a crash left behind) are then published
        together, and only after that does the consumer commit. A record that does not parse
        fails the batch, which the consumer loop then hands here again one record at a time.
        """
        received = [read_envelope(record) for record in records]
        envelopes = [
            self._classified(envelope, record.topic)
            for envelope, record in zip(received, records, strict=True)
        ]
        config = self.rules.config  # one version of the rules for the whole batch
        window = config.routing.assignment.return_to_last_agent_seconds
        # Side by side: on PostgreSQL three round trips in the time of one (on SQLite, made on
        # this loop, they run one after the other all the same).
        snapshot, customers, previous = await asyncio.gather(
            self.assigner.snapshot(),
            self.store.customer_attributes_many([e.sender.address for e in envelopes]),
            self._last_agents(envelopes, window),
        )
        batch = _Batch(config, snapshot, self.clock.now())
        # Each conversation joins its case as it is stored: offered, it goes to the case's owner.
        on_stored, placed, ahead = await self.cases.placing(envelopes)
        items = []
        for envelope in envelopes:
            customer = dict(customers.get(envelope.sender.address, {}))
            customer.setdefault("returning", envelope.conversation_key in previous)
            items.append(self._inbound(envelope, customer, batch, ahead.get(envelope.message_id)))
        recorded = await self.store.record_inbound_many(items, on_stored)
        await self.cases.protect(envelopes, recorded, placed)
        events = [
            QueueEvent(
                type="conversation.queued",
                conversation_id=done.conversation["id"],
                queue=done.conversation["queue"],
                urgency=done.conversation["urgency"],
                status=done.conversation["status"],
            )
            for done in recorded
            if done.requeued and not done.duplicate
        ]
        # The replies and the queue events side by side: two acks=all round trips in the time
        # of one. Both are done before the consumer commits; a failure of either fails the
        # chunk, which is handled again (an event twice is harmless: it tells views to look).
        publishes = [self._publish_replies(recorded, batch.acknowledgements)]
        if events:
            publishes.append(
                self.bus.publish_many(
                    self.bus.topics.events,
                    ((e.conversation_id.encode(), e.to_bytes()) for e in events),
                )
            )
        await asyncio.gather(*publishes)
        for before, envelope, item, done in zip(received, envelopes, items, recorded, strict=True):
            if done.duplicate:
                log.info(
                    "message.duplicate", trace_id=envelope.trace_id, message_id=envelope.message_id
                )
                continue
            c = envelope.classification
            assert c is not None
            if before.classification is None:  # classified here, not by the gateway or a stage
                labelled(CLASSIFIED, c.category, c.urgency).inc()
            conversation = done.conversation
            ROUTING_SECONDS.observe((now() - envelope.received_at).total_seconds())
            decision = item.decision or {}
            log.info(
                "conversation.queued" if done.requeued else "conversation.updated",
                trace_id=envelope.trace_id,
                conversation_key=envelope.conversation_key,
                conversation_id=conversation["id"],
                queue=conversation["queue"],
                category=c.category,
                confidence=c.confidence,
                urgency=conversation["urgency"],
                rule=decision.get("rule"),
                step=decision.get("step", 0) + 1,
                priority=conversation["priority"],
                rules_version=config.version,
            )
        if events and snapshot.available:
            # With nobody available when the chunk began, there is no one to offer to: an agent
            # who becomes available meanwhile is offered the waiting ones by the API, at once,
            # or by the next timer round (a second at most), not by one more query per chunk.
            await self.assigner.assign_waiting()

    def _classified(self, envelope: Envelope, topic: str) -> Envelope:
        """The envelope, classified: by the gateway or the stage before, or else here when it
        came on an inbound lane (on support.classified a record without one is a fault)."""
        if envelope.classification is not None:
            return envelope
        inbound = (self.bus.topics.inbound_urgent, self.bus.topics.inbound_standard)
        if not (self.classifies and topic in inbound):
            raise PermanentError(f"envelope on {topic} carries no classification")
        return classified(self.rules, envelope)

    async def _last_agents(self, envelopes: list[Envelope], window: int) -> dict[str, str]:
        """Each customer's last agent within the window (none without one)."""
        if not window:
            return {}
        since = self.clock.now() - timedelta(seconds=window)
        return await self.store.last_agents([e.conversation_key for e in envelopes], since)

    async def _publish_replies(self, recorded: list[Recorded], made: list[Outbound]) -> None:
        """Publish the batch's replies still unpublished, together. A conversation this batch
        opened holds only what the batch made (its acknowledgement, as stored): published as
        it is. Every other conversation's unpublished replies are read back in order: a
        redelivered record finds its reply stored already, and publishing it makes the second
        run finish what a crash interrupted, and nothing more."""
        read_back = {r.conversation["id"] for r in recorded if r.conversation and not r.created}
        stored = (
            await self.store.unpublished(conversation_ids=sorted(read_back)) if read_back else []
        )
        await self.relay.publish_many(
            stored + [out for out in made if out.conversation_id not in read_back]
        )

    def _inbound(
        self, envelope: Envelope, customer: dict, batch: _Batch, case_id: str | None
    ) -> Inbound:
        """The routing decision for one message, and the acknowledgement to store with it;
        `case_id`: the case a conversation it opens is stored in (`CaseKeeper.placing`)."""
        c = envelope.classification
        assert c is not None
        config, at = batch.config, batch.at
        decision = batch.workflow.decide(
            facts_for(envelope, config, customer),
            available=batch.snapshot.availability(c.language, envelope.channel),
            is_open=lambda queue: batch.calendar(queue).is_open(at),
        )

        def acknowledge(conversation: dict, created: bool, requeued: bool) -> Outbound | None:
            # A later message that raises its open conversation to critical ("there is also a
            # payment I never made") is acknowledged as a new critical one: the customer hears
            # at once that the fraud team has it, with what to do meanwhile (freeze the wallet).
            raised = requeued and c.urgency == Urgency.CRITICAL
            out = _acknowledgement(conversation, created or raised)
            if out is None:
                return None
            if c.language == "zh":
                out = out.model_copy(update={"text": in_script_of(out.text, envelope.text)})
            batch.acknowledgements.append(out)
            return out

        def _acknowledgement(conversation: dict, queued: bool) -> Outbound | None:
            """`queued`: the conversation joins its queue with this message (opened, or raised
            to critical): the full acknowledgement with its wait. Otherwise only a warning when
            the message held a secret."""
            wait = None
            if queued:
                # Quoted before this conversation joins the count, then counted for the next.
                wait = batch.wait(
                    decision, c.language, envelope.channel, c.urgency == Urgency.CRITICAL, at
                )
                batch.snapshot.add_waiting(decision.queue, decision.priority, c.urgency.rank)
            if envelope.thread.get("no_auto_reply"):  # automatic, bulk or list mail: never answered
                return None
            fields = {"trace_id": envelope.trace_id, "message_id": f"ack-{envelope.message_id}"}
            if queued:
                return self.rules.acknowledgement(
                    conversation, c.language, envelope.redactions, wait=wait, **fields
                )
            if envelope.redactions:  # a follow-up with a secret in it: the warning alone
                return Outbound(
                    conversation_id=conversation["id"],
                    conversation_key=conversation["conversation_key"],
                    channel=conversation["channel"],
                    to=conversation["customer_address"],
                    kind="acknowledgement",
                    author="supportrouter",
                    text=Replies(config.templates).secret_warning(
                        conversation["channel"], c.language
                    ),
                    trace_id=fields["trace_id"],
                    message_id=fields["message_id"],
                )
            return None

        return Inbound(
            envelope,
            decision.queue,
            acknowledge,
            placement=placement(config, decision, at, batch.calendar(decision.queue)),
            decision=decision.as_dict(),
            case_id=case_id,
        )


class _Batch:
    """What one batch decides with: the rules, one workflow, the calendars, one snapshot, and
    one moment (its timers start then): what each message's decision asks of a queue's
    calendar is then the same for the whole batch, and worked out once (`Calendar` keeps its
    last answer)."""

    def __init__(self, config: RouterConfig, snapshot: Snapshot, at: datetime):
        self.config, self.snapshot, self.at = config, snapshot, at
        self.workflow = Workflow(config)
        self._calendars: dict[str, Calendar] = {}
        self.acknowledgements: list[Outbound] = []  # as the store's transaction stored them

    def calendar(self, queue: str) -> Calendar:
        if queue not in self._calendars:
            self._calendars[queue] = calendar_for(self.config, queue)
        return self._calendars[queue]

    def wait(
        self, decision: Decision, language: str, channel: str, critical: bool, at: datetime
    ) -> Wait:
        """The wait to quote: minutes, or when a closed queue opens."""
        calendar = self.calendar(decision.queue)
        if not calendar.is_open(at):
            zone = calendar.hours.timezone if calendar.hours else "UTC"
            return Wait(opens=calendar.next_open(at), timezone=zone, now=at)
        if not self.snapshot.staffed(decision.queue, language, channel):
            # Nobody who could take it is here: say when someone will be, never "taking it now".
            shift = self.snapshot.next_shift(decision.queue, language, channel, at)
            if shift is None:
                return Wait(staffed=False)
            return Wait(opens=shift[0], timezone=shift[1], now=at, staffed=False)
        return Wait(
            seconds=self.snapshot.expected_wait_seconds(
                decision.queue,
                language,
                channel,
                decision.priority,
                critical,
            )
        )
