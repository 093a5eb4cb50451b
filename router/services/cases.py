"""CaseKeeper: as the dispatcher stores a batch, each message's conversation joins its case
(router/store/cases.py), in the same transaction; then a report that calls for the protective
action queues a freeze request for its case (router/services/protect.py sends it).

Which phone a message is from: the sender's own number on SMS, WhatsApp and voice; on any other
channel only a number verified for that user (Telegram's shared contact, or an identity the
store holds as verified), never one merely typed into a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import structlog

from router.core.envelope import Channel, Envelope, ordered_id
from router.operator_files.schemas.actions import FreezeAction
from router.policy.rules import Rules
from router.store.case_joining import CaseFacts, CaseWindows, may_join, place_cases
from router.store.cases import ROUTER
from router.store.conversations import ConversationStore
from router.store.inbound import Inbound, OnStored, Recorded
from router.store.protect_outbox import idempotency_key

log = structlog.get_logger("router.services.cases")

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_OWN_NUMBER = {Channel.SMS, Channel.VOICE, Channel.WHATSAPP}


class CaseKeeper:
    def __init__(self, store: ConversationStore, rules: Rules, *, protect_configured: bool):
        self.store, self.rules = store, rules
        self.protect_configured = protect_configured
        self.on_queued: Callable[[], None] | None = None  # wakes the protective action's sender

    async def placing(
        self, envelopes: Sequence[Envelope]
    ) -> tuple[OnStored, dict[str, str], dict[str, str]]:
        """What the store runs in the transaction that stores these messages (each new one's
        conversation into its case), the conversation id → case id it fills in, and message id →
        the case a conversation the message opens is stored in (`Inbound.case_id`).

        That case is drawn now for each message that cannot join another case: opening its
        conversation, it opens a case of its own, the conversation stored in it from the start.
        Otherwise the conversation is moved into its case afterwards, in the same transaction:
        on PostgreSQL a second version of its row, in each of its ten indexes."""
        config = self.rules.config
        phones = {e.message_id: await self._phone(e) for e in envelopes}
        rules = config.routing.cases
        windows = CaseWindows(
            unauthorized=timedelta(minutes=rules.window_minutes) if rules.window_minutes else None,
            transaction=timedelta(days=rules.transaction_days),
        )
        placed: dict[str, str] = {}
        ahead = {
            e.message_id: ordered_id()
            for e in envelopes
            # What the message says, before it is stored: no conversation id yet.
            if not may_join(_facts(e, "", phones[e.message_id], opened=True), windows)
        }

        async def on_stored(conn: Any, stored: list[tuple[Inbound, Recorded]]) -> None:
            items = [
                _facts(
                    item.envelope,
                    done.conversation["id"],
                    phones.get(item.envelope.message_id),
                    opened=done.created,
                    # As stored: a caller may not have put the case drawn ahead in its Inbound.
                    case_id=done.conversation.get("case_id") if done.created else None,
                )
                for item, done in stored
            ]
            placed.update(await place_cases(conn, items, windows))
            for _, done in stored:
                done.conversation["case_id"] = placed.get(done.conversation["id"])

        return on_stored, placed, ahead

    async def protect(
        self, envelopes: Sequence[Envelope], recorded: Sequence[Recorded], placed: dict[str, str]
    ) -> None:
        """The freeze request of each report that calls for one, once per case; a redelivered
        report (a duplicate) checks again, so a crash between the two steps loses nothing."""
        freeze = self.rules.config.actions.freeze
        for envelope, done in zip(envelopes, recorded, strict=True):
            if not done.conversation or not _calls_for_freeze(envelope, freeze):
                continue
            case_id = placed.get(done.conversation["id"]) or done.conversation.get("case_id")
            if case_id:
                await self.request_freeze(case_id, envelope)

    async def request_freeze(self, case_id: str, envelope: Envelope) -> None:
        """The freeze request for the case, written once (not sent: the outbox's sender does)."""
        if not self.protect_configured:
            queued = await self.store.protect.queue(
                case_id, "freeze", {}, ROUTER, state="not_configured"
            )
            if queued:
                log.warning("protect.not_configured", case_id=case_id, trace_id=envelope.trace_id)
            return
        case = await self.store.cases.case(case_id)
        if case is None:
            return
        body = request_body(case, "freeze", ROUTER)
        if await self.store.protect.queue(case_id, "freeze", body, ROUTER):
            log.info("protect.requested", case_id=case_id, trace_id=envelope.trace_id)
            if self.on_queued is not None:
                self.on_queued()

    async def _phone(self, envelope: Envelope) -> str | None:
        if envelope.channel in _OWN_NUMBER:
            phone: str | None = envelope.sender.address.removeprefix("whatsapp:")
        elif envelope.thread.get("verified_phone"):
            phone = envelope.thread["verified_phone"]
        else:
            identity = await self.store.identity_for(envelope.channel, envelope.sender.address)
            phone = identity["phone"] if identity else None
        return phone if phone and E164.match(phone) else None


def _facts(
    envelope: Envelope,
    conversation_id: str,
    phone: str | None,
    *,
    opened: bool,
    case_id: str | None = None,
) -> CaseFacts:
    c = envelope.classification
    entities = c.entities if c else {}
    return CaseFacts(
        conversation_id=conversation_id,
        message_id=envelope.message_id,
        at=envelope.received_at,
        phone=phone,
        transaction_ids=[t.upper() for t in entities.get("transaction_ids", [])],
        amounts=list(entities.get("amounts", [])),
        unauthorized=c is not None and c.category == "unauthorized_transaction",
        opened=opened,
        case_id=case_id,
    )


def _calls_for_freeze(envelope: Envelope, freeze: FreezeAction) -> bool:
    c = envelope.classification
    return (
        freeze.enabled
        and c is not None
        and c.category in freeze.categories
        and c.urgency.rank >= freeze.urgency.rank
    )


def request_body(case: dict[str, Any], action: str, by: str) -> dict[str, Any]:
    """What the backend is sent: the case, who the customer is on each channel, and what they
    named (transaction ids, amounts)."""
    return {
        "case_id": case["id"],
        "action": action,
        "idempotency_key": idempotency_key(case["id"], action),
        "requested_by": by,
        "customer": {"phone": case["customer_phone"], "identities": case["identities"]},
        "transaction_ids": case["transaction_ids"],
        "amounts": case["amounts"],
        "conversations": [
            {"id": c["id"], "ticket": c["ticket"], "channel": c["channel"]}
            for c in case["conversations"]
        ],
    }
