"""Replies by mail through the configured relay (aiosmtplib), threaded under the customer's mail.

The Outbound carries only text; the thread comes from the store: the conversation's latest
inbound mail is the parent (In-Reply-To), its References plus every Message-ID of the
conversation make References, its subject becomes "Re: <subject> [<ticket>]" so the ticket can
thread a reply from a client that drops the headers. Our Message-ID is derived from the
Outbound's id, so a retried send carries the same one, and it is stored as the provider id so
the customer's answer to it finds the conversation.
"""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

import aiosmtplib
import structlog

from channels.base import DeliveryFailed
from channels.email.parse import MAX_REFERENCES, message_ids, valid_address
from router.core.channel_settings import EmailSettings
from router.core.envelope import Outbound
from router.store.conversations import ConversationStore

log = structlog.get_logger("channels.email.sender")
_REPLY_PREFIX = re.compile(
    r"^\s*((re|fw|fwd|aw|sv|回复|答复|回覆|转发|轉寄)\s*(\[\d+\])?\s*[:：]\s*)+", re.I
)
DEFAULT_SUBJECT = "Your support request"


class EmailSender:
    service_name = "email (SMTP relay)"

    def __init__(self, settings: EmailSettings, store: ConversationStore):
        assert settings.support_address and settings.smtp_relay_host
        self.settings, self.store = settings, store

    def message_id_for(self, out: Outbound) -> str:
        return f"<{out.message_id}@{self.settings.message_id_domain}>"

    async def send(self, out: Outbound) -> None:
        conversation = await self.store.conversation(out.conversation_id) or {"messages": []}
        parent = _parent(conversation)
        parent_thread = (parent or {}).get("meta", {}).get("thread") or {}
        # The conversation's address, never a mail's Reply-To: anyone can write a Reply-To into
        # a mail that carries a customer's From and ticket (channels/email/inbound.py).
        to = valid_address(out.to)
        if to is None:
            raise DeliveryFailed(f"not an email address: {out.to[:100]!r}")
        if to in self.settings.own_addresses:
            if out.kind == "acknowledgement":
                await self._suppress(out, "the recipient is our own address")
                return
            raise DeliveryFailed("refusing to mail our own support address: that is a mail loop")
        if out.kind == "acknowledgement" and parent_thread.get("no_auto_reply") == "1":
            await self._suppress(
                out, f"no automatic reply to {parent_thread.get('auto_reason', 'automatic')} mail"
            )
            return
        message = self.compose(out, to, conversation, parent)
        await self._deliver(out, message, to)
        await self.store.set_delivery_status(
            out.message_id, "sent", provider_message_id=message["Message-ID"]
        )
        log.info(
            "email.sent",
            trace_id=out.trace_id,
            conversation_id=out.conversation_id,
            kind=out.kind,
            message_id=message["Message-ID"],
            in_reply_to=message.get("In-Reply-To"),
        )

    def compose(
        self, out: Outbound, to: str, conversation: dict[str, Any], parent: dict[str, Any] | None
    ) -> EmailMessage:
        s = self.settings
        assert s.support_address is not None  # __init__ checked it
        msg = EmailMessage(policy=policy.SMTP)
        msg["From"] = formataddr((s.support_name, s.support_address))
        msg["To"] = to
        msg["Subject"] = reply_subject(parent, conversation.get("ticket"))
        msg["Date"] = format_datetime(out.created_at)
        msg["Message-ID"] = self.message_id_for(out)
        msg["Reply-To"] = s.reply_to or s.support_address
        parent_id, references = thread_ids(conversation, parent)
        if parent_id:
            msg["In-Reply-To"] = parent_id
            msg["References"] = " ".join(references)
        if conversation.get("ticket"):
            msg["X-Support-Ticket"] = conversation["ticket"]
        if out.kind == "acknowledgement":
            # RFC 3834: an automatic answer says so, so that other robots do not answer it;
            # X-Auto-Response-Suppress asks Exchange not to send its out-of-office to it.
            msg["Auto-Submitted"] = "auto-replied"
            msg["X-Auto-Response-Suppress"] = "All"
        msg.set_content(out.text)
        return msg

    async def _deliver(self, out: Outbound, message: EmailMessage, to: str) -> None:
        s = self.settings
        password = s.smtp_relay_password.get_secret_value() if s.smtp_relay_password else None
        start_tls = {"auto": None, "required": True, "off": False}[s.smtp_relay_starttls]
        try:
            await aiosmtplib.send(
                message,
                sender=s.support_address,
                recipients=[to],
                hostname=s.smtp_relay_host,
                port=s.smtp_relay_port,
                username=s.smtp_relay_username,
                password=password,
                use_tls=s.smtp_relay_tls,
                start_tls=False if s.smtp_relay_tls else start_tls,
                validate_certs=s.smtp_relay_validate_certs,
                timeout=s.smtp_relay_timeout_seconds,
                local_hostname=s.smtp_hostname,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if codes and all(code >= 500 for code in codes):
                raise DeliveryFailed(
                    f"relay refused {to}: {exc.recipients[0].message[:200]}"
                ) from exc
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise DeliveryFailed(
                    f"relay refused the reply: {exc.code} {exc.message[:200]}"
                ) from exc
            raise  # 4xx: the relay asks us to try again later

    async def _suppress(self, out: Outbound, reason: str) -> None:
        await self.store.set_delivery_status(out.message_id, "suppressed", detail=reason)
        log.info(
            "email.auto_reply_suppressed",
            trace_id=out.trace_id,
            conversation_id=out.conversation_id,
            reason=reason,
        )


def _email_messages(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in conversation.get("messages", []) if m.get("channel") == "email"]


def _parent(conversation: dict[str, Any]) -> dict[str, Any] | None:
    """The mail being answered: the customer's latest."""
    inbound = [m for m in _email_messages(conversation) if m.get("direction") == "in"]
    return inbound[-1] if inbound else None


def thread_ids(
    conversation: dict[str, Any], parent: dict[str, Any] | None
) -> tuple[str | None, list[str]]:
    """(In-Reply-To, References): the parent's own References (its ancestors), then every
    Message-ID this conversation holds in the order they were written, so the thread's root comes
    first (RFC 5322 §3.6.4); bounded, with the root and the parent always kept."""
    if parent is None or not parent.get("channel_message_id"):
        return None, []
    parent_id = parent["channel_message_id"]
    thread = (parent.get("meta") or {}).get("thread") or {}
    ids = list(message_ids(thread.get("references", "")))
    for m in _email_messages(conversation):
        mid = (
            m.get("channel_message_id")
            if m.get("direction") == "in"
            else m.get("provider_message_id")
        )
        if mid:
            ids.append(mid)
    ordered = list(dict.fromkeys(ids))
    if len(ordered) > MAX_REFERENCES:
        ordered = [ordered[0], *ordered[-(MAX_REFERENCES - 1) :]]
    if parent_id not in ordered:
        ordered = (
            [*ordered[:-1], parent_id] if len(ordered) >= MAX_REFERENCES else [*ordered, parent_id]
        )
    return parent_id, ordered


def reply_subject(parent: dict[str, Any] | None, ticket: str | None) -> str:
    subject = ((parent or {}).get("meta") or {}).get("subject") or ""
    base = _REPLY_PREFIX.sub("", subject).strip() or DEFAULT_SUBJECT
    if ticket and f"[{ticket}]" not in base:
        base = f"{base} [{ticket}]"
    return f"Re: {base}"
