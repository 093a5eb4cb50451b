"""Assignment: which agent gets a waiting conversation, and taking it back when they go silent.

An agent is eligible when they are `available`, belong to the conversation's queue, have every
skill the queue asks for, speak the customer's language, and have room on that channel
(config/agents.yaml capacity). Among the eligible, the customer's last agent comes first when
they accepted a conversation of this customer within the window; otherwise the agent idle
longest. Waiting conversations are taken in dispatch order, so a critical one never waits
behind a lower one for any agent.

Safe with several dispatcher processes on PostgreSQL: each conversation is taken with
SELECT ... FOR UPDATE SKIP LOCKED and changed only while still waiting, and the chosen agent's
row is locked while their load is counted again, so no conversation is assigned twice and no
agent goes over capacity. (SQLite has one writer at a time; the same guards keep it correct.)
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
import structlog

from router.core.envelope import QueueEvent
from router.observability.metrics import ASSIGNED, REASSIGNED
from router.operator_files.config import RouterConfig
from router.operator_files.schemas.agents import Agent
from router.operator_files.schemas.common import LANGUAGES
from router.policy.rules import Rules
from router.store.conversations import ConversationStore
from router.store.rows import utc
from router.store.schema import (
    DISPATCH_ORDER,
    agent_state,
    assignments,
    conversations,
    customer_agents,
)
from router.store.storable import fit

log = structlog.get_logger("router.services.assignment")

AgentStatus = Literal["available", "away", "offline"]
STATUSES: tuple[AgentStatus, ...] = ("available", "away", "offline")
PublishEvent = Callable[[QueueEvent], Awaitable[None]]
_RETRIES = 3


@dataclass(frozen=True)
class Assigned:
    conversation_id: str
    queue: str
    username: str
    reason: str  # longest_idle | returning


class Assigner:
    def __init__(
        self,
        store: ConversationStore,
        rules: Rules,
        clock: Any,
        publish: PublishEvent | None = None,
        worker: str | None = None,
    ):
        self.store, self.rules, self.clock, self.publish = store, rules, clock, publish
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def config(self) -> RouterConfig:
        return self.rules.config

    # --- agents' status ---------------------------------------------------------------------

    async def set_status(self, username: str, status: AgentStatus) -> dict[str, Any]:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        at = self.clock.now()
        async with self.store.engine.begin() as conn:
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
        log.info("agent.status", username=username, status=status)
        return await self.agent_view(username)

    async def agent_view(self, username: str) -> dict[str, Any]:
        """An agent's status and load per channel, as the API shows it."""
        async with self.store.engine.connect() as conn:
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
        agent = self.config.agent(username)
        channels = sorted(
            {ch for (user, ch) in loads if user == username}
            | set(self.config.agents.default_capacity)
        )
        return {
            "username": username,
            "status": state["status"] if state else "offline",
            "status_since": utc(state["status_at"]).isoformat() if state else None,
            "load": {
                ch: {
                    "open": loads.get((username, ch), 0),
                    "capacity": self.config.agents.capacity(agent, ch) if agent else 0,
                }
                for ch in channels
            },
        }

    # --- who could take a conversation -------------------------------------------------------

    def eligible(self, agent: Agent, queue: str, language: str, channel: str, load: int) -> bool:
        q = self.config.routing.queues.get(queue)
        return (
            q is not None
            and queue in agent.queues
            and set(q.skills) <= set(agent.skills)
            and (language in agent.languages or language not in LANGUAGES)
            and load < self.config.agents.capacity(agent, channel)
        )

    async def availability(self, language: str, channel: str) -> Callable[[str], bool]:
        """A snapshot: could an available agent with room take a conversation in this queue now?"""
        return (await self.snapshot(waiting=False)).availability(language, channel)

    async def expected_wait_seconds(
        self, queue: str, language: str, channel: str, priority: int, critical: bool
    ) -> float:
        """Conversations ahead of this one, shared among the agents who could take them, times
        the queue's expected handling time."""
        return (await self.snapshot()).expected_wait_seconds(
            queue, language, channel, priority, critical
        )

    async def snapshot(self, *, waiting: bool = True) -> Snapshot:
        """Who is available, what each holds, and (with `waiting`) what waits in each queue: read
        once, then asked many times (a dispatcher's batch decides every message from one)."""
        async with self.store.engine.connect() as conn:
            available = await _available(conn)
            loads = await _loads(conn)
            counts: Counter[tuple[str, int, int]] = Counter()
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
        return Snapshot(self, available, loads, counts)

    # --- assignment --------------------------------------------------------------------------

    async def assign_waiting(self, limit: int = 100) -> list[Assigned]:
        """Offer waiting conversations, in dispatch order, to eligible agents; return the offers."""
        async with self.store.engine.connect() as conn:
            available = await _available(conn)
            if not available:
                return []
            staffed_queues = {
                q for a in self.config.agents.agents if a.username in available for q in a.queues
            }
            ids = (
                (
                    await conn.execute(
                        sa.select(conversations.c.id)
                        .where(
                            conversations.c.status == "waiting", conversations.c.assignee.is_(None)
                        )
                        .where(conversations.c.queue.in_(staffed_queues))
                        .order_by(*DISPATCH_ORDER)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        done = []
        for conversation_id in ids:
            for _ in range(_RETRIES):
                outcome = await self._assign_one(conversation_id)
                if outcome != "retry":
                    break
            if isinstance(outcome, Assigned):
                done.append(outcome)
                await self._announce(outcome)
        return done

    async def _assign_one(self, conversation_id: str) -> Assigned | Literal["retry"] | None:
        at = self.clock.now()
        async with self.store.engine.begin() as conn:
            conv = (
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
            if conv is None:  # another dispatcher holds it, or it is no longer waiting
                return None
            pick = await self._choose(conn, conv, at)
            if pick is None:
                return None
            username, reason = pick
            # Lock the agent, then count their load again: another process may have just
            # given them a conversation on this channel.
            status = (
                await conn.execute(
                    sa.select(agent_state.c.status)
                    .where(agent_state.c.username == username)
                    .with_for_update()
                )
            ).scalar()
            load = (await _loads(conn, username)).get((username, conv["channel"]), 0)
            agent = self.config.agent(username)
            if (
                status != "available"
                or agent is None
                or not self.eligible(agent, conv["queue"], conv["language"], conv["channel"], load)
            ):
                return "retry"
            taken = await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
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
                return None
            await conn.execute(
                agent_state.update().where(agent_state.c.username == username).values(idle_since=at)
            )
            await conn.execute(
                assignments.insert().values(
                    conversation_id=conversation_id,
                    username=username,
                    reason=reason,
                    worker=self.worker,
                    at=at,
                )
            )
        ASSIGNED.labels(queue=conv["queue"], reason=reason).inc()
        log.info(
            "conversation.assigned",
            conversation_id=conversation_id,
            queue=conv["queue"],
            username=username,
            reason=reason,
            worker=self.worker,
        )
        return Assigned(conversation_id, conv["queue"], username, reason)

    async def _choose(self, conn, conv, at: datetime) -> tuple[str, str] | None:
        states = {
            r["username"]: r
            for r in (
                await conn.execute(
                    sa.select(agent_state).where(agent_state.c.status == "available")
                )
            ).mappings()
        }
        loads = await _loads(conn)
        missed = set(
            (
                await conn.execute(
                    sa.select(assignments.c.username).where(
                        assignments.c.conversation_id == conv["id"],
                        assignments.c.ended == "timed_out",
                    )
                )
            ).scalars()
        )
        candidates = [
            a
            for a in self.config.agents.agents
            if a.username in states
            and a.username not in missed
            and self.eligible(
                a,
                conv["queue"],
                conv["language"],
                conv["channel"],
                loads.get((a.username, conv["channel"]), 0),
            )
        ]
        if not candidates:
            return None
        window = self.config.routing.assignment.return_to_last_agent_seconds
        if window:
            last = (
                await conn.execute(
                    sa.select(customer_agents.c.username)
                    .where(customer_agents.c.conversation_key == conv["conversation_key"])
                    .where(customer_agents.c.at >= at - timedelta(seconds=window))
                )
            ).scalar()
            if last and any(a.username == last for a in candidates):
                return last, "returning"
        longest = min(candidates, key=lambda a: (utc(states[a.username]["idle_since"]), a.username))
        return longest.username, "longest_idle"

    # --- silent agents -----------------------------------------------------------------------

    async def reassign_timed_out(self) -> list[str]:
        """Take back offers nobody accepted in time, and conversations held without an answer."""
        rules = self.config.routing.assignment
        at = self.clock.now()
        overdue = []
        if rules.accept_timeout_seconds:
            overdue.append(
                (conversations.c.accepted_at.is_(None))
                & (
                    conversations.c.assigned_at
                    <= at - timedelta(seconds=rules.accept_timeout_seconds)
                )
            )
        if rules.answer_timeout_seconds:
            overdue.append(
                (conversations.c.accepted_at.is_not(None))
                & (conversations.c.first_response_at.is_(None))
                & (
                    conversations.c.accepted_at
                    <= at - timedelta(seconds=rules.answer_timeout_seconds)
                )
            )
        if not overdue:
            return []
        async with self.store.engine.connect() as conn:
            ids = (
                (
                    await conn.execute(
                        sa.select(conversations.c.id)
                        .where(conversations.c.status == "assigned", sa.or_(*overdue))
                        .order_by(*DISPATCH_ORDER)
                    )
                )
                .scalars()
                .all()
            )
        released = []
        for conversation_id in ids:
            if await self._release(conversation_id, sa.or_(*overdue), at):
                released.append(conversation_id)
        return released

    async def _release(self, conversation_id: str, still_overdue, at: datetime) -> bool:
        async with self.store.engine.begin() as conn:
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
                return False
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
                .values(ended="timed_out")
            )
            if reason == "not_accepted" and self.config.routing.assignment.away_after_missed_offer:
                await conn.execute(
                    agent_state.update()
                    .where(
                        agent_state.c.username == conv["assignee"],
                        agent_state.c.status == "available",
                    )
                    .values(status="away", status_at=at)
                )
        REASSIGNED.labels(reason=reason).inc()
        log.warning(
            "conversation.reassigning",
            conversation_id=conversation_id,
            username=conv["assignee"],
            reason=reason,
        )
        if self.publish is not None:
            await self.publish(
                QueueEvent(
                    type="conversation.released",
                    conversation_id=conversation_id,
                    queue=conv["queue"],
                    urgency=conv["urgency"],
                    status="waiting",
                    assignee=None,
                    at=at,
                )
            )
        return True

    async def _announce(self, done: Assigned) -> None:
        if self.publish is None:
            return
        async with self.store.engine.connect() as conn:
            urgency = (
                await conn.execute(
                    sa.select(conversations.c.urgency).where(
                        conversations.c.id == done.conversation_id
                    )
                )
            ).scalar()
        await self.publish(
            QueueEvent(
                type="conversation.assigned",
                conversation_id=done.conversation_id,
                queue=done.queue,
                urgency=urgency,
                status="assigned",
                assignee=done.username,
                at=self.clock.now(),
            )
        )


class Snapshot:
    """Assignment's view at one moment: which agents are available, what each holds per channel,
    and how many conversations wait per (queue, priority, urgency rank). A dispatcher's batch
    asks it for every message and tells it of the conversations the batch puts in a queue, so
    each quote counts the ones placed before it, as if they had been read back one by one."""

    def __init__(
        self,
        assigner: Assigner,
        available: set[str],
        loads: dict[tuple[str, str], int],
        waiting: Counter[tuple[str, int, int]],
    ):
        self.assigner, self.available, self.loads, self.waiting = (
            assigner,
            available,
            loads,
            waiting,
        )
        self.agents = [a for a in assigner.config.agents.agents if a.username in available]

    def availability(self, language: str, channel: str) -> Callable[[str], bool]:
        """Could an available agent with room take a conversation in this queue?"""
        eligible, loads = self.assigner.eligible, self.loads
        agents = self.agents

        def test(queue: str) -> bool:
            return any(
                eligible(a, queue, language, channel, loads.get((a.username, channel), 0))
                for a in agents
            )

        return test

    def expected_wait_seconds(
        self, queue: str, language: str, channel: str, priority: int, critical: bool
    ) -> float:
        q = self.assigner.config.routing.queues[queue]
        waiting = sum(
            n
            for (in_queue, p, rank), n in self.waiting.items()
            if in_queue == queue and (rank >= 3 if critical else p >= priority)
        )
        staff = sum(
            1 for a in self.agents if self.assigner.eligible(a, queue, language, channel, 0)
        )
        rounds = -(-(waiting + 1) // max(staff, 1))
        return float(rounds * q.expected_handle_seconds)

    def add_waiting(self, queue: str, priority: int, urgency_rank: int) -> None:
        self.waiting[(queue, priority, urgency_rank)] += 1


async def _available(conn) -> set[str]:
    rows = await conn.execute(
        sa.select(agent_state.c.username).where(agent_state.c.status == "available")
    )
    return set(rows.scalars())


async def _loads(conn, username: str | None = None) -> dict[tuple[str, str], int]:
    """Open conversations each agent holds, per channel."""
    query = (
        sa.select(conversations.c.assignee, conversations.c.channel, sa.func.count())
        .where(conversations.c.status == "assigned", conversations.c.assignee.is_not(None))
        .group_by(conversations.c.assignee, conversations.c.channel)
    )
    if username is not None:
        query = query.where(conversations.c.assignee == username)
    return {(user, channel): n for user, channel, n in (await conn.execute(query)).all()}


async def last_agent(
    store: ConversationStore, conversation_key: str, since: datetime
) -> str | None:
    return (await last_agents(store, [conversation_key], since)).get(conversation_key)


async def last_agents(
    store: ConversationStore, conversation_keys: list[str], since: datetime
) -> dict[str, str]:
    """Each customer's last agent, if they accepted a conversation of theirs since `since`."""
    if not conversation_keys:
        return {}
    # Found by the key as stored (a long one is shortened), answered by the key asked.
    asked = {fit(customer_agents.c.conversation_key, k): k for k in conversation_keys}
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(customer_agents.c.conversation_key, customer_agents.c.username).where(
                customer_agents.c.conversation_key.in_(sorted(asked)),
                customer_agents.c.at >= since,
            )
        )
        return {asked[key]: username for key, username in rows.all()}
