"""Rows as the store hands them out (JSON-ready dicts, times in UTC) and as it writes replies."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, overload

from router.core.envelope import Outbound, Urgency, now
from router.core.random_bytes import random_bytes
from router.store.schema import messages
from router.store.storable import storable


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without a zone; everything stored here is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def new_ticket() -> str:
    """What the customer quotes: "T" and 8 random hex digits, drawn on its own (a
    conversation's id begins with the time, the same for every one opened within a minute; see
    `ordered_id`). 32 bits: the store draws again one that is taken (inbound.py)."""
    return "T" + random_bytes(4).hex().upper()


def age_seconds(at: datetime | None) -> float:
    return round((now() - at).total_seconds(), 1) if at else 0.0


def jsonable(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {k: (utc(v).isoformat() if isinstance(v, datetime) else v) for k, v in dict(row).items()}


def listing(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = jsonable(row)
    out["urgency"] = Urgency(row["urgency"]).value
    out["waiting_seconds"] = age_seconds(utc(row["created_at"]))
    return out


def message_dict(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = jsonable(row)
    out["id"] = out.pop("message_id")
    return out


def outbound_row(out: Outbound) -> dict[str, Any]:
    """A reply as stored (with its row of `unpublished_replies` until Kafka acknowledged it: see
    `unpublished_row` and OutboundRelay). The reply itself is kept in meta, cleaned as every
    value is (see `router.store.storable`)."""
    row = {
        "message_id": out.message_id,
        "conversation_id": out.conversation_id,
        "direction": "out",
        "kind": out.kind,
        "channel": str(out.channel),
        "channel_message_id": None,
        "author": out.author,
        "text": out.text,
        "trace_id": out.trace_id,
        "meta": {"outbound": out.model_dump(mode="json")},
        "delivery_status": "queued",
        "created_at": out.created_at,
    }
    return storable(messages, row, keep_in="meta")


def unpublished_row(row: dict[str, Any]) -> dict[str, Any]:
    """What `unpublished_replies` keeps of a reply's stored row (`outbound_row`)."""
    return {"message_id": row["message_id"], "conversation_id": row["conversation_id"]}
