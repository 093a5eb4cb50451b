"""What rules would do, without sending anything: one message (`simulate`) or the recorded
conversations under candidate rules (`replay`), against the rules in force.

Offline, every agent counts as available (no step is skipped for want of one, no queue
overflows for lack of staff); business hours are read at the time each message arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from router.core.envelope import Channel, Envelope, Sender, now
from router.core.settings import Settings
from router.operator_files.config import ConfigError
from router.policy.rules import Rules
from router.routing.replies import Wait
from router.routing.workflow import Workflow, facts_for
from router.services.sla import calendar_for
from router.store.conversations import ConversationStore
from router.store.revisions import SchemaNotReady

EXAMPLE_TICKET = "T00000000"


def offline_decision(
    rules: Rules,
    envelope: Envelope,
    *,
    language: str | None = None,
    customer: dict[str, Any] | None = None,
    at: datetime | None = None,
    ticket: str = EXAMPLE_TICKET,
) -> dict[str, Any]:
    """The filter that matches, the queue and priority, and the reply that would be sent."""
    config = rules.config
    c = envelope.classification
    assert c is not None, "classify the envelope first"
    at = at or now()
    language = language or c.language
    decision = Workflow(config).decide(
        facts_for(envelope, config, customer, language),
        is_open=lambda queue: calendar_for(config, queue).is_open(at),
    )
    calendar = calendar_for(config, decision.queue)
    if calendar.is_open(at):
        wait = Wait(seconds=config.routing.queues[decision.queue].expected_handle_seconds)
    else:
        zone = calendar.hours.timezone if calendar.hours else "UTC"
        wait = Wait(opens=calendar.next_open(at), timezone=zone, now=at)
    reply = None
    if not envelope.thread.get("no_auto_reply"):
        reply = rules.acknowledgement_text(
            c.category,
            language,
            ticket,
            envelope.redactions,
            channel=envelope.channel,
            urgency=c.urgency,
            wait=wait,
        )
    return {
        "filter": decision.rule,
        "step": decision.step + 1,
        "queue": decision.queue,
        "priority": decision.priority,
        "next_step_after_seconds": decision.timeout,
        "explanation": list(decision.explanation),
        "reply": reply,
        "rules_version": config.version,
    }


# --- replay ----------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d+)([dhm])$")


def parse_since(text: str | None, reference: datetime | None = None) -> datetime | None:
    """ "7d", "12h", "30m", or an ISO date or time (UTC when it names no zone)."""
    if not text:
        return None
    match = _RELATIVE.match(text.strip())
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match[2]]
        return (reference or now()) - timedelta(**{unit: int(match[1])})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give 7d, 12h, 30m or a date such as 2025-06-01"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass
class ReplayReport:
    in_force: str
    candidate: str
    replayed: int = 0
    changed: dict[str, int] = field(default_factory=lambda: {"queue": 0, "priority": 0, "reply": 0})
    moves: Counter = field(default_factory=Counter)  # (from queue, to queue) -> conversations
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per conversation that changes

    @property
    def unchanged(self) -> int:
        return self.replayed - len(self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules_in_force": self.in_force,
            "candidate": self.candidate,
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "queue_moves": [
                {"from": a, "to": b, "conversations": n} for (a, b), n in self.moves.most_common()
            ],
            "conversations": self.rows,
        }


def _envelope(row: dict[str, Any], rules: Rules) -> Envelope:
    meta = row["meta"] or {}
    envelope = Envelope.new(
        channel=Channel(row["channel"]),
        channel_message_id=row["channel_message_id"] or row["message_id"],
        conversation_key=row["conversation_key"],
        sender=Sender(address=row["customer_address"]),
        text=row["text"],
        subject=meta.get("subject"),
        thread=meta.get("thread") or {},
        redactions=meta.get("redactions") or [],
    )
    classification = rules.classify(
        envelope.text, channel=envelope.channel, subject=envelope.subject
    )
    return envelope.model_copy(update={"classification": classification})


async def replay(
    store: ConversationStore,
    in_force: Rules,
    candidate: Rules,
    since: datetime | None = None,
    limit: int = 100_000,
) -> ReplayReport:
    report = ReplayReport(in_force.version, candidate.version)
    for row in await store.first_customer_messages(since, limit):
        at = (
            row["created_at"] if row["created_at"].tzinfo else row["created_at"].replace(tzinfo=UTC)
        )
        customer = await store.customer_attributes(row["customer_address"])
        before = offline_decision(
            in_force, _envelope(row, in_force), customer=customer, at=at, ticket=row["ticket"]
        )
        after = offline_decision(
            candidate, _envelope(row, candidate), customer=customer, at=at, ticket=row["ticket"]
        )
        report.replayed += 1
        changes = [key for key in ("queue", "priority", "reply") if before[key] != after[key]]
        for key in changes:
            report.changed[key] += 1
        if "queue" in changes:
            report.moves[(before["queue"], after["queue"])] += 1
        if changes:
            report.rows.append(
                {
                    "ticket": row["ticket"],
                    "channel": row["channel"],
                    "changes": changes,
                    "queue": [before["queue"], after["queue"]],
                    "priority": [before["priority"], after["priority"]],
                    "filter": [before["filter"], after["filter"]],
                    **({"reply": [before["reply"], after["reply"]]} if "reply" in changes else {}),
                }
            )
    return report


def format_report(report: ReplayReport, show: int = 20) -> str:
    lines = [
        f"replayed {report.replayed} conversations: rules in force {report.in_force} -> candidate {report.candidate}",
        f"  unchanged        {report.unchanged}",
        f"  queue changed    {report.changed['queue']}",
        f"  priority changed {report.changed['priority']}",
        f"  reply changed    {report.changed['reply']}",
    ]
    if report.moves:
        lines.append("queue moves:")
        lines += [f"  {a} -> {b}: {n}" for (a, b), n in report.moves.most_common()]
    for row in report.rows[:show]:
        parts = []
        if "queue" in row["changes"]:
            parts.append(f"queue {row['queue'][0]} -> {row['queue'][1]}")
        if "priority" in row["changes"]:
            parts.append(f"priority {row['priority'][0]} -> {row['priority'][1]}")
        if "reply" in row["changes"]:
            parts.append("reply changed")
        lines.append(
            f"  {row['ticket']} ({row['channel']}, filter {row['filter'][0]} -> {row['filter'][1]}): "
            + ", ".join(parts)
        )
    if len(report.rows) > show:
        lines.append(f"  ... and {len(report.rows) - show} more (--show N, or --json for all)")
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        in_force = Rules(Path(args.current or settings.config_dir))
    except ConfigError as exc:
        print(f"the rules in force do not load:\n{exc}", file=sys.stderr)
        return 2
    try:
        candidate = Rules(Path(args.config))
    except ConfigError as exc:
        print(f"candidate refused:\n{exc}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {args.config}", file=sys.stderr)
        return 1

    async def main():
        async with ConversationStore(args.database_url or settings.database_url) as store:
            return await replay(store, in_force, candidate, since, args.limit)

    try:
        report = asyncio.run(main())
    except SchemaNotReady as exc:
        print(f"cannot read the conversations: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_report(report, args.show))
    return 0
