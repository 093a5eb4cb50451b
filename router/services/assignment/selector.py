"""Which agent a waiting conversation is offered to: among the available agents eligible for it
(and not one who already let an offer of it lapse), the owner of its case; the customer's last
agent when they accepted a conversation of this customer within the window; otherwise the agent
idle longest. When only agents who let it lapse could take it, it goes back to one of them
(`reoffered`): critical work is never left waiting for an agent who is not there."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from router.operator_files.config import RouterConfig
from router.operator_files.schemas.agents import Agent
from router.store.assignments import Offer
from router.store.rows import utc

Eligible = Callable[[Agent, str, str, str, int], bool]  # agent, queue, language, channel, load


async def choose(
    config: RouterConfig, eligible: Eligible, offer: Offer, conv: Any, at: datetime
) -> tuple[str, str] | None:
    """The agent to offer `conv` to and why (case, returning, longest_idle, reoffered), or None if nobody can
    take it; read inside the offer's transaction."""
    states = await offer.available_agents()
    loads = await offer.loads()
    missed = await offer.missed_by()
    able = [
        a
        for a in config.agents.agents
        if a.username in states
        and eligible(
            a,
            conv["queue"],
            conv["language"],
            conv["channel"],
            loads.get((a.username, conv["channel"]), 0),
        )
    ]
    # One agent owns a case: its new conversation goes to them, as one more part of the work
    # they hold (so not counted against their room on the channel).
    owner = await offer.case_owner()
    if owner in states and owner not in missed:
        agent = config.agent(owner)
        if agent is not None and eligible(
            agent, conv["queue"], conv["language"], conv["channel"], 0
        ):
            return owner, "case"
    candidates = [a for a in able if a.username not in missed]
    if not candidates:
        if not able:
            return None
        again = min(able, key=lambda a: (utc(states[a.username]["idle_since"]), a.username))
        return again.username, "reoffered"
    window = config.routing.assignment.return_to_last_agent_seconds
    if window:
        last = await offer.last_agent(conv["conversation_key"], at - timedelta(seconds=window))
        if last and any(a.username == last for a in candidates):
            return last, "returning"
    longest = min(candidates, key=lambda a: (utc(states[a.username]["idle_since"]), a.username))
    return longest.username, "longest_idle"
