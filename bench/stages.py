"""Where a message's time goes between the router's processes, from their JSON log lines.

Each stage logs its line with the message's trace_id as it finishes with it: the gateway
`message.received` (on Kafka, before the 200), the classifier stage `message.classified` (when
there is one: SUPPORTROUTER_CLASSIFY_IN), the
dispatcher `conversation.queued` or `conversation.updated` (stored in its queue, acknowledgement
published), the sender `reply.sandboxed` or `reply.sent`. The time between two stages' lines is
the hop's: Kafka's delivery, waiting behind earlier messages, and the work. The gateway's stage
is when it took the request (the line's `received_at`), not when its line was written: a consumer
can fetch a record before the broker's answer to the produce reaches a busy gateway, so the
line's own time can come after the classifier's. This is how the
dispatcher's half second at 100 messages/s was found to be waiting, not work
(docs/performance.md).

    .venv/bin/python bench/stages.py ROUTER.log   # a `supportrouter run` with JSON logs
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path

# Each stage and the events that mark it, in the order a message passes them.
STAGES = {
    "gateway": ("message.received",),
    "classifier": ("message.classified",),
    "dispatcher": ("conversation.queued", "conversation.updated"),
    "sender": ("reply.sandboxed", "reply.sent"),
}
_STAGE_OF = {event: stage for stage, events in STAGES.items() for event in events}


def stage_times(lines: Iterable[str]) -> dict[str, dict[str, float]]:
    """trace_id → {stage: when its line was written (s)}, the first line of each."""
    traces: dict[str, dict[str, float]] = {}
    for line in lines:
        if '"trace_id"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:  # two processes' lines can meet half-way on a shared stdout
            continue
        stage = _STAGE_OF.get(entry.get("event"))
        if stage is None or "timestamp" not in entry:
            continue
        at = dt.datetime.fromisoformat(entry.get("received_at", entry["timestamp"])).timestamp()
        traces.setdefault(entry["trace_id"], {}).setdefault(stage, at)
    return traces


def hops(lines: Iterable[str]) -> dict[str, dict[str, float]]:
    """Each hop between two stages ("gateway → classifier", ...): n, p50 and p99 in ms."""
    waits_by_hop: dict[tuple[str, str], list[float]] = {}
    for times in stage_times(lines).values():
        # The stages this message passed, in order: without a classifier stage (the dispatcher
        # classifies), its hop is gateway → dispatcher.
        passed = [stage for stage in STAGES if stage in times]
        for before, after in zip(passed, passed[1:], strict=False):
            waits_by_hop.setdefault((before, after), []).append(
                (times[after] - times[before]) * 1000
            )
    out = {}
    order = list(STAGES)
    for before, after in sorted(waits_by_hop, key=lambda hop: [order.index(s) for s in hop]):
        waits = sorted(waits_by_hop[(before, after)])
        out[f"{before} → {after}"] = {
            "n": len(waits),
            "p50_ms": round(statistics.median(waits), 1),
            "p99_ms": round(waits[int(0.99 * (len(waits) - 1))], 1),
        }
    return out


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with Path(sys.argv[1]).open(errors="replace") as lines:
        for hop, figures in hops(lines).items():
            print(
                f"{hop:<26} n={figures['n']:<7} p50 {figures['p50_ms']:>8} ms  p99 {figures['p99_ms']:>8} ms"
            )


if __name__ == "__main__":
    main()
