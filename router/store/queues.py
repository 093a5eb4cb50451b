"""Conversations as agents see and handle them: one with its messages, a queue's or an
agent's in dispatch order, claim, resolve and transfer; and the email threading lookups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.core.envelope import now
from router.store.database import Repository
from router.store.rows import age_seconds, listing, message_dict, utc
from router.store.schema import DISPATCH_ORDER, conversations, customer_agents, messages
from router.store.storable import fit


class ConversationQueues(Repository):
    async def conversation_by_message_ids(
        self, channel: str, ids: list[str]
    ) -> dict[str, Any] | None:
        """The conversation a reply claims to belong to: the one holding the newest of our
        messages whose provider id (inbound channel_message_id, outbound provider_message_id)
        is among `ids`. Whose it is (`customer_address`) is for the caller to check."""
        if not ids:
            return None
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(conversations)
                        .join(messages, messages.c.conversation_id == conversations.c.id)
                        .where(messages.c.channel == channel)
                        .where(
                            messages.c.channel_message_id.in_(
                                [fit(messages.c.channel_message_id, i) for i in ids]
                            )
                            | messages.c.provider_message_id.in_(
                                [fit(messages.c.provider_message_id, i) for i in ids]
                            )
                        )
                        .order_by(messages.c.seq.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
        return listing(row) if row else None

    async def conversation_by_key(self, conversation_key: str) -> dict[str, Any] | None:
        """The newest conversation under a key, resolved or not."""
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(conversations)
                        .where(
                            conversations.c.conversation_key
                            == fit(conversations.c.conversation_key, conversation_key)
                        )
                        .order_by(conversations.c.created_at.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
        return listing(row) if row else None

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
        return listing(row) if row else None

    # --- agents' view ---------------------------------------------------------------------

    async def _conversation(
        self, conn: AsyncConnection, conversation_id: str
    ) -> dict[str, Any] | None:
        row = (
            (
                await conn.execute(
                    sa.select(conversations).where(conversations.c.id == conversation_id)
                )
            )
            .mappings()
            .first()
        )
        return listing(row) if row else None

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
        conv["messages"] = [message_dict(r) for r in rows]
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
        return [listing(r) for r in rows]

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
        return [listing(r) for r in rows]

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
            queue: {"waiting": count, "oldest_wait_seconds": age_seconds(utc(oldest))}
            for queue, count, oldest in rows
        }

    async def claim(self, conversation_id: str, username: str) -> bool:
        """The agent takes (or accepts an offer of) the conversation; they become the customer's
        last agent, whom a returning customer goes back to."""
        at = now()
        async with self.write() as conn:
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
        async with self.write() as conn:
            result = await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .where(conversations.c.status != "resolved")
                .values(status="resolved", updated_at=now())
            )
            return result.rowcount == 1

    async def transfer(self, conversation_id: str, queue: str) -> bool:
        async with self.write() as conn:
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

    async def first_customer_messages(
        self, since: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """Each conversation's first customer message, as it was stored (already redacted),
        oldest conversation first: what `supportrouter replay` routes again."""
        first = (
            sa.select(messages.c.conversation_id, sa.func.min(messages.c.seq).label("seq"))
            .where(messages.c.direction == "in")
            .group_by(messages.c.conversation_id)
            .subquery()
        )
        query = (
            sa.select(
                conversations.c.id,
                conversations.c.ticket,
                conversations.c.conversation_key,
                conversations.c.customer_address,
                conversations.c.created_at,
                messages,
            )
            .join(first, first.c.conversation_id == conversations.c.id)
            .join(messages, messages.c.seq == first.c.seq)
            .order_by(conversations.c.created_at)
            .limit(limit)
        )
        if since is not None:
            query = query.where(conversations.c.created_at >= since)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]
