"""Assignment's statements: agents' status and load, the conversations waiting for an agent,
offering one to an agent, taking back the ones an agent let go silent, and each customer's last
agent. Which agent gets what is decided in `router.services.assignment`; this is how it is read
and written.

Safe with several dispatcher processes on PostgreSQL: each conversation is taken with
SELECT ... FOR UPDATE SKIP LOCKED and changed only while still waiting, and the chosen agent's
row is locked while their load is counted again, so no conversation is assigned twice and no
agent goes over capacity. (SQLite has one writer at a time; the same guards keep it correct.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.store.cases import case_owner
from router.store.database import Repository
from router.store.schema import (
    DISPATCH_ORDER,
    agent_state,
    assignments,
    conversations,
    customer_agents,
)
from router.store.storable import fit
from router.store.value_lists import listed, one_of

Loads = dict[tuple[str, str], int]  # (username, channel) -> open conversations

# Every dispatcher chunk asks: built once (see value_lists.py).
_LAST_AGENTS = sa.select(customer_agents.c.conversation_key, customer_agents.c.username).where(
    one_of(customer_agents.c.conversation_key, listed("keys")),
    customer_agents.c.at >= sa.bindparam("since"),
)


class Assignments(Repository):
    # --- agents' status and load -------------------------------------------------------------

    async def set_status(self, username: str, status: str, at: datetime) -> None:
        async with self.write() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(agent_state)
                        .where(agent_state.c.username == username)
                        .with_for_update()
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                await conn.execute(
                    agent_state.insert().values(
                        username=username, status=status, status_at=at, idle_since=at
                    )
                )
            elif row["status"] != status:
                # Becoming available counts as the start of idle time: no credit for time away.
                idle = at if status == "available" else row["idle_since"]
                await conn.execute(
                    agent_state.update()
                    .where(agent_state.c.username == username)
                    .values(status=status, status_at=at, idle_since=idle)
                )

    async def agent_state(self, username: str) -> tuple[Any, Loads]:
        """An agent's status row (None if they never set one), and every agent's load."""
        async with self.engine.connect() as conn:
            state = (
                (
                    await conn.execute(
                        sa.select(agent_state).where(agent_state.c.username == username)
                    )
                )
                .mappings()
                .first()
            )
            loads = await _loads(conn)
        return state, loads

    async def presence(
        self, *, waiting: bool = True
    ) -> tuple[set[str], Loads, Counter[tuple[str, int, int]]]:
        """Who is available, what each holds, and (with `waiting`) how many conversations wait
        per (queue, priority, urgency rank): read on one connection. With nobody available,
        neither is read: both only count for an available agent (who could take a conversation,
        and the wait quoted when one could), and in a spike the count reads every conversation
        still waiting, on every chunk a dispatcher stores."""
        async with self.engine.connect() as conn:
            available = await _available(conn)
            counts: Counter[tuple[str, int, int]] = Counter()
            if not available:
                return available, {}, counts
            loads = await _loads(conn)
            if waiting:
                rows = await conn.execute(
                    sa.select(
                        conversations.c.queue,
                        conversations.c.priority,
                        conversations.c.urgency_rank,
                        sa.func.count(),
                    )
                    .where(conversations.c.status == "waiting")
                    .group_by(
                        conversations.c.queue,
                        conversations.c.priority,
                        conversations.c.urgency_rank,
                    )
                )
                counts.update(
                    {(queue, priority, rank): n for queue, priority, rank, n in rows.all()}
                )
        return available, loads, counts

    # --- offering waiting conversations ------------------------------------------------------

    async def waiting_to_offer(
        self, staffed: Callable[[set[str]], Collection[str]], limit: int
    ) -> list[str]:
        """Waiting conversations nobody holds, in dispatch order, in the queues `staffed` names
        for the agents available now (none when nobody is)."""
        async with self.engine.connect() as conn:
            available = await _available(conn)
            if not available:
                return []
            return list(
                (
                    await conn.execute(
                        sa.select(conversations.c.id)
                        .where(
                            conversations.c.status == "waiting", conversations.c.assignee.is_(None)
                        )
                        .where(conversations.c.queue.in_(staffed(available)))
                        .order_by(*DISPATCH_ORDER)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )

    @asynccontextmanager
    async def offering(self, conversation_id: str) -> AsyncIterator[Offer]:
        """One transaction offering a conversation: locked if it still waits for an agent and
        no other dispatcher holds it (`Offer.conversation` is None otherwise)."""
        async with self.write() as conn:
            conversation = (
                (
                    await conn.execute(
                        sa.select(conversations)
                        .where(conversations.c.id == conversation_id)
                        .where(
                            conversations.c.status == "waiting", conversations.c.assignee.is_(None)
                        )
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .first()
            )
            yield Offer(conn, conversation_id, conversation)

    # --- taking back what agents let go silent -----------------------------------------------

    async def overdue(
        self, accept_before: datetime | None, answer_before: datetime | None
    ) -> list[str]:
        """Assigned conversations offered before `accept_before` and not accepted, or accepted
        before `answer_before` and not answered, in dispatch order (None: no such limit)."""
        overdue = _overdue(accept_before, answer_before)
        if overdue is None:
            return []
        async with self.engine.connect() as conn:
            return list(
                (
                    await conn.execute(
                        sa.select(conversations.c.id)
                        .where(conversations.c.status == "assigned", overdue)
                        .order_by(*DISPATCH_ORDER)
                    )
                )
                .scalars()
                .all()
            )

    async def release(
        self,
        conversation_id: str,
        accept_before: datetime | None,
        answer_before: datetime | None,
        at: datetime,
        away_after_lapses: int,
    ) -> tuple[Any, str, bool] | None:
        """Put a conversation that is still overdue back to waiting and end its agent's
        assignment: `lapsed` (offered, not accepted) or `timed_out` (accepted, not answered).
        An agent whose last `away_after_lapses` offers all lapsed goes away (0: never). The
        conversation as it was, why (not_accepted, not_answered) and whether its agent was set
        away; None if it is no longer overdue or another dispatcher holds it."""
        still_overdue = _overdue(accept_before, answer_before)
        async with self.write() as conn:
            conv = (
                (
                    await conn.execute(
                        sa.select(conversations)
                        .where(
                            conversations.c.id == conversation_id,
                            conversations.c.status == "assigned",
                            still_overdue,
                        )
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .first()
            )
            if conv is None:
                return None
            reason = "not_accepted" if conv["accepted_at"] is None else "not_answered"
            await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .values(
                    status="waiting",
                    assignee=None,
                    assigned_at=None,
                    accepted_at=None,
                    updated_at=at,
                )
            )
            await conn.execute(
                assignments.update()
                .where(
                    assignments.c.conversation_id == conversation_id,
                    assignments.c.username == conv["assignee"],
                )
                .where(assignments.c.ended.is_(None))
                .values(ended="lapsed" if reason == "not_accepted" else "timed_out")
            )
            away = False
            if reason == "not_accepted" and away_after_lapses:
                last = (
                    await conn.execute(
                        sa.select(assignments.c.ended)
                        .where(assignments.c.username == conv["assignee"])
                        .order_by(assignments.c.seq.desc())
                        .limit(away_after_lapses)
                    )
                ).scalars()
                if sum(e == "lapsed" for e in last) == away_after_lapses:
                    result = await conn.execute(
                        agent_state.update()
                        .where(
                            agent_state.c.username == conv["assignee"],
                            agent_state.c.status == "available",
                        )
                        .values(status="away", status_at=at)
                    )
                    away = result.rowcount == 1
        return conv, reason, away

    # --- lookups -----------------------------------------------------------------------------

    async def urgency(self, conversation_id: str) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    sa.select(conversations.c.urgency).where(conversations.c.id == conversation_id)
                )
            ).scalar()

    async def last_agents(self, conversation_keys: list[str], since: datetime) -> dict[str, str]:
        """Each customer's last agent, if they accepted a conversation of theirs since `since`."""
        if not conversation_keys:
            return {}
        # Found by the key as stored (a long one is shortened), answered by the key asked.
        asked = {fit(customer_agents.c.conversation_key, k): k for k in conversation_keys}
        async with self.engine.connect() as conn:
            rows = await conn.execute(_LAST_AGENTS, {"keys": sorted(asked), "since": since})
            return {asked[key]: username for key, username in rows.all()}


class Offer:
    """The statements of one offer, inside its transaction (`Assignments.offering`)."""

    def __init__(self, conn: AsyncConnection, conversation_id: str, conversation: Any):
        self._conn, self.conversation_id, self.conversation = conn, conversation_id, conversation

    async def available_agents(self) -> dict[str, Any]:
        """Each available agent's status row, by username."""
        return {
            r["username"]: r
            for r in (
                await self._conn.execute(
                    sa.select(agent_state).where(agent_state.c.status == "available")
                )
            ).mappings()
        }

    async def loads(self, username: str | None = None) -> Loads:
        return await _loads(self._conn, username)

    async def missed_by(self) -> set[str]:
        """The agents who let an offer of this conversation lapse or time out."""
        return set(
            (
                await self._conn.execute(
                    sa.select(assignments.c.username).where(
                        assignments.c.conversation_id == self.conversation_id,
                        assignments.c.ended.in_(("lapsed", "timed_out")),
                    )
                )
            ).scalars()
        )

    async def last_agent(self, conversation_key: str, since: datetime) -> str | None:
        """The customer's last agent, if they accepted a conversation of theirs since `since`."""
        return (
            await self._conn.execute(
                sa.select(customer_agents.c.username)
                .where(customer_agents.c.conversation_key == conversation_key)
                .where(customer_agents.c.at >= since)
            )
        ).scalar()

    async def case_owner(self) -> str | None:
        """The agent who owns this conversation's case (router/store/cases.py), if anyone."""
        return await case_owner(self._conn, self.conversation_id)

    async def lock_agent(self, username: str) -> str | None:
        """Lock the agent's row until the offer is made; their status."""
        return (
            await self._conn.execute(
                sa.select(agent_state.c.status)
                .where(agent_state.c.username == username)
                .with_for_update()
            )
        ).scalar()

    async def take(self, username: str, reason: str, worker: str, at: datetime) -> bool:
        """Give the conversation to the agent if it still waits; record the assignment and
        restart the agent's idle time. False if it no longer waits."""
        taken = await self._conn.execute(
            conversations.update()
            .where(conversations.c.id == self.conversation_id)
            .where(conversations.c.status == "waiting", conversations.c.assignee.is_(None))
            .values(
                assignee=username,
                status="assigned",
                assigned_at=at,
                accepted_at=None,
                step_due_at=None,
                updated_at=at,
            )
        )
        if taken.rowcount != 1:
            return False
        await self._conn.execute(
            agent_state.update().where(agent_state.c.username == username).values(idle_since=at)
        )
        await self._conn.execute(
            assignments.insert().values(
                conversation_id=self.conversation_id,
                username=username,
                reason=reason,
                worker=worker,
                at=at,
            )
        )
        return True


def _overdue(accept_before: datetime | None, answer_before: datetime | None) -> Any:
    overdue = []
    if accept_before is not None:
        overdue.append(
            (conversations.c.accepted_at.is_(None)) & (conversations.c.assigned_at <= accept_before)
        )
    if answer_before is not None:
        overdue.append(
            (conversations.c.accepted_at.is_not(None))
            & (conversations.c.first_response_at.is_(None))
            & (conversations.c.accepted_at <= answer_before)
        )
    return sa.or_(*overdue) if overdue else None


_AVAILABLE = sa.select(agent_state.c.username).where(agent_state.c.status == "available")


async def _available(conn: AsyncConnection) -> set[str]:
    return set((await conn.execute(_AVAILABLE)).scalars())


async def _loads(conn: AsyncConnection, username: str | None = None) -> Loads:
    """Open conversations each agent holds, per channel."""
    query = (
        sa.select(conversations.c.assignee, conversations.c.channel, sa.func.count())
        .where(conversations.c.status == "assigned", conversations.c.assignee.is_not(None))
        .group_by(conversations.c.assignee, conversations.c.channel)
    )
    if username is not None:
        query = query.where(conversations.c.assignee == username)
    return {(user, channel): n for user, channel, n in (await conn.execute(query)).all()}
