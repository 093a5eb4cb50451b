"""Offers: waiting conversations offered, in dispatch order, to the agent the selector picks;
and taken back from an agent who lets an offer lapse or holds a conversation unanswered.

A lapsed offer goes to the next eligible agent in the same timer round (the dispatcher's tick
takes back, then offers); when nobody else can take it, back to the agent who let it lapse.
Supervisors are told on the event stream (`offer.lapsed`, `offer.reoffered`, `agent.away`),
in the log and in `supportrouter_offer_alerts_total`. One lapse never sets an agent away;
`away_after_lapses` offers in a row lapsed do, and the agent and supervisors are told.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog

from router.core.envelope import QueueEvent
from router.observability.metrics import ASSIGNED, OFFER_ALERTS, REASSIGNED
from router.policy.rules import Rules
from router.services.assignment.availability import Availability
from router.services.assignment.selector import choose
from router.store.conversations import ConversationStore

log = structlog.get_logger("router.services.assignment")

PublishEvent = Callable[[QueueEvent], Awaitable[None]]
_RETRIES = 3


@dataclass(frozen=True)
class Assigned:
    conversation_id: str
    queue: str
    username: str
    reason: str  # longest_idle | returning | reoffered


class Assigner(Availability):
    """Offers conversations to agents and takes them back; what it knows of the agents
    (status, load, eligibility, the snapshot) is `Availability`'s."""

    def __init__(
        self,
        store: ConversationStore,
        rules: Rules,
        clock: Any,
        publish: PublishEvent | None = None,
        worker: str | None = None,
    ):
        super().__init__(store, rules, clock)
        self.publish = publish
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"

    # --- offering ----------------------------------------------------------------------------

    async def assign_waiting(self, limit: int = 100) -> list[Assigned]:
        """Offer waiting conversations, in dispatch order, to eligible agents; return the offers."""

        def staffed_queues(available: set[str]) -> set[str]:
            return {
                q for a in self.config.agents.agents if a.username in available for q in a.queues
            }

        ids = await self.store.waiting_to_offer(staffed_queues, limit)
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
        async with self.store.offering(conversation_id) as offer:
            conv = offer.conversation
            if conv is None:  # another dispatcher holds it, or it is no longer waiting
                return None
            pick = await choose(self.config, self.eligible, offer, conv, at)
            if pick is None:
                return None
            username, reason = pick
            # Lock the agent, then count their load again: another process may have just
            # given them a conversation on this channel.
            status = await offer.lock_agent(username)
            load = (await offer.loads(username)).get((username, conv["channel"]), 0)
            load = 0 if reason == "case" else load  # a case's conversation: see selector.choose
            agent = self.config.agent(username)
            if (
                status != "available"
                or agent is None
                or not self.eligible(agent, conv["queue"], conv["language"], conv["channel"], load)
            ):
                return "retry"
            if not await offer.take(username, reason, self.worker, at):
                return None
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

    async def _announce(self, done: Assigned) -> None:
        if done.reason == "reoffered":
            OFFER_ALERTS.labels(queue=done.queue, kind="reoffered").inc()
            log.warning(
                "offer.reoffered",
                conversation_id=done.conversation_id,
                queue=done.queue,
                username=done.username,
                why="nobody else eligible is available",
            )
        if self.publish is None:
            return
        urgency = await self.store.conversation_urgency(done.conversation_id)
        kinds = ["conversation.assigned"] + (
            ["offer.reoffered"] if done.reason == "reoffered" else []
        )
        for kind in kinds:
            await self.publish(
                QueueEvent(
                    type=kind,
                    conversation_id=done.conversation_id,
                    queue=done.queue,
                    urgency=urgency,
                    status="assigned",
                    assignee=done.username,
                    at=self.clock.now(),
                )
            )

    # --- silent agents -----------------------------------------------------------------------

    async def reassign_timed_out(self) -> list[str]:
        """Take back offers nobody accepted in time, and conversations held without an answer."""
        rules = self.config.routing.assignment
        at = self.clock.now()
        accept_before = (
            at - timedelta(seconds=rules.accept_timeout_seconds)
            if rules.accept_timeout_seconds
            else None
        )
        answer_before = (
            at - timedelta(seconds=rules.answer_timeout_seconds)
            if rules.answer_timeout_seconds
            else None
        )
        released = []
        for conversation_id in await self.store.overdue(accept_before, answer_before):
            if await self._release(conversation_id, accept_before, answer_before, at):
                released.append(conversation_id)
        return released

    async def _release(
        self,
        conversation_id: str,
        accept_before: datetime | None,
        answer_before: datetime | None,
        at: datetime,
    ) -> bool:
        released = await self.store.release(
            conversation_id,
            accept_before,
            answer_before,
            at,
            self.config.routing.assignment.away_after_lapses,
        )
        if released is None:
            return False
        conv, reason, away = released
        REASSIGNED.labels(reason=reason).inc()
        log.warning(
            "conversation.reassigning",
            conversation_id=conversation_id,
            username=conv["assignee"],
            reason=reason,
            urgency=conv["urgency"],
        )
        # Who let it go (assignee) on the alerts; the agent's console tells her, a supervisor's
        # shows every queue's.
        kinds: list[tuple[str, str | None]] = [("conversation.released", None)]
        if reason == "not_accepted":
            kinds.append(("offer.lapsed", conv["assignee"]))
        if away:
            OFFER_ALERTS.labels(queue=conv["queue"], kind="agent_away").inc()
            log.warning(
                "agent.away_after_lapses",
                username=conv["assignee"],
                lapses=self.config.routing.assignment.away_after_lapses,
            )
            kinds.append(("agent.away", conv["assignee"]))
        if self.publish is not None:
            for kind, assignee in kinds:
                await self.publish(
                    QueueEvent(
                        type=kind,
                        conversation_id=conversation_id,
                        queue=conv["queue"],
                        urgency=conv["urgency"],
                        status="waiting",
                        assignee=assignee,
                        at=at,
                    )
                )
        return True
