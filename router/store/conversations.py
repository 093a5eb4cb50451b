"""ConversationStore: conversations, messages, the sandbox outbox, agents' credentials.

One SQLAlchemy Core layer over SQLite (aiosqlite) and PostgreSQL (asyncpg). Every write that a
Kafka consumer makes is idempotent by message_id, so a redelivered record changes nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from router.core.envelope import Envelope, Outbound, Urgency, now

metadata = sa.MetaData()

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ticket", sa.String(16), nullable=False, unique=True),
    sa.Column("conversation_key", sa.String(200), nullable=False, index=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("customer_address", sa.String(320), nullable=False),
    sa.Column("customer_name", sa.String(200)),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("category", sa.String(40), nullable=False),
    sa.Column("urgency", sa.String(10), nullable=False),
    sa.Column("urgency_rank", sa.Integer, nullable=False),
    sa.Column("queue", sa.String(40), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # waiting | assigned | resolved
    sa.Column("assignee", sa.String(60)),
    sa.Column("preview", sa.String(200), nullable=False),
    sa.Column("rules_version", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Routing, SLA and assignment: router/routing/workflow.py, router/services/sla.py, router/services/assignment.py.
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column(
        "rule", sa.String(80)
    ),  # the workflow filter (or triage/route/default) that placed it
    sa.Column("ladder_step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("step_due_at", sa.DateTime(timezone=True)),  # when the ladder moves on, if waiting
    sa.Column("sla_due_at", sa.DateTime(timezone=True)),  # first response due (business hours)
    sa.Column("sla_breached_at", sa.DateTime(timezone=True)),
    sa.Column("assigned_at", sa.DateTime(timezone=True)),
    sa.Column("accepted_at", sa.DateTime(timezone=True)),  # the agent claimed it
    sa.Column("first_response_at", sa.DateTime(timezone=True)),  # the first agent reply
    sa.Index("ix_conversations_queue_order", "queue", "status", "urgency_rank", "created_at"),
)

# Dispatch order, everywhere (queue listings, assignment, an agent's own list): critical first,
# whatever any priority says; then priority; then urgency; then the oldest.
DISPATCH_ORDER = (
    sa.case((conversations.c.urgency_rank >= Urgency.CRITICAL.rank, 1), else_=0).desc(),
    conversations.c.priority.desc(),
    conversations.c.urgency_rank.desc(),
    conversations.c.created_at,
    conversations.c.id,
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("direction", sa.String(4), nullable=False),  # in | out
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("channel_message_id", sa.String(200)),
    sa.Column("author", sa.String(200)),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("published", sa.Boolean, nullable=False),
    # Outbound only: queued → sent | sandboxed | failed, then what the provider reports
    # (delivered, undelivered, read ...); provider_message_id ties a status callback to it.
    sa.Column("delivery_status", sa.String(20)),
    sa.Column("delivery_detail", sa.String(500)),
    sa.Column("provider_message_id", sa.String(200), index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("channel", "channel_message_id", name="uq_messages_channel_message"),
    sa.Index("ix_messages_conversation", "conversation_id", "seq"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),
    sa.Column("conversation_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

agent_credentials = sa.Table(
    "agent_credentials",
    metadata,
    sa.Column("username", sa.String(60), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
)

agent_tokens = sa.Table(
    "agent_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(60), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# A phone number a channel verified belongs to one of its users (Telegram: the user shared
# their own contact through the contact button). Never written from anything unverified.
identities = sa.Table(
    "identities",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("channel_user_id", sa.String(200), primary_key=True),
    sa.Column("phone", sa.String(32), nullable=False, index=True),
    sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
)

# An agent's availability (available | away | offline) and since when they have had no new work.
agent_state = sa.Table(
    "agent_state",
    metadata,
    sa.Column("username", sa.String(60), primary_key=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("idle_since", sa.DateTime(timezone=True), nullable=False),
)

# The agent who last accepted a conversation of this customer: a returning customer goes back.
customer_agents = sa.Table(
    "customer_agents",
    metadata,
    sa.Column("conversation_key", sa.String(200), primary_key=True),
    sa.Column("username", sa.String(60), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Every offer of a conversation to an agent, and how it ended: the assignment audit trail.
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(32), nullable=False, index=True),
    sa.Column("username", sa.String(60), nullable=False),
    sa.Column("reason", sa.String(20), nullable=False),  # longest_idle | returning | claimed
    sa.Column("worker", sa.String(80), nullable=False),  # which dispatcher process decided
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended", sa.String(20)),  # timed_out: the offer was taken back
)

# What the wallet knows of a customer (vip, segment ...): `customer.*` in routing filters.
customer_profiles = sa.Table(
    "customer_attributes",
    metadata,
    sa.Column("address", sa.String(320), primary_key=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

chat_sessions = sa.Table(
    "chat_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("conversation_key", sa.String(200), nullable=False, unique=True),
    sa.Column("name", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without a zone; everything stored here is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), n=2**14, r=8, p=1)
    return secrets.compare_digest(digest.hex(), digest_hex)


Acknowledge = Callable[[dict[str, Any], bool], Outbound | None]


@dataclass(frozen=True)
class Inbound:
    """One classified message to store, as `ConversationStore.record_inbound` takes it."""

    envelope: Envelope
    queue: str
    acknowledge: Acknowledge
    placement: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None


@dataclass(frozen=True)
class Recorded:
    conversation: dict[str, Any]
    duplicate: bool
    created: bool
    requeued: bool  # the conversation entered a queue or moved up in it


class ConversationStore:
    def __init__(self, url: str, **engine_options: Any):
        self.url = url
        self._engine_options = engine_options
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("ConversationStore is not started")
        return self._engine

    async def start(self) -> None:
        if self._engine is not None:
            raise RuntimeError("ConversationStore already started")
        if self.url.startswith("sqlite"):
            _ensure_sqlite_dir(self.url)
        self._engine = create_async_engine(self.url, **self._engine_options)
        if self.url.startswith("sqlite"):
            sa.event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(_add_missing_columns)

    async def stop(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def __aenter__(self) -> ConversationStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # --- inbound --------------------------------------------------------------------------

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

    async def record_inbound_many(self, items: list[Inbound]) -> list[Recorded]:
        """`record_inbound` for many messages in one transaction, with the same outcome as one
        after another, in order: a message seen before (stored earlier, or earlier in `items`)
        is a duplicate; a later message of a conversation finds the one an earlier item opened.

        A handful of statements for the whole list: one lookup of what was seen, one of the
        open conversations, then the inserts and updates. The conversations' keys are held
        first (see `_hold_conversations`), so a writer storing messages of the same customer
        at the same time (the urgent lane's dispatcher, another process) waits, then finds the
        conversation this one opened. A concurrent writer storing one of these messages first
        makes the whole transaction fail on a unique key, and nothing is stored: the caller
        handles the messages again, one by one, and finds them stored.
        """
        if not items:
            return []
        for item in items:
            assert item.envelope.classification is not None, "only classified envelopes are stored"
        keys = {item.envelope.conversation_key for item in items}
        async with self.engine.begin() as conn:
            await self._hold_conversations(conn, keys)
            seen = await self._seen(conn, [item.envelope for item in items])
            open_by_key = await self._open_conversations(conn, keys)
            rows_by_id = {row["id"]: row for row in open_by_key.values()}
            new_rows: dict[str, dict[str, Any]] = {}  # inserted by this call, in order
            changed: dict[str, dict[str, Any]] = {}  # updates of conversations stored before
            message_rows: list[dict[str, Any]] = []
            results: list[Recorded | str] = []  # a duplicate's conversation id until it is read
            at = now()
            for item in items:
                envelope = item.envelope
                pair = (str(envelope.channel), envelope.channel_message_id)
                known = seen.get(("id", envelope.message_id)) or seen.get(("pair", pair))
                if known is not None:
                    results.append(known)
                    continue
                row, created, requeued, values = _place_inbound(
                    envelope,
                    item.queue,
                    dict(item.placement or {}),
                    open_by_key.get(envelope.conversation_key),
                    at,
                )
                conv_id = row["id"]
                if created:
                    new_rows[conv_id] = row
                    rows_by_id[conv_id] = row
                elif conv_id not in new_rows:
                    changed.setdefault(conv_id, {}).update(values)
                open_by_key[envelope.conversation_key] = row
                seen[("id", envelope.message_id)] = seen[("pair", pair)] = conv_id
                message_rows.append(_inbound_row(envelope, conv_id, item.decision))
                conversation = _listing(row)
                ack = item.acknowledge(conversation, created)
                if ack is not None:
                    message_rows.append(_outbound_row(ack))
                results.append(Recorded(conversation, False, created, requeued))
            if new_rows:
                await conn.execute(conversations.insert(), list(new_rows.values()))
            for conv_id, values in changed.items():
                await conn.execute(
                    conversations.update().where(conversations.c.id == conv_id).values(**values)
                )
            if message_rows:
                # One statement, rows in order: each acknowledgement right after its message.
                await conn.execute(messages.insert(), message_rows)
            missing = {r for r in results if isinstance(r, str) and r not in rows_by_id}
            if missing:
                for row in (
                    await conn.execute(
                        sa.select(conversations).where(conversations.c.id.in_(sorted(missing)))
                    )
                ).mappings():
                    rows_by_id[row["id"]] = dict(row)
        return [
            r
            if isinstance(r, Recorded)
            else Recorded(_listing(rows_by_id[r]) if r in rows_by_id else None, True, False, False)
            for r in results
        ]

    @staticmethod
    async def _hold_conversations(conn, keys: set[str]) -> None:
        """Hold these conversation keys until the transaction ends, before reading anything:
        without it two writers could each find no open conversation for a customer who wrote
        on both lanes at once, and open two. SQLite: take the database's write lock now
        (BEGIN IMMEDIATE) instead of at the first insert. PostgreSQL: a transaction-scoped
        advisory lock per key, taken in one order (a deadlock would only roll one back)."""
        dialect = conn.dialect.name
        if dialect == "sqlite":
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            await conn.execute(
                sa.text(
                    "SELECT count(pg_advisory_xact_lock(h)) FROM "
                    "(SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h) AS held"
                ),
                {"keys": sorted(keys)},
            )

    @staticmethod
    async def _seen(conn, envelopes: list[Envelope]) -> dict[tuple[str, Any], str]:
        """Which of these messages are stored already: ("id", message_id) and
        ("pair", (channel, channel_message_id)) → their conversation id."""
        by_channel: dict[str, set[str]] = {}
        for e in envelopes:
            by_channel.setdefault(str(e.channel), set()).add(e.channel_message_id)
        query = sa.select(
            messages.c.message_id,
            messages.c.channel,
            messages.c.channel_message_id,
            messages.c.conversation_id,
        ).where(
            sa.or_(
                messages.c.message_id.in_([e.message_id for e in envelopes]),
                *(
                    (messages.c.channel == channel) & messages.c.channel_message_id.in_(sorted(ids))
                    for channel, ids in by_channel.items()
                ),
            )
        )
        seen: dict[tuple[str, Any], str] = {}
        for message_id, channel, channel_message_id, conversation_id in (
            await conn.execute(query)
        ).all():
            seen[("id", message_id)] = conversation_id
            if channel_message_id is not None:
                seen[("pair", (channel, channel_message_id))] = conversation_id
        return seen

    @staticmethod
    async def _open_conversations(conn, keys: set[str]) -> dict[str, dict[str, Any]]:
        """The newest conversation not resolved under each key, as a plain row."""
        rows = (
            await conn.execute(
                sa.select(conversations)
                .where(conversations.c.conversation_key.in_(sorted(keys)))
                .where(conversations.c.status != "resolved")
                .order_by(conversations.c.created_at.desc())
            )
        ).mappings()
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            found.setdefault(row["conversation_key"], dict(row))
        return found

    # --- outbound -------------------------------------------------------------------------

    async def _insert_outbound(self, conn, out: Outbound) -> None:
        await conn.execute(messages.insert().values(**_outbound_row(out)))

    async def add_outbound(self, out: Outbound) -> None:
        async with self.engine.begin() as conn:
            await self._insert_outbound(conn, out)
            at = now()
            values: dict[str, Any] = {"updated_at": at}
            if out.kind == "agent_reply":  # the first response the SLA counts
                values["first_response_at"] = sa.func.coalesce(
                    conversations.c.first_response_at, at
                )
            await conn.execute(
                conversations.update()
                .where(conversations.c.id == out.conversation_id)
                .values(**values)
            )

    async def unpublished(
        self,
        conversation_id: str | None = None,
        older_than: float = 0,
        *,
        conversation_ids: list[str] | None = None,
    ) -> list[Outbound]:
        """Replies stored but not yet acknowledged by Kafka, oldest first: of one conversation,
        of several (`conversation_ids`), or of all."""
        query = sa.select(messages.c.meta).where(
            (messages.c.direction == "out") & (messages.c.published == sa.false())
        )
        if conversation_id is not None:
            query = query.where(messages.c.conversation_id == conversation_id)
        if conversation_ids is not None:
            if not conversation_ids:
                return []
            query = query.where(messages.c.conversation_id.in_(sorted(set(conversation_ids))))
        if older_than:
            query = query.where(messages.c.created_at < now() - timedelta(seconds=older_than))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(messages.c.seq))).all()
        return [Outbound.model_validate(r[0]["outbound"]) for r in rows]

    async def mark_published(self, *message_ids: str) -> None:
        if not message_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                messages.update()
                .where(messages.c.message_id.in_(message_ids))
                .values(published=True)
            )

    async def set_delivery_status(
        self,
        message_id: str | None = None,
        status: str = "sent",
        *,
        provider_message_id: str | None = None,
        detail: str | None = None,
    ) -> bool:
        """Record what became of a reply, found by our message_id or by the provider's id."""
        if message_id is None and provider_message_id is None:
            raise ValueError("set_delivery_status needs message_id or provider_message_id")
        values: dict[str, Any] = {"delivery_status": status[:20]}
        if detail is not None:
            values["delivery_detail"] = detail[:500]
        query = messages.update()
        if message_id is not None:
            query = query.where(messages.c.message_id == message_id)
            if provider_message_id is not None:
                values["provider_message_id"] = provider_message_id
        else:
            query = query.where(messages.c.provider_message_id == provider_message_id)
        async with self.engine.begin() as conn:
            result = await conn.execute(query.values(**values))
            return result.rowcount > 0

    async def record_sandbox_delivery(self, out: Outbound) -> bool:
        """Keep what would have been sent; False when this message was kept before."""
        # One statement: the unique message_id decides, so a redelivered reply is a no-op.
        insert = (
            _insert_for(self.engine.dialect.name)(outbox)
            .values(
                message_id=out.message_id,
                conversation_id=out.conversation_id,
                channel=out.channel,
                recipient=out.to,
                kind=out.kind,
                text=out.text,
                created_at=now(),
            )
            .on_conflict_do_nothing(index_elements=[outbox.c.message_id])
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(insert)).rowcount == 1

    async def record_sandbox_deliveries(self, outs: list[Outbound]) -> list[str]:
        """`record_sandbox_delivery` for many replies in one transaction: keep each one not
        kept before and mark it `sandboxed`; return the message_ids kept now, in order.

        The unique message_id still decides (a reply kept before, or twice in `outs`, is kept
        once), so a redelivered chunk changes nothing and sets no status again."""
        rows, seen = [], set()
        at = now()
        for out in outs:
            if out.message_id not in seen:
                seen.add(out.message_id)
                rows.append(
                    {
                        "message_id": out.message_id,
                        "conversation_id": out.conversation_id,
                        "channel": str(out.channel),
                        "recipient": out.to,
                        "kind": out.kind,
                        "text": out.text,
                        "created_at": at,
                    }
                )
        if not rows:
            return []
        insert = (
            _insert_for(self.engine.dialect.name)(outbox)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[outbox.c.message_id])
            .returning(outbox.c.message_id)
        )
        async with self.engine.begin() as conn:
            kept = set((await conn.execute(insert)).scalars().all())
            if kept:
                await conn.execute(
                    messages.update()
                    .where(messages.c.message_id.in_(sorted(kept)))
                    .values(delivery_status="sandboxed")
                )
        return [row["message_id"] for row in rows if row["message_id"] in kept]

    async def delivery_statuses(self, message_ids: list[str]) -> dict[str, str | None]:
        """The delivery status of each of these replies that is stored (absent: not stored)."""
        if not message_ids:
            return {}
        query = sa.select(messages.c.message_id, messages.c.delivery_status).where(
            messages.c.message_id.in_(sorted(set(message_ids)))
        )
        async with self.engine.connect() as conn:
            return {m: s for m, s in (await conn.execute(query)).all()}

    async def list_outbox(self, limit: int = 200) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                (await conn.execute(sa.select(outbox).order_by(outbox.c.seq.desc()).limit(limit)))
                .mappings()
                .all()
            )
        return [_jsonable(r) for r in rows]

    # --- threading lookups (email) --------------------------------------------------------

    async def conversation_key_by_message_ids(self, channel: str, ids: list[str]) -> str | None:
        """The conversation a reply belongs to: the newest of our messages whose provider id
        (inbound channel_message_id, outbound provider_message_id) is among `ids`."""
        if not ids:
            return None
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(conversations.c.conversation_key)
                    .join(messages, messages.c.conversation_id == conversations.c.id)
                    .where(messages.c.channel == channel)
                    .where(
                        messages.c.channel_message_id.in_(ids)
                        | messages.c.provider_message_id.in_(ids)
                    )
                    .order_by(messages.c.seq.desc())
                    .limit(1)
                )
            ).first()
        return row[0] if row else None

    async def conversation_by_ticket(self, ticket: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(conversations).where(conversations.c.ticket == ticket)
                    )
                )
                .mappings()
                .first()
            )
        return _listing(row) if row else None

    # --- agents' view ---------------------------------------------------------------------

    async def _conversation(self, conn, conversation_id: str) -> dict[str, Any] | None:
        row = (
            (
                await conn.execute(
                    sa.select(conversations).where(conversations.c.id == conversation_id)
                )
            )
            .mappings()
            .first()
        )
        return _listing(row) if row else None

    async def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            conv = await self._conversation(conn, conversation_id)
            if conv is None:
                return None
            rows = (
                (
                    await conn.execute(
                        sa.select(messages)
                        .where(messages.c.conversation_id == conversation_id)
                        .order_by(messages.c.seq)
                    )
                )
                .mappings()
                .all()
            )
        conv["messages"] = [_message(r) for r in rows]
        return conv

    async def queue_conversations(self, queue: str) -> list[dict[str, Any]]:
        """Open conversations in dispatch order: most urgent first, then oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(conversations)
                        .where(conversations.c.queue == queue)
                        .where(conversations.c.status != "resolved")
                        .order_by(*DISPATCH_ORDER)
                    )
                )
                .mappings()
                .all()
            )
        return [_listing(r) for r in rows]

    async def agent_conversations(self, username: str) -> list[dict[str, Any]]:
        """What an agent holds, in dispatch order: critical first, in their list too."""
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(conversations)
                        .where(
                            conversations.c.assignee == username,
                            conversations.c.status == "assigned",
                        )
                        .order_by(*DISPATCH_ORDER)
                    )
                )
                .mappings()
                .all()
            )
        return [_listing(r) for r in rows]

    async def queue_summaries(self) -> dict[str, dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        conversations.c.queue,
                        sa.func.count(),
                        sa.func.min(conversations.c.created_at),
                    )
                    .where(conversations.c.status == "waiting")
                    .group_by(conversations.c.queue)
                )
            ).all()
        return {
            queue: {"waiting": count, "oldest_wait_seconds": _age(_utc(oldest))}
            for queue, count, oldest in rows
        }

    async def claim(self, conversation_id: str, username: str) -> bool:
        """The agent takes (or accepts an offer of) the conversation; they become the customer's
        last agent, whom a returning customer goes back to."""
        at = now()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .where(conversations.c.status != "resolved")
                .where(conversations.c.assignee.is_(None) | (conversations.c.assignee == username))
                .values(
                    assignee=username,
                    status="assigned",
                    updated_at=at,
                    assigned_at=sa.func.coalesce(conversations.c.assigned_at, at),
                    accepted_at=sa.func.coalesce(conversations.c.accepted_at, at),
                )
            )
            if result.rowcount != 1:
                return False
            key = (
                await conn.execute(
                    sa.select(conversations.c.conversation_key).where(
                        conversations.c.id == conversation_id
                    )
                )
            ).scalar_one()
            await conn.execute(
                customer_agents.delete().where(customer_agents.c.conversation_key == key)
            )
            await conn.execute(
                customer_agents.insert().values(conversation_key=key, username=username, at=at)
            )
            return True

    async def resolve(self, conversation_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .where(conversations.c.status != "resolved")
                .values(status="resolved", updated_at=now())
            )
            return result.rowcount == 1

    async def transfer(self, conversation_id: str, queue: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .where(conversations.c.status != "resolved")
                .values(
                    queue=queue,
                    status="waiting",
                    assignee=None,
                    updated_at=now(),
                    assigned_at=None,
                    accepted_at=None,
                    rule="transfer",
                    ladder_step=0,
                    step_due_at=None,
                )
            )
            return result.rowcount == 1

    # --- credentials ----------------------------------------------------------------------

    async def set_password(self, username: str, password: str) -> None:
        hashed = hash_password(password)
        async with self.engine.begin() as conn:
            await conn.execute(
                agent_credentials.delete().where(agent_credentials.c.username == username)
            )
            await conn.execute(
                agent_credentials.insert().values(username=username, password_hash=hashed)
            )

    async def has_password(self, username: str) -> bool:
        async with self.engine.connect() as conn:
            row = await conn.execute(
                sa.select(agent_credentials.c.username).where(
                    agent_credentials.c.username == username
                )
            )
            return row.first() is not None

    async def check_password(self, username: str, password: str) -> bool:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(agent_credentials.c.password_hash).where(
                        agent_credentials.c.username == username
                    )
                )
            ).first()
        return row is not None and check_password(password, row[0])

    async def issue_token(self, username: str, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(
                agent_tokens.insert().values(
                    token_hash=token_hash(token),
                    username=username,
                    expires_at=now() + timedelta(seconds=ttl_seconds),
                )
            )
        return token

    async def token_user(self, token: str) -> str | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(agent_tokens.c.username, agent_tokens.c.expires_at).where(
                        agent_tokens.c.token_hash == token_hash(token)
                    )
                )
            ).first()
        if row is None or _utc(row[1]) < now():
            return None
        return row[0]

    # --- verified identities --------------------------------------------------------------

    async def link_identity(self, channel: str, channel_user_id: str, phone: str) -> None:
        """Record a phone number the channel verified for this user; a newer one replaces it.
        Call it only with a verified number: this is what agents trust as the customer's phone."""
        async with self.engine.begin() as conn:
            await conn.execute(
                identities.delete()
                .where(identities.c.channel == channel)
                .where(identities.c.channel_user_id == channel_user_id)
            )
            await conn.execute(
                identities.insert().values(
                    channel=channel, channel_user_id=channel_user_id, phone=phone, verified_at=now()
                )
            )

    async def identity_for(self, channel: str, channel_user_id: str) -> dict[str, Any] | None:
        """The verified phone of a channel's user, as {"phone", "verified_at"}, or None."""
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(identities.c.phone, identities.c.verified_at)
                        .where(identities.c.channel == channel)
                        .where(identities.c.channel_user_id == channel_user_id)
                    )
                )
                .mappings()
                .first()
            )
        return _jsonable(row) if row else None

    # --- customers' attributes -----------------------------------------------------------

    async def set_customer_attributes(self, address: str, attributes: dict[str, Any]) -> None:
        """What routing filters see as `customer.*` for this address (vip, segment ...)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                customer_profiles.delete().where(customer_profiles.c.address == address)
            )
            await conn.execute(
                customer_profiles.insert().values(
                    address=address, attributes=attributes, updated_at=now()
                )
            )

    async def customer_attributes(self, address: str) -> dict[str, Any]:
        return (await self.customer_attributes_many([address])).get(address, {})

    async def customer_attributes_many(self, addresses: list[str]) -> dict[str, dict[str, Any]]:
        """What is known of each of these customers; an address with nothing known is absent."""
        if not addresses:
            return {}
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(customer_profiles.c.address, customer_profiles.c.attributes).where(
                        customer_profiles.c.address.in_(sorted(set(addresses)))
                    )
                )
            ).all()
        return {address: dict(attributes) for address, attributes in rows}

    # --- chat sessions --------------------------------------------------------------------

    async def new_chat_session(self, name: str | None) -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        key = f"chat:{uuid.uuid4().hex}"
        async with self.engine.begin() as conn:
            await conn.execute(
                chat_sessions.insert().values(
                    token_hash=token_hash(token), conversation_key=key, name=name, created_at=now()
                )
            )
        return token, key

    async def chat_session(self, token: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(chat_sessions.c.conversation_key, chat_sessions.c.name).where(
                            chat_sessions.c.token_hash == token_hash(token)
                        )
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    async def history(self, conversation_key: str) -> list[dict[str, Any]]:
        """Every message of every conversation under one key, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(messages)
                        .join(conversations, conversations.c.id == messages.c.conversation_id)
                        .where(conversations.c.conversation_key == conversation_key)
                        .order_by(messages.c.seq)
                    )
                )
                .mappings()
                .all()
            )
        return [_message(r) for r in rows]


def _place_inbound(
    envelope: Envelope,
    queue: str,
    placement: dict[str, Any],
    open_conv: dict[str, Any] | None,
    at: datetime,
) -> tuple[dict[str, Any], bool, bool, dict[str, Any]]:
    """Where a new message goes: a new conversation, or the open one (changed in place).
    Returns the conversation's row as it is now, created, requeued, and the changed columns."""
    c = envelope.classification
    assert c is not None
    if open_conv is None:
        conv_id = uuid.uuid4().hex
        row: dict[str, Any] = {column.name: None for column in conversations.columns}
        row.update(
            id=conv_id,
            ticket=_ticket(conv_id),
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
            preview=envelope.text[:200],
            priority=0,  # the columns' server defaults, unless the placement says otherwise
            ladder_step=0,
            rules_version=c.rules_version,
            created_at=envelope.received_at,
            updated_at=at,
        )
        row.update(placement)
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
        earlier = _utc(open_conv["sla_due_at"])
        if earlier is not None and placement.get("sla_due_at") is not None:
            values["sla_due_at"] = min(earlier, placement["sla_due_at"])
        if queue != open_conv["queue"]:  # a new queue: its own agents take it from the top
            values.update(status="waiting", assignee=None, assigned_at=None, accepted_at=None)
    open_conv.update(values)
    return open_conv, False, requeued, values


def _inbound_row(
    envelope: Envelope, conversation_id: str, decision: dict[str, Any] | None
) -> dict[str, Any]:
    c = envelope.classification
    assert c is not None
    return {
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
        "published": True,
        "delivery_status": None,
        "created_at": envelope.received_at,
    }


def _outbound_row(out: Outbound) -> dict[str, Any]:
    """A reply as stored: unpublished until Kafka acknowledged it (see OutboundRelay)."""
    return {
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
        "published": False,
        "delivery_status": "queued",
        "created_at": out.created_at,
    }


def _insert_for(dialect: str):
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING (both SQLite and PostgreSQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _ticket(conversation_id: str) -> str:
    return "T" + conversation_id[:8].upper()


def _age(at: datetime | None) -> float:
    return round((now() - at).total_seconds(), 1) if at else 0.0


def _jsonable(row) -> dict[str, Any]:
    return {
        k: (_utc(v).isoformat() if isinstance(v, datetime) else v) for k, v in dict(row).items()
    }


def _listing(row) -> dict[str, Any]:
    out = _jsonable(row)
    out["urgency"] = Urgency(row["urgency"]).value
    out["waiting_seconds"] = _age(_utc(row["created_at"]))
    return out


def _message(row) -> dict[str, Any]:
    out = _jsonable(row)
    out["id"] = out.pop("message_id")
    out.pop("published", None)
    return out


def _add_missing_columns(sync_conn) -> None:
    """A database made by an older version gains the columns added since (all nullable or
    defaulted); create_all makes missing tables but never alters one that exists."""
    inspector = sa.inspect(sync_conn)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            kind = column.type.compile(dialect=sync_conn.dialect)
            default = (
                f" DEFAULT {column.server_default.arg}" if column.server_default is not None else ""
            )
            null = "" if column.nullable else " NOT NULL"
            sync_conn.execute(
                sa.text(
                    f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{default}{null}'
                )
            )


def _ensure_sqlite_dir(url: str) -> None:
    from pathlib import Path

    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    # WAL with NORMAL survives a crash of the router (not of the machine) without an fsync
    # per commit: the durable record of a message is Kafka until the consumer commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
