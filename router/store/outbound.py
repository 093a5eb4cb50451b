"""Replies: stored unpublished with their conversation's update (a row of `unpublished_replies`
beside each), marked published once Kafka has them (that row deleted), their delivery status, and
the sandbox outbox (what would have been sent)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.core.envelope import Outbound, now
from router.store.database import Repository, hold_sqlite_writes, insert_for
from router.store.rows import jsonable, outbound_row, unpublished_row
from router.store.schema import conversations, messages, outbox, unpublished_replies
from router.store.storable import fit, storable
from router.store.value_lists import as_arrays, listed, one_of, unnest_insert

# The statements every chunk runs, built once (see value_lists.py).
_MARK_PUBLISHED = unpublished_replies.delete().where(
    one_of(unpublished_replies.c.message_id, listed("ids"))
)
_IN_OUTBOX = sa.select(outbox.c.message_id).where(one_of(outbox.c.message_id, listed("ids")))
# PostgreSQL: a chunk's rows as one array a column, kept unless the outbox has the message; the
# ids kept come back. No lookup first: on a new database, a lookup prepared while the outbox was
# nearly empty kept a plan that reads the whole table (a generic plan, until the table is
# analyzed), a few milliseconds a chunk and growing.
_KEPT_COLUMNS = [column for column in outbox.columns if column.name != "seq"]  # as _outbox_row
_KEEP_IN_OUTBOX = unnest_insert(
    outbox, _KEPT_COLUMNS, " ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
)
_SANDBOXED = (
    messages.update()
    .where(one_of(messages.c.message_id, listed("ids")))
    .values(delivery_status="sandboxed")
)

# A reply with one of these statuses has not reached its provider, as far as the store knows:
# no status, waiting, or a send begun whose outcome was never recorded.
NOT_SENT_YET = (None, "queued", "sending", "resending")
IN_FLIGHT = ("sending", "resending")


@dataclass(frozen=True)
class SendIntent:
    """What the store holds of a reply's sends: its status, how many provider calls were begun
    for it, and when the latest began."""

    status: str | None
    attempts: int
    started_at: datetime | None


def not_sent_yet(column: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """`column` (a reply's delivery status) says it has not reached its provider yet."""
    statuses = [s for s in NOT_SENT_YET if s is not None]
    return column.is_(None) | column.in_(statuses)


def _unsent(skip_channels: Collection[str]) -> sa.Select[Any]:
    """The replies published (no row of `unpublished_replies`) and not sent yet."""
    pending = unpublished_replies.c
    unsent = sa.select(messages.c.message_id, messages.c.conversation_id).where(
        (messages.c.direction == "out")
        & not_sent_yet(messages.c.delivery_status)
        & ~sa.exists().where(pending.message_id == messages.c.message_id)
    )
    if skip_channels:
        unsent = unsent.where(messages.c.channel.not_in(sorted(skip_channels)))
    return unsent


def _requeue(unsent: sa.Select[Any]) -> sa.Insert:
    """Make these replies unpublished again."""
    return unpublished_replies.insert().from_select(["message_id", "conversation_id"], unsent)


class OutboundMessages(Repository):
    async def _insert_outbound(self, conn: AsyncConnection, out: Outbound) -> None:
        row = outbound_row(out)
        await conn.execute(messages.insert().values(**row))
        await conn.execute(unpublished_replies.insert().values(**unpublished_row(row)))

    async def add_outbound(self, out: Outbound) -> None:
        async with self.write() as conn:
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
        # The replies are found through the small table, each by its message id: never by a
        # read of `messages` in its order (what SQLite's planner picks for a join, to skip the
        # sort).
        pending = sa.select(unpublished_replies.c.message_id)
        if conversation_id is not None:
            pending = pending.where(unpublished_replies.c.conversation_id == conversation_id)
        if conversation_ids is not None:
            if not conversation_ids:
                return []
            pending = pending.where(
                one_of(unpublished_replies.c.conversation_id, sorted(set(conversation_ids)))
            )
        query = sa.select(messages.c.meta).where(messages.c.message_id.in_(pending))
        if older_than:
            query = query.where(messages.c.created_at < now() - timedelta(seconds=older_than))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(messages.c.seq))).all()
        return [Outbound.model_validate(r[0]["outbound"]) for r in rows]

    async def mark_published(self, *message_ids: str) -> None:
        """Kafka has these replies: their rows of `unpublished_replies` go."""
        if not message_ids:
            return
        async with self.write_one() as conn:
            await conn.execute(_MARK_PUBLISHED, {"ids": message_ids})

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
        values: dict[str, Any] = {"delivery_status": status}
        if detail is not None:
            values["delivery_detail"] = detail
        query = messages.update()
        if message_id is not None:
            query = query.where(messages.c.message_id == fit(messages.c.message_id, message_id))
            if provider_message_id is not None:
                values["provider_message_id"] = provider_message_id
        else:
            stored_id = fit(messages.c.provider_message_id, provider_message_id)
            query = query.where(messages.c.provider_message_id == stored_id)
        async with self.write() as conn:
            result = await conn.execute(query.values(**storable(messages, values)))
            return result.rowcount > 0

    async def record_send_intent(self, message_id: str, status: str = "sending") -> bool:
        """Before a provider call: mark the reply `status` (sending, or resending for the one
        retry of an unknown outcome), count the attempt and keep its time. False (nothing
        written) when the reply is not stored or has left already."""
        stored_id = fit(messages.c.message_id, message_id)
        query = (
            messages.update()
            .where((messages.c.message_id == stored_id) & not_sent_yet(messages.c.delivery_status))
            .values(
                delivery_status=status,
                send_attempts=sa.func.coalesce(messages.c.send_attempts, 0) + 1,
                send_started_at=now(),
            )
        )
        async with self.write() as conn:
            return (await conn.execute(query)).rowcount > 0

    async def clear_send_intent(self, message_id: str) -> bool:
        """After a provider call that failed (the provider said so): the reply is queued
        again, so its next attempt is an ordinary send, not an unknown outcome."""
        stored_id = fit(messages.c.message_id, message_id)
        query = (
            messages.update()
            .where((messages.c.message_id == stored_id) & messages.c.delivery_status.in_(IN_FLIGHT))
            .values(delivery_status="queued")
        )
        async with self.write() as conn:
            return (await conn.execute(query)).rowcount > 0

    async def send_intent(self, message_id: str) -> SendIntent | None:
        query = sa.select(
            messages.c.delivery_status, messages.c.send_attempts, messages.c.send_started_at
        ).where(messages.c.message_id == fit(messages.c.message_id, message_id))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        started = row[2]
        if started is not None and started.tzinfo is None:  # SQLite hands back naive UTC
            started = started.replace(tzinfo=UTC)
        return SendIntent(row[0], row[1] or 0, started)

    async def requeue_unsent(self, skip_channels: Collection[str] = ("chat",)) -> int:
        """Replies marked published but not sent yet (no status, queued, or a send begun)
        become unpublished again, so the OutboundRelay publishes them once more: for a broker
        that lost its records. Chat replies are skipped by default: the gateway delivers them
        and never moves their status past queued. Returns how many."""
        async with self.write() as conn:
            return (await conn.execute(_requeue(_unsent(skip_channels)))).rowcount

    async def unpublished_ids(self, skip_channels: Collection[str] = ("chat",)) -> list[str]:
        """The message ids of the replies Kafka has not acknowledged yet (not of `skip_channels`)."""
        pending = sa.select(unpublished_replies.c.message_id)
        query = sa.select(messages.c.message_id).where(messages.c.message_id.in_(pending))
        if skip_channels:
            query = query.where(messages.c.channel.not_in(sorted(skip_channels)))
        async with self.engine.connect() as conn:
            return sorted((await conn.execute(query)).scalars())

    async def requeue_published(self, message_ids: Collection[str]) -> tuple[list[str], int]:
        """Of these replies, the ones marked published since they were listed, and not sent yet,
        become unpublished again (`requeue_unsent` for them alone). Returns the ones still
        unpublished, to ask about again, and how many were put back."""
        ids = sorted(set(message_ids))
        if not ids:
            return [], 0
        pending = unpublished_replies.c
        async with self.write() as conn:
            await hold_sqlite_writes(conn)  # nobody marks one between the two statements
            still = set(
                (
                    await conn.execute(
                        sa.select(pending.message_id).where(one_of(pending.message_id, ids))
                    )
                ).scalars()
            )
            marked = [i for i in ids if i not in still]
            requeued = 0
            if marked:
                unsent = _unsent(()).where(one_of(messages.c.message_id, marked))
                requeued = (await conn.execute(_requeue(unsent))).rowcount
        return sorted(still), requeued

    async def record_sandbox_delivery(self, out: Outbound) -> bool:
        """Keep what would have been sent; False when this message was kept before."""
        # One statement: the unique message_id decides, so a redelivered reply is a no-op.
        insert = (
            insert_for(self.engine.dialect.name)(outbox)
            .values(_outbox_row(out, now()))
            .on_conflict_do_nothing(index_elements=[outbox.c.message_id])
        )
        async with self.write() as conn:
            return (await conn.execute(insert)).rowcount == 1

    async def record_sandbox_deliveries(self, outs: list[Outbound]) -> list[str]:
        """`record_sandbox_delivery` for many replies in one transaction: keep each one not
        kept before and mark it `sandboxed`; return the message_ids kept now, in order.

        The unique message_id still decides (a reply kept before, or twice in `outs`, is kept
        once), so a redelivered chunk changes nothing and sets no status again."""
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        at = now()
        for out in outs:
            if out.message_id not in seen:
                seen.add(out.message_id)
                rows.append(_outbox_row(out, at))
        if not rows:
            return []
        if self.engine.dialect.name == "postgresql":
            # One statement keeps each row the outbox lacks; ON CONFLICT keeps a row once if
            # another sender (a rebalance) keeps it at the same moment, and only one is told.
            async with self.write() as conn:
                kept = set((await conn.execute(_KEEP_IN_OUTBOX, as_arrays(rows))).scalars())
                if kept:
                    await conn.execute(_SANDBOXED, {"ids": sorted(kept)})
            return [row["message_id"] for row in rows if row["message_id"] in kept]
        # A handful of statements for the chunk: what the outbox has of it, then the others in
        # one executemany (the same statement for any chunk length, see value_lists.py) and
        # their status. The write lock is held from the lookup on, so nobody keeps one in
        # between.
        insert = insert_for(self.engine.dialect.name)(outbox).on_conflict_do_nothing(
            index_elements=[outbox.c.message_id]
        )
        ids = [row["message_id"] for row in rows]
        async with self.write() as conn:
            await hold_sqlite_writes(conn)
            before = set((await conn.execute(_IN_OUTBOX, {"ids": ids})).scalars())
            kept = set(ids) - before
            if kept:
                await conn.execute(insert, [row for row in rows if row["message_id"] in kept])
                await conn.execute(_SANDBOXED, {"ids": sorted(kept)})
        return [row["message_id"] for row in rows if row["message_id"] in kept]

    async def delivery_statuses(self, message_ids: list[str]) -> dict[str, str | None]:
        """The delivery status of each of these replies that is stored (absent: not stored)."""
        if not message_ids:
            return {}
        query = sa.select(messages.c.message_id, messages.c.delivery_status).where(
            one_of(messages.c.message_id, sorted(set(message_ids)))
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
        return [jsonable(r) for r in rows]


def _outbox_row(out: Outbound, at: datetime) -> dict[str, Any]:
    return storable(
        outbox,
        {
            "message_id": out.message_id,
            "conversation_id": out.conversation_id,
            "channel": str(out.channel),
            "recipient": out.to,
            "kind": out.kind,
            "text": out.text,
            "created_at": at,
        },
    )
