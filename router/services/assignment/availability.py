"""Agents' availability: their status (available, away, offline), their load and capacity per
channel, and who is eligible for a conversation; the snapshot of all of it that a dispatcher's
batch asks for every message."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import structlog

from router.operator_files.config import RouterConfig
from router.operator_files.schemas.agents import Agent
from router.operator_files.schemas.common import LANGUAGES
from router.policy.rules import Rules
from router.services.sla import Calendar
from router.store.conversations import ConversationStore
from router.store.rows import utc

log = structlog.get_logger("router.services.assignment")

AgentStatus = Literal["available", "away", "offline"]
STATUSES: tuple[AgentStatus, ...] = ("available", "away", "offline")


class Availability:
    """Who could take a conversation, now: agents' status and load from the store, their
    queues, skills, languages and capacity from the rules in force."""

    def __init__(self, store: ConversationStore, rules: Rules, clock: Any):
        self.store, self.rules, self.clock = store, rules, clock

    @property
    def config(self) -> RouterConfig:
        return self.rules.config

    # --- agents' status ---------------------------------------------------------------------

    async def set_status(self, username: str, status: AgentStatus) -> dict[str, Any]:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        await self.store.set_agent_status(username, status, self.clock.now())
        log.info("agent.status", username=username, status=status)
        return await self.agent_view(username)

    async def agent_view(self, username: str) -> dict[str, Any]:
        """An agent's status and load per channel, as the API shows it."""
        state, loads = await self.store.agent_state(username)
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

    def next_shift(
        self, queue: str, language: str, channel: str, at: datetime
    ) -> tuple[datetime, str] | None:
        """When the first agent who could take a conversation next starts work after `at`, by
        their `hours:` in agents.yaml, and in which time zone; None if no schedule says."""
        shifts = []
        for agent in self.config.agents.agents:
            hours = self.config.routing.business_hours.get(agent.hours or "")
            if hours is None or not self.eligible(agent, queue, language, channel, 0):
                continue
            start = Calendar(hours).next_start(at)
            if start is not None:
                shifts.append((start, hours.timezone))
        return min(shifts) if shifts else None

    async def snapshot(self, *, waiting: bool = True) -> Snapshot:
        """Who is available, what each holds, and (with `waiting`) what waits in each queue: read
        once, then asked many times (a dispatcher's batch decides every message from one)."""
        available, loads, counts = await self.store.presence(waiting=waiting)
        return Snapshot(self, available, loads, counts)


class Snapshot:
    """Assignment's view at one moment: which agents are available, what each holds per channel,
    and how many conversations wait per (queue, priority, urgency rank). A dispatcher's batch
    asks it for every message and tells it of the conversations the batch puts in a queue, so
    each quote counts the ones placed before it, as if they had been read back one by one."""

    def __init__(
        self,
        assigner: Availability,
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
        self._shifts: dict[tuple[str, str, str], tuple[datetime, tuple[datetime, str] | None]] = {}

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

    def staffed(self, queue: str, language: str, channel: str) -> bool:
        """Is an agent who could take it available now (busy or not)?"""
        return any(self.assigner.eligible(a, queue, language, channel, 0) for a in self.agents)

    def expected_wait_seconds(
        self, queue: str, language: str, channel: str, priority: int, critical: bool
    ) -> float:
        """Conversations ahead of this one, shared among the agents who could take them, times
        the queue's expected handling time. Only for a queue `staffed` now: with nobody
        available, the snapshot holds no counts (see `ConversationStore.presence`)."""
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

    def next_shift(
        self, queue: str, language: str, channel: str, at: datetime
    ) -> tuple[datetime, str] | None:
        """`Availability.next_shift`, kept per (queue, language, channel) while the shift it
        found is still ahead: an agent's next start after a later moment is the same or later,
        so the first of them stays the first until it begins (a dispatcher's chunk asks for
        each message, and walking every agent's calendar was a twentieth of its time)."""
        key = (queue, language, channel)
        known = self._shifts.get(key)
        if known is not None:
            since, shift = known
            if since <= at and (shift is None or shift[0] > at):
                return shift
        shift = self.assigner.next_shift(queue, language, channel, at)
        self._shifts[key] = (at, shift)
        return shift

    def add_waiting(self, queue: str, priority: int, urgency_rank: int) -> None:
        self.waiting[(queue, priority, urgency_rank)] += 1
