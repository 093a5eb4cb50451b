"""The workflow: which queue a classified message goes to, at which priority, and why.

Order of decisions (config/routing.yaml):
1. the workflow's filters, in order; the first whose expression is true decides, and its
   targets are an escalation ladder (queue, priority, timeout, skip when no agent can take it);
2. a doubtful classification (classifier.yaml's triage_below_confidence) goes to the triage
   queue; never a fraud report or a critical message;
3. routes: one queue per category;
4. the default target.
A queue that is closed or has nobody to take the conversation sends it to its overflow queue,
when that one is open and staffed. Every decision carries the lines that explain it and the
version of the rules that made it.

Pure: what is open and who is available come in as functions, so simulate and replay use the
same code as the dispatcher.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import structlog

from router.core.envelope import Envelope, Urgency
from router.operator_files.config import RouterConfig
from router.operator_files.expression import EvaluationError, namespace
from router.operator_files.schemas.routing import Target

log = structlog.get_logger("router.routing.workflow")

QueueTest = Callable[[str], bool]  # queue name -> yes/no (open now; an agent could take it now)
TRIAGE, DEFAULT = "triage", "default"


@dataclass(frozen=True)
class Decision:
    rule: str  # the workflow filter's name, "triage", "route:<category>" or "default"
    step: int  # which target of the rule's ladder
    queue: str
    priority: int
    timeout: int | None  # seconds before the ladder's next step; None on the last step
    rules_version: str
    explanation: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        # Per message on the dispatcher's path: the fields are flat, no deep copy is needed.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["explanation"] = list(self.explanation)
        return out


def is_doubtful(config: RouterConfig, category: str, urgency: str, confidence: float) -> bool:
    # A fraud report or a critical message is never doubtful: its own queue is the fastest.
    c = config.classifier
    return (
        bool(c.triage_queue)
        and confidence < c.triage_below_confidence
        and category != "unauthorized_transaction"
        and urgency != Urgency.CRITICAL
    )


def facts_for(
    envelope: Envelope,
    config: RouterConfig,
    customer: Mapping[str, Any] | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """The names a filter can use, from a classified envelope and what is known of the customer."""
    c = envelope.classification
    if c is None:
        raise ValueError("only a classified envelope can be routed")
    return {
        "category": c.category,
        "urgency": Urgency(c.urgency),
        "confidence": c.confidence,
        "doubtful": is_doubtful(config, c.category, c.urgency, c.confidence),
        "channel": str(envelope.channel),
        "language": language or c.language,
        "lane": str(envelope.lane),
        "text": envelope.text,
        "subject": envelope.subject or "",
        "redacted": bool(envelope.redactions),
        "rules": list(c.rules),
        "entities": namespace(c.entities, missing=[]),
        "customer": namespace(dict(customer or {})),
    }


class Workflow:
    def __init__(self, config: RouterConfig):
        self.config = config
        self.routing = config.routing
        # Each filter with its expression, read once: a pydantic model's private attribute is
        # found through its __getattr__, a cost each filter would pay for every message.
        self._filters = [(f, f.expression) for f in self.routing.workflow]

    def ladder(self, rule: str) -> list[Target]:
        """The targets of the rule that placed a conversation (empty when the rule is gone)."""
        for f in self.routing.workflow:
            if f.name == rule:
                return list(f.targets)
        if rule == TRIAGE and self.config.classifier.triage_queue:
            return [Target(queue=self.config.classifier.triage_queue)]
        if rule.startswith("route:"):
            category = rule.removeprefix("route:")
            return [
                Target(queue=r.queue, priority=r.priority)
                for r in self.routing.routes
                if r.category == category
            ][:1]
        if rule == DEFAULT:
            return [self.routing.default]
        return []

    def decide(
        self,
        facts: Mapping[str, Any],
        *,
        available: QueueTest | None = None,
        is_open: QueueTest | None = None,
    ) -> Decision:
        """`available(queue)`: could an agent take it now (None: assume so, as simulate does)."""
        explain: list[str] = []
        for f, expression in self._filters:
            try:
                matched = expression.evaluate(facts)
            except EvaluationError as exc:
                log.warning("routing.filter_failed", filter=f.name, error=str(exc)[:300])
                explain.append(f"filter {f.name!r} could not be evaluated ({exc}): skipped")
                continue
            if matched:
                explain.append(f"filter {f.name!r} matched: {f.filter}")
                return self.place(f.name, f.targets, 0, explain, available, is_open)
            explain.append(f"filter {f.name!r} did not match")
        triage = self.config.classifier.triage_queue
        if facts.get("doubtful") and triage:
            explain.append(
                f"confidence {facts.get('confidence'):.2f} is below "
                f"{self.config.classifier.triage_below_confidence}: a person reads it first"
            )
            return self.place(TRIAGE, self.ladder(TRIAGE), 0, explain, available, is_open)
        category = facts.get("category")
        for route in self.routing.routes:
            if route.category == category:
                explain.append(f"route for category {category}")
                return self.place(
                    f"route:{category}",
                    self.ladder(f"route:{category}"),
                    0,
                    explain,
                    available,
                    is_open,
                )
        explain.append("no filter or route matched: the default target")
        return self.place(DEFAULT, [self.routing.default], 0, explain, available, is_open)

    def place(
        self,
        rule: str,
        targets: list[Target],
        start: int,
        explain: list[str],
        available: QueueTest | None = None,
        is_open: QueueTest | None = None,
    ) -> Decision:
        """The first usable step of a ladder from `start`: a step that skips when no agent can
        take the conversation is passed over, except the last, which always holds it."""
        last = len(targets) - 1
        for i in range(start, last + 1):
            target = targets[i]
            if (
                target.skip_if_no_agent
                and i < last
                and available is not None
                and not available(target.queue)
            ):
                explain.append(
                    f"step {i + 1} (queue {target.queue}) skipped: no agent can take it now"
                )
                continue
            queue = self._overflow(target.queue, explain, available, is_open)
            explain.append(
                f"step {i + 1} of {last + 1}: queue {queue}, priority {target.priority}"
                + (f", next step after {target.timeout}s" if target.timeout and i < last else "")
            )
            return Decision(
                rule=rule,
                step=i,
                queue=queue,
                priority=target.priority,
                timeout=target.timeout if i < last else None,
                rules_version=self.config.version,
                explanation=tuple(explain),
            )
        raise ValueError(f"rule {rule!r} has no step from {start}")

    def _overflow(
        self, queue: str, explain: list[str], available: QueueTest | None, is_open: QueueTest | None
    ) -> str:
        seen = {queue}
        while True:
            q = self.routing.queues[queue]
            closed = is_open is not None and not is_open(queue)
            unstaffed = available is not None and not available(queue)
            if not q.overflow or q.overflow in seen or not (closed or unstaffed):
                return queue
            to = q.overflow
            if (is_open is not None and not is_open(to)) or (
                available is not None and not available(to)
            ):
                return queue  # overflowing into a queue that cannot help either changes nothing
            explain.append(
                f"queue {queue} is {'closed' if closed else 'unstaffed'}: overflow to {to}"
            )
            seen.add(to)
            queue = to
