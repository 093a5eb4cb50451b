"""Storing classified inbound messages: each in its conversation (opened or found), once by
message_id, with its acknowledgement in the same transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.core.envelope import Envelope, Outbound, now, ordered_id
from router.store.database import Repository, hold_keys, hold_sqlite_writes
from router.store.rows import listing, new_ticket, outbound_row, unpublished_row, utc
from router.store.schema import conversations, messages, unpublished_replies
from router.store.storable import fit, storable
from router.store.value_lists import as_arrays, listed, one_of, unnest_insert

# The statements every chunk runs, built once (see value_lists.py).
_STORED_IDS = sa.select(messages.c.message_id).where(one_of(messages.c.message_id, listed("ids")))
_OPEN_CONVERSATIONS = (
    sa.select(conversations)
    .where(one_of(conversations.c.conversation_key, listed("keys")))
    .where(conversations.c.status != "resolved")
    .order_by(conversations.c.created_at.desc())
)
# Stored already: by message id, or by the channel's own id for the message (a provider's retry).
_SEEN = sa.select(
    messages.c.message_id,
    messages.c.channel,
    messages.c.channel_message_id,
    messages.c.conversation_id,
).where(
    sa.or_(
        one_of(messages.c.message_id, listed("ids")),
        (messages.c.channel == sa.bindparam("channel"))
        & one_of(messages.c.channel_message_id, listed("channel_ids")),
    )
)
_INSERT_CONVERSATIONS = conversations.insert()
_INSERT_MESSAGES = messages.insert()
_INSERT_UNPUBLISHED = unpublished_replies.insert()
# The conversations a chunk's later messages changed: the SET clause is the parameters' columns,
# so the changes with the same columns (a follow-up's `updated_at` and `preview`) are one
# executemany, not a statement built and run for each conversation.
_UPDATE_CONVERSATION = conversations.update().where(
    conversations.c.id == sa.bindparam("changed_id")
)
# PostgreSQL: a chunk's unpublished replies as one array a column (with asyncpg's executemany
# of a row each the dispatcher's CPU came out higher; SQLite's executemany is cheap).
_INSERT_UNPUBLISHED_ARRAYS = unnest_insert(unpublished_replies, list(unpublished_replies.columns))
_TAKEN_TICKETS = sa.select(conversations.c.ticket).where(
    one_of(conversations.c.ticket, listed("tickets"))
)

# acknowledge(conversation, created, requeued): the automatic reply to store with a message, if
# any; `requeued`: the message opened its conversation or raised its urgency (see `Recorded`).
Acknowledge = Callable[[dict[str, Any], bool, bool], Outbound | None]
OnStored = Callable[[AsyncConnection, list[tuple["Inbound", "Recorded"]]], Awaitable[None]]


@dataclass(frozen=True)
class Inbound:
    """One classified message to store, as `ConversationStore.record_inbound` takes it."""

    envelope: Envelope
    queue: str
    acknowledge: Acknowledge
    placement: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    case_id: str | None = None  # the case a conversation this message opens is stored in


@dataclass(frozen=True)
class Recorded:
    conversation: dict[str, Any]
    duplicate: bool
    created: bool
    requeued: bool  # the conversation entered a queue or moved up in it


class InboundMessages(Repository):
    """`ConversationStore.record_inbound` and `record_inbound_many`."""

    async def record_inbound(
        self,
        envelope: Envelope,
        queue: str,
        acknowledge: Acknowledge,
        placement: dict[str, Any] | None = None,
        decision: dict[str, Any] | None = None,
    ) -> Recorded:
        """Store a classified message in its conversation, once, with its acknowledgement.

        `acknowledge(conversation, created)` builds the automatic reply, if any; it is stored in
        the same transaction, unpublished, so a crash before it reaches Kafka loses nothing.
        `placement` holds the routing decision's columns (priority, rule, ladder_step,
        step_due_at, sla_due_at, rules_version); `decision` its explanation, kept on the message.
        """
        [recorded] = await self.record_inbound_many(
            [Inbound(envelope, queue, acknowledge, placement, decision)]
        )
        return recorded

    async def stored_message_ids(self, message_ids: list[str]) -> set[str]:
        """Which of these inbound messages the store has."""
        if not message_ids:
            return set()
        async with self.engine.connect() as conn:
            return {row[0] for row in await conn.execute(_STORED_IDS, {"ids": message_ids})}

    async def record_inbound_many(
        self, items: list[Inbound], on_stored: OnStored | None = None
    ) -> list[Recorded]:
        """`record_inbound` for many messages in one transaction, with the same outcome as one
        after another, in order: a message seen before (stored earlier, or earlier in `items`)
        is a duplicate; a later message of a conversation finds the one an earlier item opened.

        A handful of statements for the whole list: one lookup of what was seen, one of the
        open conversations, then the inserts and updates. The conversations' keys are held
        first (see `_hold_conversations`), so a writer storing messages of the same customer
        at the same time (the urgent lane's dispatcher, another process) waits, then finds the
        conversation this one opened. A concurrent writer storing one of these messages first
        makes the whole transaction fail on a unique key, and nothing is stored: the caller
        handles the messages again, one by one, and finds them stored. `on_stored(conn, new)`
        writes what goes with the new messages (their cases) in the same transaction.
        """
        if not items:
            return []
        for item in items:
            assert item.envelope.classification is not None, "only classified envelopes are stored"
        keys = {_key(item.envelope) for item in items}
        async with self.write() as conn:
            await self._hold_conversations(conn, keys)
            seen = await self._seen(conn, [item.envelope for item in items])
            open_by_key = await self._open_conversations(conn, keys)
            # At most one conversation opened per key without one: its tickets, drawn now.
            tickets = await free_tickets(conn, len(keys - open_by_key.keys()))
            rows_by_id = {row["id"]: row for row in open_by_key.values()}
            new_rows: dict[str, dict[str, Any]] = {}  # inserted by this call, in order
            changed: dict[str, dict[str, Any]] = {}  # updates of conversations stored before
            message_rows: list[dict[str, Any]] = []
            reply_rows: list[dict[str, Any]] = []  # the acknowledgements: unpublished yet
            results: list[Recorded | str] = []  # a duplicate's conversation id until it is read
            at = now()
            for item in items:
                envelope = item.envelope
                message_id, pair = _ids(envelope)
                known = seen.get(("id", message_id)) or seen.get(("pair", pair))
                if known is not None:
                    results.append(known)
                    continue
                row, created, requeued, values = _place_inbound(
                    envelope,
                    item.queue,
                    dict(item.placement or {}),
                    open_by_key.get(_key(envelope)),
                    at,
                    tickets,
                    item.case_id,
                )
                conv_id = row["id"]
                if created:
                    new_rows[conv_id] = row
                    rows_by_id[conv_id] = row
                elif conv_id not in new_rows:
                    changed.setdefault(conv_id, {}).update(values)
                open_by_key[_key(envelope)] = row
                seen[("id", message_id)] = seen[("pair", pair)] = conv_id
                message_rows.append(_inbound_row(envelope, conv_id, item.decision))
                conversation = listing(row)
                ack = item.acknowledge(conversation, created, requeued)
                if ack is not None:
                    message_rows.append(reply := outbound_row(ack))
                    reply_rows.append(unpublished_row(reply))
                results.append(Recorded(conversation, False, created, requeued))
            if new_rows:
                await conn.execute(_INSERT_CONVERSATIONS, list(new_rows.values()))
            same_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for conv_id, values in changed.items():
                same_columns.setdefault(tuple(values), []).append({**values, "changed_id": conv_id})
            for rows in same_columns.values():
                await conn.execute(_UPDATE_CONVERSATION, rows)
            if message_rows:
                # One statement, rows in order: each acknowledgement right after its message.
                await conn.execute(_INSERT_MESSAGES, message_rows)
            if reply_rows:
                await _insert_unpublished(conn, reply_rows)
            if on_stored is not None:
                stored = [
                    (i, r) for i, r in zip(items, results, strict=True) if isinstance(r, Recorded)
                ]
                await on_stored(conn, stored)
            missing = {r for r in results if isinstance(r, str) and r not in rows_by_id}
            if missing:
                for found in (
                    await conn.execute(
                        sa.select(conversations).where(one_of(conversations.c.id, sorted(missing)))
                    )
                ).mappings():
                    rows_by_id[found["id"]] = dict(found)
        return [
            r
            if isinstance(r, Recorded)
            else Recorded(
                # Always found: messages.conversation_id is a foreign key. Typed as never None.
                listing(rows_by_id[r]) if r in rows_by_id else None,  # type: ignore[arg-type]
                True,
                False,
                False,
            )
            for r in results
        ]

    @staticmethod
    async def _hold_conversations(conn: AsyncConnection, keys: set[str]) -> None:
        """Hold these conversation keys until the transaction ends, before reading anything:
        without it two writers could each find no open conversation for a customer who wrote
        on both lanes at once, and open two. SQLite: take the database's write lock now
        (BEGIN IMMEDIATE) instead of at the first insert. PostgreSQL: a transaction-scoped
        advisory lock per key, taken in one order (a deadlock would only roll one back)."""
        await hold_sqlite_writes(conn)
        await hold_keys(conn, keys)

    @staticmethod
    async def _seen(conn: AsyncConnection, envelopes: list[Envelope]) -> dict[tuple[str, Any], str]:
        """Which of these messages are stored already: ("id", message_id) and
        ("pair", (channel, channel_message_id)) → their conversation id. One statement for each
        channel among them (a chunk's messages almost always share one), built once."""
        stored_ids = [_ids(e) for e in envelopes]
        by_channel: dict[str, set[str]] = {}
        for _, (channel, channel_message_id) in stored_ids:
            by_channel.setdefault(channel, set()).add(channel_message_id)
        ids = [message_id for message_id, _ in stored_ids]
        seen: dict[tuple[str, Any], str] = {}
        for channel, channel_ids in by_channel.items():
            found = await conn.execute(
                _SEEN, {"ids": ids, "channel": channel, "channel_ids": sorted(channel_ids)}
            )
            ids = []  # every message id was asked for with the first channel
            for message_id, stored_channel, channel_message_id, conversation_id in found.all():
                seen[("id", message_id)] = conversation_id
                if channel_message_id is not None:
                    seen[("pair", (stored_channel, channel_message_id))] = conversation_id
        return seen

    @staticmethod
    async def _open_conversations(
        conn: AsyncConnection, keys: set[str]
    ) -> dict[str, dict[str, Any]]:
        """The newest conversation not resolved under each key, as a plain row."""
        rows = (await conn.execute(_OPEN_CONVERSATIONS, {"keys": sorted(keys)})).mappings()
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            found.setdefault(row["conversation_key"], dict(row))
        return found


def _place_inbound(
    envelope: Envelope,
    queue: str,
    placement: dict[str, Any],
    open_conv: dict[str, Any] | None,
    at: datetime,
    tickets: list[str],
    case_id: str | None,
) -> tuple[dict[str, Any], bool, bool, dict[str, Any]]:
    """Where a new message goes: a new conversation (its ticket taken from `tickets`), or the
    open one (changed in place). Returns the conversation's row as it is now, created,
    requeued, and the changed columns."""
    c = envelope.classification
    assert c is not None
    if open_conv is None:
        conv_id = ordered_id()
        row: dict[str, Any] = {column.name: None for column in conversations.columns}
        row.update(
            id=conv_id,
            ticket=tickets.pop(),
            conversation_key=envelope.conversation_key,
            channel=str(envelope.channel),
            customer_address=envelope.sender.address,
            customer_name=envelope.sender.name,
            language=c.language,
            category=c.category,
            urgency=str(c.urgency),
            urgency_rank=c.urgency.rank,
            queue=queue,
            status="waiting",
            assignee=None,
            case_id=case_id,
            preview=envelope.text[:200],
            priority=0,  # the columns' server defaults, unless the placement says otherwise
            ladder_step=0,
            rules_version=c.rules_version,
            created_at=envelope.received_at,
            updated_at=at,
        )
        row.update(placement)
        if envelope.thread.get("thread_mismatch"):
            row["flags"] = {
                "thread_mismatch": True,
                "claimed_ticket": envelope.thread.get("claimed_ticket"),
            }
        row = storable(conversations, row)
        return row, True, True, row
    values: dict[str, Any] = {"updated_at": at, "preview": envelope.text[:200]}
    requeued = False
    # Urgency only ever goes up: a follow-up "thanks" never demotes a fraud report.
    if c.urgency.rank > open_conv["urgency_rank"]:
        requeued = True
        values.update(
            category=c.category,
            urgency=str(c.urgency),
            urgency_rank=c.urgency.rank,
            queue=queue,
            **{"rules_version": c.rules_version, **placement},
        )
        earlier = utc(open_conv["sla_due_at"])
        if earlier is not None and placement.get("sla_due_at") is not None:
            values["sla_due_at"] = min(earlier, placement["sla_due_at"])
        if queue != open_conv["queue"]:  # a new queue: its own agents take it from the top
            values.update(status="waiting", assignee=None, assigned_at=None, accepted_at=None)
    values = storable(conversations, values)
    open_conv.update(values)
    return open_conv, False, requeued, values


async def free_tickets(conn: AsyncConnection, n: int) -> list[str]:
    """n distinct tickets no conversation has. Each is 32 random bits, so once a store holds a
    million conversations one draw in 4,300 is taken; a taken one put in the chunk's insert
    failed the whole transaction on the unique index (the chunk then went record by record).
    Taken ones are drawn again; one query a round, almost always one round."""
    tickets: list[str] = []
    while len(tickets) < n:
        drawn = {new_ticket() for _ in range(n - len(tickets))} - set(tickets)
        taken = set((await conn.execute(_TAKEN_TICKETS, {"tickets": sorted(drawn)})).scalars())
        tickets += sorted(drawn - taken)
    return tickets


def _inbound_row(
    envelope: Envelope, conversation_id: str, decision: dict[str, Any] | None
) -> dict[str, Any]:
    c = envelope.classification
    assert c is not None
    row = {
        "message_id": envelope.message_id,
        "conversation_id": conversation_id,
        "direction": "in",
        "kind": "customer",
        "channel": str(envelope.channel),
        "channel_message_id": envelope.channel_message_id,
        "author": envelope.sender.name or envelope.sender.address,
        "text": envelope.text,
        "trace_id": envelope.trace_id,
        "meta": {
            "classification": c.model_dump(mode="json"),
            "redactions": envelope.redactions,
            "attachments": [a.model_dump() for a in envelope.attachments],
            "subject": envelope.subject,
            "thread": envelope.thread,
            **({"decision": decision} if decision else {}),
        },
        "delivery_status": None,
        "created_at": envelope.received_at,
    }
    return storable(messages, row, keep_in="meta")


async def _insert_unpublished(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(_INSERT_UNPUBLISHED_ARRAYS, as_arrays(rows))
    else:
        await conn.execute(_INSERT_UNPUBLISHED, rows)


def _key(envelope: Envelope) -> str:
    """The envelope's conversation key as stored: what its conversation is found by."""
    return str(fit(conversations.c.conversation_key, envelope.conversation_key))


def _ids(envelope: Envelope) -> tuple[str, tuple[str, str]]:
    """The message's ids as stored: message_id, and (channel, channel_message_id)."""
    return (
        str(fit(messages.c.message_id, envelope.message_id)),
        (
            str(envelope.channel),
            str(fit(messages.c.channel_message_id, envelope.channel_message_id)),
        ),
    )
