"""SenderService: support.outbound → each channel's sender, or the sandbox outbox without one.

Records come in chunks of a partition. The sandbox outbox keeps a chunk's replies and their
`sandboxed` statuses in one transaction. A provider still gets one call per reply, but the
conversations of a chunk are sent side by side (a few at a time), each conversation's replies
one after another in the chunk's order, which is their order on the partition.

At least once, effects once: the outbox dedupes by message_id, and a reply whose status shows
it left already (sent, sandboxed, suppressed, failed, or what the provider reported since) is
not sent again. So a chunk redelivered after a crash, or handed again record by record after a
failure, sends and stores only what had not been done.

The send intent: before each provider call the reply is marked `sending` (an attempt counted,
its time kept); the channel's sender marks it `sent` after. A call that fails puts it back to
`queued`. So a reply still `sending` when its record comes again has an unknown outcome: the
sender died during the call. A sender that can ask its provider (`lookup`, Twilio's message
list) finds it there and marks it sent, or sends it; one that cannot (Telegram, email) sends it
once more as `resending`, counted in supportrouter_replies_resent_unknown_outcome_total; a reply
found `resending` is never sent a third time: it is marked `unknown` for an agent to check.
"""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from channels.base import DeliveryFailed, OutboundSender
from router.bus.consumer import ConsumerLoop, PermanentError
from router.bus.kafka import KafkaBus
from router.core.envelope import Outbound
from router.observability.metrics import (
    DELIVERED,
    RESENT_UNKNOWN_OUTCOME,
    UNKNOWN_OUTCOME_FOUND,
    UNKNOWN_OUTCOME_GIVEN_UP,
    labelled,
)
from router.store.conversations import ConversationStore

log = structlog.get_logger("router.services.sender")

# A stored reply with one of these statuses has not reached its provider yet (None: no status).
NOT_SENT = frozenset({None, "queued"})
# A provider call was begun for it and its outcome never recorded: the sender died during it.
IN_FLIGHT = frozenset({"sending", "resending"})


class SenderService:
    """`senders` maps a channel to what delivers on it; `socket_channels` are delivered by the
    gateway that holds the customer's socket, so the sender leaves them alone. `concurrency`
    bounds the provider calls in flight per chunk."""

    def __init__(
        self,
        bus: KafkaBus,
        store: ConversationStore,
        senders: dict[str, OutboundSender],
        socket_channels: frozenset[str] = frozenset({"chat"}),
        *,
        batch_size: int = 50,
        concurrency: int = 8,
    ):
        self.bus, self.store, self.senders, self.socket_channels = (
            bus,
            store,
            senders,
            socket_channels,
        )
        self.concurrency = max(concurrency, 1)
        group = f"{bus.settings.consumer_group_prefix}-sender"
        self.loop = ConsumerLoop(
            bus,
            [bus.topics.outbound],
            group,
            self.handle,
            "send",
            on_dead_letter=self._mark_failed,
            batch_handler=self.handle_batch,
            chunk=batch_size,
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
                log.warning(
                    "sender.start_failed", sender=type(sender).__name__, error=repr(exc)[:300]
                )
        await self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
        for sender in reversed(self._lifecycled()):
            try:
                await sender.stop()
            except Exception as exc:  # the others must still close
                log.warning(
                    "sender.stop_failed", sender=type(sender).__name__, error=repr(exc)[:300]
                )

    async def handle(self, record: ConsumerRecord) -> None:
        """One record: the chunk of one (what a failed chunk falls back to, with retries)."""
        await self.handle_batch([record])

    async def handle_batch(self, records: list[ConsumerRecord]) -> None:
        """Deliver a partition's replies, in order per conversation.

        A record that does not parse fails the chunk before anything is sent. A provider's
        refusal for good dead-letters that reply and marks it failed, and its conversation goes
        on. Any other failure stops that conversation's later replies and, once the others are
        done, fails the chunk: the loop then hands it here again record by record, with retries,
        and what was sent already is skipped by its status.
        """
        outs = [(record, _outbound(record)) for record in records]
        sandboxed = [
            o
            for _, o in outs
            if o.channel not in self.socket_channels and o.channel not in self.senders
        ]
        if sandboxed:
            await self._sandbox(sandboxed)
        provider = [
            (r, o)
            for r, o in outs
            if o.channel not in self.socket_channels and o.channel in self.senders
        ]
        if not provider:
            return
        statuses = await self.store.delivery_statuses([o.message_id for _, o in provider])
        conversations: dict[str, list[tuple[ConsumerRecord, Outbound, str | None]]] = {}
        seen: set[str] = set()
        for record, out in provider:
            status = statuses.get(out.message_id)
            if out.message_id in seen or (status not in NOT_SENT and status not in IN_FLIGHT):
                log.info("reply.already_sent", trace_id=out.trace_id, message_id=out.message_id)
                continue
            seen.add(out.message_id)
            conversations.setdefault(out.conversation_key, []).append((record, out, status))
        slots = asyncio.Semaphore(self.concurrency)
        # Every conversation finishes (or stops) before the chunk may fail: a fallback starting
        # while a send is still in flight could send that reply twice.
        failures = await asyncio.gather(
            *(self._send_in_order(replies, slots) for replies in conversations.values()),
            return_exceptions=True,
        )
        for failure in failures:
            if failure is not None:
                raise failure

    async def _sandbox(self, outs: list[Outbound]) -> None:
        kept = set(await self.store.record_sandbox_deliveries(outs))
        for out in outs:
            if out.message_id in kept:
                kept.discard(out.message_id)  # a reply twice in the chunk is counted once
                labelled(DELIVERED, out.channel, "sandbox").inc()
                log.info(
                    "reply.sandboxed",
                    trace_id=out.trace_id,
                    channel=out.channel,
                    conversation_id=out.conversation_id,
                )

    async def _send_in_order(
        self,
        replies: list[tuple[ConsumerRecord, Outbound, str | None]],
        slots: asyncio.Semaphore,
    ) -> Exception | None:
        """One conversation's replies, one after another; the failure that stopped them, if any."""
        for record, out, status in replies:
            try:
                async with slots:
                    if not await self._deliver(out, status):
                        continue
            except DeliveryFailed as exc:
                await self._dead_letter(record, PermanentError(str(exc)))
                continue
            except Exception as exc:  # transient: a later reply must not overtake this one
                log.warning(
                    "reply.send_failed",
                    trace_id=out.trace_id,
                    channel=out.channel,
                    error=repr(exc)[:300],
                )
                return exc
            labelled(DELIVERED, out.channel, "provider").inc()
            log.info(
                "reply.sent",
                trace_id=out.trace_id,
                channel=out.channel,
                conversation_id=out.conversation_id,
            )
        return None

    async def _deliver(self, out: Outbound, status: str | None) -> bool:
        """Send one reply, its intent recorded first; False when it needed no send (found at
        the provider, or given up after its one retry)."""
        intent = "sending"
        if status in IN_FLIGHT:
            resolved = await self._resolve_unknown(out, status)
            if resolved is None:
                return False
            intent = resolved
        if not await self.store.record_send_intent(out.message_id, intent):
            log.info("reply.already_sent", trace_id=out.trace_id, message_id=out.message_id)
            return False
        try:
            await self.senders[out.channel].send(out)
        except DeliveryFailed:
            raise  # marked failed with the dead letter
        except Exception:
            # The provider answered with an error, or could not be reached: an ordinary retry.
            await self.store.clear_send_intent(out.message_id)
            raise
        return True

    async def _resolve_unknown(self, out: Outbound, status: str | None) -> str | None:
        """A reply whose last provider call never recorded its outcome: the intent to send it
        with now (`sending`, or `resending` for the one blind retry), or None to send nothing."""
        sender = self.senders[out.channel]
        lookup = getattr(sender, "lookup", None)
        if lookup is not None:
            intent = await self.store.send_intent(out.message_id)
            since = intent.started_at if intent and intent.started_at else out.created_at
            provider_id = await lookup(out, since)
            if provider_id is None:
                log.info("reply.not_found_at_provider", trace_id=out.trace_id, channel=out.channel)
                return "sending"  # the provider does not have it: an ordinary send
            await self.store.set_delivery_status(
                out.message_id,
                "sent",
                provider_message_id=provider_id,
                detail="found at the provider after an interrupted send",
            )
            UNKNOWN_OUTCOME_FOUND.labels(channel=out.channel).inc()
            log.info("reply.found_at_provider", trace_id=out.trace_id, channel=out.channel)
            return None
        if status == "resending":
            await self.store.set_delivery_status(
                out.message_id,
                "unknown",
                detail="interrupted twice during a send: maybe delivered, not sent again",
            )
            UNKNOWN_OUTCOME_GIVEN_UP.labels(channel=out.channel).inc()
            log.warning("reply.unknown_outcome", trace_id=out.trace_id, channel=out.channel)
            return None
        RESENT_UNKNOWN_OUTCOME.labels(channel=out.channel).inc()
        log.warning("reply.resent_unknown_outcome", trace_id=out.trace_id, channel=out.channel)
        return "resending"

    async def _dead_letter(self, record: ConsumerRecord, error: PermanentError) -> None:
        """What the consumer loop does with a PermanentError: the DLQ, then failed on the reply."""
        await self.bus.dead_letter(record, self.loop.stage, error)
        try:
            await self._mark_failed(record, error)
        except Exception as exc:  # the record is in the DLQ already; this is bookkeeping
            log.warning(
                "record.dead_letter_hook_failed", stage=self.loop.stage, error=repr(exc)[:300]
            )

    async def _mark_failed(self, record: ConsumerRecord, error: BaseException) -> None:
        """A reply that could not be delivered shows as failed on its conversation."""
        try:
            out = Outbound.from_bytes(record.value)
        except ValidationError:
            return
        await self.store.set_delivery_status(out.message_id, "failed", detail=str(error))


def _outbound(record: ConsumerRecord) -> Outbound:
    try:
        return Outbound.from_bytes(record.value)
    except ValidationError as exc:
        raise PermanentError(f"not an outbound message: {exc.error_count()} problems") from exc
