"""First-response SLAs: clocks, business-hours calendars, and the monitor that acts on breaches.

A queue's SLA counts only open time in the queue's own time zone: a message at 20:50 to a
queue open until 21:00 with a 30-minute SLA is due 20 minutes after the next opening. Time is
read from an injected Clock, so tests move it by hand and never wait on the wall clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog

from router.core.envelope import QueueEvent, now
from router.observability.metrics import ESCALATIONS, SLA_BREACHES
from router.operator_files.config import RouterConfig
from router.operator_files.schemas.routing import DAYS, BusinessHours
from router.routing.workflow import Decision, Workflow
from router.store.conversations import ConversationStore
from router.store.rows import utc
from router.store.timers import Due

log = structlog.get_logger("router.services.sla")

# Hours that are never open are refused when the config loads; this bounds the search anyway.
_SEARCH_DAYS = 800


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return now()


class ManualClock:
    """A clock that moves only when told to: for tests and for replaying a day. Always UTC, as
    everything stored is: SQLite compares times as text."""

    def __init__(self, start: datetime | None = None):
        self._now = (start or now()).astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        self._now += timedelta(seconds=seconds, **delta)
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at.astimezone(UTC)


class Calendar:
    """The open spans of one business-hours definition; None means open around the clock."""

    def __init__(self, hours: BusinessHours | None):
        self.hours = hours
        self.zone = ZoneInfo(hours.timezone) if hours else UTC
        self.always = hours is None or (hours.weekly is None and not hours.closed_on)
        self._days: dict[date, list[tuple[datetime, datetime]]] = {}  # each day's, once worked out
        # The last question and its answer: a dispatcher's batch asks the same for each message.
        self._opens: tuple[datetime, datetime] | None = None  # at, the next open moment
        self._added: tuple[datetime, float, datetime] | None = None  # start, seconds, result

    def _spans(self, day: date) -> list[tuple[datetime, datetime]]:
        if day not in self._days:
            self._days[day] = self._spans_of(day)
        return self._days[day]

    def _spans_of(self, day: date) -> list[tuple[datetime, datetime]]:
        assert self.hours is not None
        if day in self.hours.closed_on:
            return []
        weekly = self.hours.weekly
        texts = ["00:00-24:00"] if weekly is None else weekly.get(DAYS[day.weekday()], [])
        spans = []
        for text in texts:
            start, end = text.split("-")
            begin = datetime.combine(day, time.fromisoformat(start), tzinfo=self.zone)
            finish = (
                datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone)
                if end == "24:00"
                else datetime.combine(day, time.fromisoformat(end), tzinfo=self.zone)
            )
            spans.append((begin.astimezone(UTC), finish.astimezone(UTC)))
        spans.sort()
        merged: list[tuple[datetime, datetime]] = []
        for begin, finish in spans:  # overlapping spans count once
            if merged and begin <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
            else:
                merged.append((begin, finish))
        return merged

    def _spans_from(self, at: datetime):
        at = at.astimezone(UTC)
        day = at.astimezone(self.zone).date()
        for offset in range(_SEARCH_DAYS):
            for begin, finish in self._spans(day + timedelta(days=offset)):
                if finish > at:
                    yield max(begin, at), finish
        raise ValueError("business hours never open")  # refused at load time; a bug if reached

    def is_open(self, at: datetime) -> bool:
        return self.always or self.next_open(at) == at

    def next_open(self, at: datetime) -> datetime:
        if self.always:
            return at.astimezone(UTC)
        if self._opens is None or self._opens[0] != at:
            self._opens = (at, next(self._spans_from(at))[0])
        return self._opens[1]

    def next_start(self, at: datetime) -> datetime | None:
        """The start of the next open span after `at` (None: open around the clock)."""
        if self.always:
            return None
        return next(begin for begin, _ in self._spans_from(at) if begin > at.astimezone(UTC))

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment `seconds` of open time have passed since `start`."""
        if self.always:
            return start.astimezone(UTC) + timedelta(seconds=seconds)
        if self._added is None or self._added[:2] != (start, seconds):
            self._added = (start, seconds, self._add(start, seconds))
        return self._added[2]

    def _add(self, start: datetime, seconds: float) -> datetime:
        remaining = timedelta(seconds=seconds)
        for begin, finish in self._spans_from(start):
            if remaining <= finish - begin:
                return begin + remaining
            remaining -= finish - begin
        raise AssertionError("unreachable")

    def describe(self, at: datetime, reference: datetime) -> str:
        """`at` as the customer reads it: "09:00 (Asia/Shanghai)", with the weekday if not today."""
        local, ref = at.astimezone(self.zone), reference.astimezone(self.zone)
        when = local.strftime("%H:%M") if local.date() == ref.date() else local.strftime("%a %H:%M")
        return f"{when} ({self.hours.timezone if self.hours else 'UTC'})"


def calendar_for(config: RouterConfig, queue: str) -> Calendar:
    q = config.routing.queues.get(queue)
    hours = config.routing.business_hours.get(q.hours) if q is not None and q.hours else None
    return Calendar(hours)


def first_response_due(
    config: RouterConfig, queue: str, start: datetime, calendar: Calendar | None = None
) -> datetime | None:
    """When the first response is due; `calendar`: the queue's, when the caller has it."""
    q = config.routing.queues.get(queue)
    if q is None:
        return None
    return (calendar or calendar_for(config, queue)).add(start, q.first_response_sla_seconds)


def placement(
    config: RouterConfig, decision: Decision, at: datetime, calendar: Calendar | None = None
) -> dict[str, Any]:
    """The columns that record a routing decision made at `at`: its timers start now.
    `calendar`: the decision's queue's, when the caller keeps one (a dispatcher's batch)."""
    return {
        "priority": decision.priority,
        "rule": decision.rule,
        "ladder_step": decision.step,
        "step_due_at": at + timedelta(seconds=decision.timeout) if decision.timeout else None,
        "sla_due_at": first_response_due(config, decision.queue, at, calendar),
        "rules_version": config.version,
    }


Availability = Callable[
    [str, str], Awaitable[Callable[[str], bool]]
]  # (language, channel) -> queue test
PublishEvent = Callable[[QueueEvent], Awaitable[None]]


class SlaMonitor:
    """The timers of waiting conversations.

    - A ladder step whose timeout passed moves the conversation to the next step (queue,
      priority never lowered).
    - A first response later than the queue's SLA is a breach: it goes to support.events and the
      metrics once, then the queue's policy acts: `escalate` moves a waiting conversation to its
      ladder's next step (or raises its priority when there is none), `raise_priority` raises it.
    Safe with several dispatchers: each conversation is changed under FOR UPDATE SKIP LOCKED and
    only while the condition still holds, so a breach is reported once.
    """

    def __init__(
        self,
        store: ConversationStore,
        rules: Any,
        clock: Clock,
        publish: PublishEvent,
        availability: Availability | None = None,
    ):
        self.store, self.rules, self.clock, self.publish = store, rules, clock, publish
        self.availability = availability

    async def sweep(self) -> dict[str, int]:
        return {"escalated": await self.ladder_timeouts(), "breached": await self.breaches()}

    async def ladder_timeouts(self) -> int:
        at = self.clock.now()
        moved = 0
        for conversation_id in await self.store.ladder_steps_due(at):
            async with self.store.ladder_step_due(conversation_id, at) as due:
                conv = due.conversation
                events = [] if conv is None else await self._advance(due, conv, at, "timeout")
            moved += bool(events)
            await self._send(events)
        return moved

    async def breaches(self) -> int:
        at = self.clock.now()
        count = 0
        for conversation_id in await self.store.breaches_due(at):
            async with self.store.breach_due(conversation_id, at) as due:
                conv = due.conversation
                events = [] if conv is None else await self._breach(due, conv, at)
            count += bool(events)
            await self._send(events)
        return count

    async def _breach(self, due: Due, conv, at: datetime) -> list[QueueEvent]:
        await due.update(sla_breached_at=at)
        SLA_BREACHES.labels(queue=conv["queue"]).inc()
        late = (at - utc(conv["sla_due_at"])).total_seconds()
        log.warning(
            "sla.breached",
            conversation_id=conv["id"],
            queue=conv["queue"],
            urgency=conv["urgency"],
            assignee=conv["assignee"],
            late_seconds=round(late, 1),
        )
        events = [self._event("sla.breached", conv, at)]
        queue = self.rules.config.routing.queues.get(conv["queue"])
        if queue is not None and queue.on_sla_breach == "escalate" and conv["status"] == "waiting":
            moved = await self._advance(due, conv, at, "sla_breach")
            if moved:
                return events + moved
        raise_by = queue.breach_priority_raise if queue is not None else 0
        if raise_by:
            priority = conv["priority"] + raise_by
            await due.update(priority=priority, updated_at=at)
            ESCALATIONS.labels(queue=conv["queue"], reason="sla_breach_priority").inc()
            events.append(self._event("conversation.reprioritized", conv, at))
        return events

    async def _advance(self, due: Due, conv, at: datetime, reason: str) -> list[QueueEvent]:
        """Move a waiting conversation to its ladder's next step; [] when it is on the last."""
        config = self.rules.config
        workflow = Workflow(config)
        ladder = workflow.ladder(conv["rule"] or "")
        if conv["ladder_step"] + 1 >= len(ladder):
            await due.update(step_due_at=None)
            return []
        available = (
            await self.availability(conv["language"], conv["channel"])
            if self.availability
            else None
        )
        decision = workflow.place(
            conv["rule"],
            ladder,
            conv["ladder_step"] + 1,
            [],
            available,
            lambda queue: calendar_for(config, queue).is_open(at),
        )
        values = {
            "queue": decision.queue,
            "ladder_step": decision.step,
            "priority": max(conv["priority"], decision.priority),
            "step_due_at": at + timedelta(seconds=decision.timeout) if decision.timeout else None,
            "updated_at": at,
        }
        await due.update(**values)
        ESCALATIONS.labels(queue=decision.queue, reason=reason).inc()
        log.info(
            "conversation.escalated",
            conversation_id=conv["id"],
            reason=reason,
            rule=conv["rule"],
            from_queue=conv["queue"],
            queue=decision.queue,
            step=decision.step + 1,
            priority=values["priority"],
        )
        return [self._event("conversation.escalated", {**conv, "queue": decision.queue}, at)]

    @staticmethod
    def _event(kind: str, conv, at: datetime) -> QueueEvent:
        return QueueEvent(
            type=kind,
            conversation_id=conv["id"],
            queue=conv["queue"],
            urgency=conv["urgency"],
            status=conv["status"],
            assignee=conv["assignee"],
            at=at,
        )

    async def _send(self, events: list[QueueEvent]) -> None:
        for event in events:
            try:
                await self.publish(event)
            except Exception as exc:  # stored already; consoles also poll
                log.warning("event.publish_failed", type=event.type, error=repr(exc)[:300])
