"""DispatcherService: support.classified → a routing decision, a place in a queue, an
acknowledgement, an agent; and the timers (ladder steps, SLA breaches, silent agents).

At least once, idempotent: the message, its decision and its acknowledgement are stored in one
transaction keyed by message_id; a redelivered record finds them stored and only publishes what
had not reached Kafka yet.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from router.assignment import Assigner, last_agent
from router.bus import ConsumerLoop, KafkaBus, PermanentError
from router.config import RouterConfig
from router.envelope import Envelope, Outbound, QueueEvent, Urgency, now
from router.metrics import ROUTING_SECONDS
from router.replies import Replies, Wait
from router.routing import Decision, Workflow, facts_for
from router.rules import Rules
from router.sla import Clock, SlaMonitor, SystemClock, calendar_for, placement
from router.store import ConversationStore
from router.tasks import cancel_and_wait

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
    def __init__(
        self,
        bus: KafkaBus,
        store: ConversationStore,
        rules: Rules,
        relay_interval: float = 5.0,
        *,
        clock: Clock | None = None,
        timer_interval: float = 1.0,
    ):
        self.bus, self.store, self.rules = bus, store, rules
        self.clock = clock or SystemClock()
        self.relay = OutboundRelay(bus, store)
        self.relay_interval, self.timer_interval = relay_interval, timer_interval
        self.assigner = Assigner(store, rules, self.clock, publish=self.publish_event)
        self.sla = SlaMonitor(store, rules, self.clock, self.publish_event, availability=self.assigner.availability)
        group = f"{bus.settings.consumer_group_prefix}-dispatcher"
        # Two lanes here too: standard records wait whenever urgent ones are in hand.
        self.urgent_loop = ConsumerLoop(bus, [bus.classified_urgent], f"{group}-urgent", self.handle, "dispatch-urgent")
        self.loop = ConsumerLoop(
            bus, [bus.topics.classified], group, self.handle, "dispatch", yield_to=self.urgent_loop
        )
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        await asyncio.gather(self.urgent_loop.start(), self.loop.start())
        self._tasks = [
            asyncio.create_task(self._every(self.relay_interval, self._relay_round), name="dispatch:relay"),
            asyncio.create_task(self._every(self.timer_interval, self.tick), name="dispatch:timers"),
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

    async def _relay_round(self) -> None:
        await self.relay.flush(older_than=self.relay_interval)

    async def tick(self) -> None:
        """One round of the timers: ladders and SLAs, silent agents, then offers to agents."""
        await self.sla.sweep()
        await self.assigner.reassign_timed_out()
        await self.assigner.assign_waiting()

    async def publish_event(self, event: QueueEvent) -> None:
        await self.bus.publish(self.bus.topics.events, event.to_bytes(), key=event.conversation_id.encode())

    # --- one classified message ----------------------------------------------------------------

    async def decide(self, envelope: Envelope, config: RouterConfig) -> tuple[Decision, dict, Wait]:
        """The routing decision for a message, the columns that record it, and the wait to quote."""
        c = envelope.classification
        assert c is not None
        at = self.clock.now()
        window = config.routing.assignment.return_to_last_agent_seconds
        customer = await self.store.customer_attributes(envelope.sender.address)
        previous = await last_agent(self.store, envelope.conversation_key, at - timedelta(seconds=window)) if window else None
        customer.setdefault("returning", previous is not None)
        available = await self.assigner.availability(c.language, envelope.channel)
        decision = Workflow(config).decide(
            facts_for(envelope, config, customer),
            available=available,
            is_open=lambda queue: calendar_for(config, queue).is_open(at),
        )
        columns = placement(config, decision, at)
        calendar = calendar_for(config, decision.queue)
        if not calendar.is_open(at):
            wait = Wait(opens=calendar.describe(calendar.next_open(at), at))
        else:
            wait = Wait(seconds=await self.assigner.expected_wait_seconds(
                decision.queue, c.language, envelope.channel, decision.priority, c.urgency == Urgency.CRITICAL,
            ))
        return decision, columns, wait

    async def handle(self, record: ConsumerRecord) -> None:
        try:
            envelope = Envelope.from_bytes(record.value)
        except ValidationError as exc:
            raise PermanentError(f"not an envelope: {exc.error_count()} problems") from exc
        if envelope.classification is None:
            raise PermanentError("envelope on support.classified carries no classification")
        c = envelope.classification
        config = self.rules.config  # one version of the rules for the whole decision
        decision, columns, wait = await self.decide(envelope, config)

        def acknowledge(conversation: dict, created: bool) -> Outbound | None:
            if envelope.thread.get("no_auto_reply"):  # automatic, bulk or list mail: never answered
                return None
            fields = {"trace_id": envelope.trace_id, "message_id": f"ack-{envelope.message_id}"}
            if created:
                return self.rules.acknowledgement(conversation, c.language, envelope.redactions, wait=wait, **fields)
            if envelope.redactions:  # a follow-up with a secret in it: the warning alone
                return Outbound(
                    conversation_id=conversation["id"], conversation_key=conversation["conversation_key"],
                    channel=conversation["channel"], to=conversation["customer_address"],
                    kind="acknowledgement", author="supportrouter",
                    text=Replies(config.templates).secret_warning(conversation["channel"], c.language), **fields,
                )
            return None

        recorded = await self.store.record_inbound(
            envelope, decision.queue, acknowledge, placement=columns, decision=decision.as_dict()
        )
        conversation = recorded.conversation
        # A redelivered record finds its reply already stored: publishing what is still
        # unpublished makes the second run finish what a crash interrupted, and nothing more.
        await self.relay.flush(conversation["id"])
        if recorded.duplicate:
            log.info("message.duplicate", trace_id=envelope.trace_id, message_id=envelope.message_id)
            return
        if recorded.requeued:
            await self.publish_event(QueueEvent(
                type="conversation.queued", conversation_id=conversation["id"], queue=conversation["queue"],
                urgency=conversation["urgency"], status=conversation["status"],
            ))
        ROUTING_SECONDS.observe((now() - envelope.received_at).total_seconds())
        log.info(
            "conversation.queued" if recorded.requeued else "conversation.updated",
            trace_id=envelope.trace_id, conversation_key=envelope.conversation_key,
            conversation_id=conversation["id"], queue=conversation["queue"], urgency=conversation["urgency"],
            rule=decision.rule, step=decision.step + 1, priority=conversation["priority"],
            rules_version=config.version,
        )
        if recorded.requeued:
            await self.assigner.assign_waiting()
