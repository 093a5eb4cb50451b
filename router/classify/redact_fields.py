"""Masking of every field of an envelope that a customer controls, not only the text.

A secret typed into a display name (WhatsApp ProfileName, a mail's From name, Telegram's first,
last or user name, a chat session's name), a subject, an attachment's file name or type, or
quoted history is masked like one in the text. What the router must keep exact to work is
left as it is: the sender's address (the reply goes there) and the thread's identifiers
(Message-IDs, provider ids), named in `THREAD_IDS`; any other thread value is masked.
"""

from __future__ import annotations

from typing import Any

from router.classify.redact import redact
from router.core.envelope import Attachment, Envelope

THREAD_IDS = frozenset(
    {
        "message_id",
        "in_reply_to",
        "references",
        "source",
        "no_auto_reply",
        "auto_reason",
        "problems",
        "thread_mismatch",
        "claimed_ticket",
        "call_sid",
        "edited",
        "telegram_message_id",
        "telegram_update_id",
        "telegram_user_id",
        "telegram_file_id",
        "language_code",
        "verified_phone",
    }
)


def masked_fields(envelope: Envelope) -> dict[str, Any]:
    """Every customer-controlled field of the envelope masked, as an update for its
    `model_copy` (the intake sets its lane in the same copy: one copy a webhook, not two);
    `redactions` lists every kind masked in any of them."""
    kinds = set(envelope.redactions)

    def mask(value: str) -> str:
        result = redact(value)
        kinds.update(result.kinds)
        return result.text

    def optional(value: str | None) -> str | None:
        return mask(value) if value else value

    sender = envelope.sender
    update: dict[str, Any] = {
        "text": mask(envelope.text),
        "subject": optional(envelope.subject),
        # A copy only when there is a name to mask: most senders (SMS, WhatsApp) have none.
        "sender": sender.model_copy(update={"name": mask(sender.name)}) if sender.name else sender,
        "attachments": [
            Attachment(name=mask(a.name), content_type=mask(a.content_type), size=a.size)
            for a in envelope.attachments
        ],
        "thread": {
            key: value if key in THREAD_IDS else mask(value)
            for key, value in envelope.thread.items()
        },
    }
    update["redactions"] = sorted(kinds)
    return update
