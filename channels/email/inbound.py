"""What both doors (the SMTP listener and the IMAP poller) do with one raw mail: parse it, decide
whether it may enter, find its conversation, and publish it.

Threading: a mail claims a conversation through the Message-IDs it answers (In-Reply-To,
References) when the store knows one of them, inbound or outbound; else through a ticket token
"[T1A2B3C4D]" in the subject; else through its thread's root Message-ID (the key of a thread the
store has not seen yet, so later mails of the same thread meet there). Message-IDs and tickets
are no secret, so the claim is granted only to that conversation's customer: the From address
must be the conversation's, and the receiving server must not have reported the From domain's
DMARC or DKIM as failing (channels/email/authresults.py). Reply-To never counts. A mail whose
claim is refused opens a conversation of its own, keyed by its sender and its thread, flagged
`thread_mismatch` for the agent with the ticket it claimed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import structlog

from channels.base import Publish
from channels.email.parse import Limits, ParsedMail, parse_mail
from router.core.channel_settings import EmailSettings
from router.core.envelope import Channel, Envelope, Sender
from router.observability.metrics import REJECTED
from router.store.conversations import ConversationStore

log = structlog.get_logger("channels.email")
TICKET = re.compile(r"\[(T[0-9A-F]{8})\]")


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # published; Kafka acknowledged
    IGNORED = "ignored"  # taken and deliberately dropped (our own mail coming back)
    REFUSED = "refused"  # will never be accepted as it is (no sender, MIME bomb)


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str = ""
    envelope: Envelope | None = None


def conversation_key_for_root(root_message_id: str) -> str:
    return "email:" + hashlib.sha256(root_message_id.encode()).hexdigest()[:32]


class EmailIntake:
    def __init__(self, settings: EmailSettings, store: ConversationStore, publish: Publish):
        self.settings, self.store, self._publish = settings, store, publish
        self.limits = Limits(
            max_text_chars=settings.email_max_text_chars,
            max_quoted_chars=settings.email_max_quoted_chars,
            max_attachments=settings.email_max_attachments,
            max_parts=settings.email_max_parts,
            max_multiparts=settings.email_max_multiparts,
        )

    async def accept(
        self,
        raw: bytes,
        *,
        source: str,
        envelope_from: str | None = None,
        extra_problems: Sequence[str] = (),
    ) -> Result:
        """Parse and publish one mail. Raises only when Kafka did not acknowledge it."""
        # Parsing a large mail takes CPU time; one thread call keeps the event loop free.
        mail = await asyncio.to_thread(parse_mail, raw, self.limits, envelope_from)
        mail.problems.extend(extra_problems)
        if mail.refusal:
            REJECTED.labels(channel="email", reason="refused").inc()
            log.warning(
                "email.refused",
                source=source,
                reason=mail.refusal,
                bytes=len(raw),
                message_id=mail.message_id or None,
                problems=mail.problems,
            )
            return Result(Outcome.REFUSED, mail.refusal)
        assert mail.from_address is not None
        if mail.from_address in self.settings.own_addresses:
            log.info(
                "email.ignored",
                source=source,
                reason="from_own_address",
                message_id=mail.message_id,
            )
            return Result(Outcome.IGNORED, "mail from our own address is never answered")
        key, flags = await self.conversation_key(mail)
        envelope = Envelope.new(
            channel=Channel.EMAIL,
            channel_message_id=mail.message_id,
            conversation_key=key,
            sender=Sender(address=mail.from_address, name=mail.from_name),
            text=mail.text,
            subject=mail.subject or None,
            thread={**self._thread(mail, source), **flags},
            attachments=mail.attachments,
        )
        if mail.problems:
            log.warning(
                "email.neutralized",
                source=source,
                message_id=mail.message_id,
                problems=mail.problems,
                trace_id=envelope.trace_id,
            )
        accepted = await self._publish(envelope)
        log.info(
            "email.accepted",
            source=source,
            message_id=mail.message_id,
            trace_id=accepted.trace_id,
            conversation_key=key,
            attachments=len(mail.attachments),
            auto_reason=mail.auto_reason,
        )
        return Result(Outcome.ACCEPTED, envelope=accepted)

    async def conversation_key(self, mail: ParsedMail) -> tuple[str, dict[str, str]]:
        """The mail's conversation key, and the thread flags when its claim was refused."""
        assert mail.from_address is not None
        root = mail.references[0] if mail.references else (mail.in_reply_to or [mail.message_id])[0]
        claimed = None
        if mail.thread_ids:
            claimed = await self.store.conversation_by_message_ids(Channel.EMAIL, mail.thread_ids)
        match = TICKET.search(mail.subject)
        if claimed is None and match:
            claimed = await self.store.conversation_by_ticket(match.group(1))
        if claimed is None:
            key = conversation_key_for_root(root)
            claimed = await self.store.conversation_by_key(key)
            if claimed is None:
                return key, {}
        if claimed["customer_address"].lower() == mail.from_address and not mail.from_failed:
            return claimed["conversation_key"], {}
        log.warning(
            "email.thread_mismatch",
            message_id=mail.message_id,
            claimed_ticket=claimed["ticket"],
            from_failed=mail.from_failed,
        )
        key = conversation_key_for_root(f"{mail.from_address} {root}")
        return key, {"thread_mismatch": "1", "claimed_ticket": claimed["ticket"]}

    def _thread(self, mail: ParsedMail, source: str) -> dict[str, str]:
        thread = {
            "message_id": mail.message_id,
            "in_reply_to": " ".join(mail.in_reply_to),
            "references": " ".join(mail.references),
            "source": source,
        }
        if mail.quoted:
            thread["quoted"] = mail.quoted  # agents see the history; intake masks it
        reply_to = mail.reply_to
        if (
            reply_to
            and reply_to != mail.from_address
            and reply_to not in self.settings.own_addresses
        ):
            thread["reply_to"] = reply_to
        if mail.auto_reason:
            thread["no_auto_reply"] = "1"
            thread["auto_reason"] = mail.auto_reason
        if mail.problems:
            thread["problems"] = ",".join(mail.problems)
        return {k: v for k, v in thread.items() if v}
