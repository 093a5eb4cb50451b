"""The one record every stage shares: an inbound message, its classification, an outbound reply.

This module imports nothing of the project but `router.core.text` and `router.core.random_bytes`,
so every other module may import it. Customers' text is made safe to carry (no NUL, no lone
surrogate) when a record is built, so a message a channel accepted can always be encoded for
Kafka and stored.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from router.core.random_bytes import random_bytes
from router.core.text import unicode_safe

SCHEMA_VERSION = 1

# A fixed namespace so the same provider message always gets the same message_id:
# a provider's retry then dedupes on message_id as well as on channel_message_id.
_MESSAGE_NAMESPACE = uuid.UUID("6f1d2a52-5b3e-4c1e-9a57-3f0c2f1d9b11")
_NAMESPACE_BYTES = _MESSAGE_NAMESPACE.bytes


class Channel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    VOICE = "voice"
    EMAIL = "email"
    CHAT = "chat"
    TELEGRAM = "telegram"


class Urgency(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _URGENCY_RANK[self]


_URGENCY_RANK = {Urgency.LOW: 0, Urgency.NORMAL: 1, Urgency.HIGH: 2, Urgency.CRITICAL: 3}


class Lane(StrEnum):
    URGENT = "urgent"
    STANDARD = "standard"


def now() -> datetime:
    return datetime.now(UTC)


def random_id() -> str:
    """128 random bits as 32 hex digits, like `uuid4().hex`, without building a UUID (a few
    microseconds on every message at every stage) or a system call (`random_bytes`)."""
    return random_bytes(16).hex()


def ordered_id() -> str:
    """32 hex digits like `random_id`: the time in milliseconds (12), then 80 random bits (20).
    Ids made later sort later, so an index on them grows at its end instead of changing a
    random page of it for every new row: a store transaction opening 20 conversations wrote
    164 pages to SQLite's log with random ids, 108 with these (200: 1,280 → 633). For the
    rows a table keeps (conversations, cases, replies); still unguessable, and the time in it
    is the row's created_at anyway."""
    return f"{time.time_ns() // 1_000_000:012x}{random_bytes(10).hex()}"


def message_id_for(channel: str, channel_message_id: str) -> str:
    """`str(uuid.uuid5(_MESSAGE_NAMESPACE, "channel:id"))`, the same text, made without a UUID
    object (whose checks were a quarter of the cost, on every webhook)."""
    name = f"{channel}:{channel_message_id}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes):
        return cls.model_validate_json(raw)


class Sender(_Record):
    address: str
    name: str | None = None

    _safe = field_validator("address", "name")(lambda v: unicode_safe(v) if v else v)


class Attachment(_Record):
    name: str
    content_type: str
    size: int


class Classification(_Record):
    category: str
    urgency: Urgency
    confidence: float
    rules: list[str] = Field(default_factory=list)
    language: str
    entities: dict[str, list[str]] = Field(default_factory=dict)
    rules_version: str = ""


class Envelope(_Record):
    """An inbound customer message, normalized, redacted, on its way to a queue."""

    schema_version: int = SCHEMA_VERSION
    message_id: str
    channel: Channel
    channel_message_id: str
    conversation_key: str
    sender: Sender
    text: str
    redactions: list[str] = Field(default_factory=list)
    subject: str | None = None
    thread: dict[str, str] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)
    received_at: datetime = Field(default_factory=now)
    lane: Lane = Lane.STANDARD
    trace_id: str = Field(default_factory=random_id)
    classification: Classification | None = None

    _safe = field_validator("text", "subject")(lambda v: unicode_safe(v) if v else v)

    @classmethod
    def new(cls, *, channel: Channel, channel_message_id: str, **fields: Any) -> Envelope:
        return cls(
            message_id=message_id_for(channel, channel_message_id),
            channel=channel,
            channel_message_id=channel_message_id,
            **fields,
        )

    @property
    def kafka_key(self) -> bytes:
        return self.conversation_key.encode()


class Outbound(_Record):
    """A reply on its way to the customer, on the channel the conversation came from."""

    schema_version: int = SCHEMA_VERSION
    message_id: str = Field(default_factory=ordered_id)
    conversation_id: str
    conversation_key: str
    channel: Channel
    to: str
    text: str
    kind: str = "agent_reply"  # acknowledgement | agent_reply
    author: str | None = None
    created_at: datetime = Field(default_factory=now)
    trace_id: str = Field(default_factory=random_id)
    thread: dict[str, str] = Field(default_factory=dict)


class QueueEvent(_Record):
    """A change agents' consoles should see: a conversation entered, moved or left a queue."""

    type: str
    conversation_id: str
    queue: str
    urgency: Urgency | None = None
    status: str | None = None
    assignee: str | None = None
    at: datetime = Field(default_factory=now)
