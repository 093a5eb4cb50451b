"""Two dispatcher processes on one PostgreSQL never assign a conversation twice, never put an
agent over capacity, and still give critical conversations the first places."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
import sqlalchemy as sa

from router.services.sla import ManualClock
from router.store.conversations import ConversationStore
from router.store.schema import assignments, conversations
from tests.conftest import ROOT
from tests.routing_helpers import classified, config_dir_with, place, rules_from

AGENTS, CAPACITY, WAITING, CRITICAL = 20, 5, 300, 30


def agents_yaml() -> str:
    rows = "\n".join(
        f"  - {{username: agent{i:02d}, queues: [payments], skills: [payments], capacity: {{chat: {CAPACITY}}}}}"
        for i in range(AGENTS)
    )
    return f"version: 2\nagents:\n  - {{username: admin, role: supervisor}}\n{rows}\n"


async def start_worker(url: str, config_dir, name: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.assignment_worker",
        url,
        str(config_dir),
        name,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise AssertionError(
            f"{name} did not start: {line!r} {(await process.stderr.read())[-2000:]!r}"
        )
    return process


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_two_dispatcher_processes_never_assign_one_conversation_twice(database_url, tmp_path):
    config_dir = config_dir_with(tmp_path, **{"agents.yaml": agents_yaml()})
    rules, clock = rules_from(config_dir), ManualClock()
    async with ConversationStore(database_url) as store:
        for i in range(WAITING):
            clock.advance(1)
            urgency = (
                "critical" if i % (WAITING // CRITICAL) == WAITING // CRITICAL - 1 else "normal"
            )
            await place(store, rules.config, clock, classified("transaction_failed", urgency))
        from router.services.assignment.offers import Assigner

        setup = Assigner(store, rules, clock, worker="setup")
        for i in range(AGENTS):
            await setup.set_status(f"agent{i:02d}", "available")

        workers = [await start_worker(database_url, config_dir, name) for name in ("one", "two")]
        for w in workers:  # both are connected and waiting: release them together
            w.stdin.write(b"go\n")
        await asyncio.gather(*(w.stdin.drain() for w in workers))
        outputs = await asyncio.gather(*(asyncio.wait_for(w.communicate(), 120) for w in workers))
        results = []
        for w, (out, err) in zip(workers, outputs, strict=True):
            assert w.returncode == 0, err.decode()[-3000:]
            results.append(json.loads(out.decode().strip().splitlines()[-1]))

        async with store.engine.connect() as conn:
            offers = (
                await conn.execute(sa.select(assignments.c.conversation_id, assignments.c.worker))
            ).all()
            held = (
                await conn.execute(
                    sa.select(conversations.c.assignee, sa.func.count())
                    .where(conversations.c.status == "assigned")
                    .group_by(conversations.c.assignee)
                )
            ).all()
            critical_waiting = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(conversations)
                    .where(
                        conversations.c.status == "waiting", conversations.c.urgency == "critical"
                    )
                )
            ).scalar_one()

    ids = [conversation_id for conversation_id, _ in offers]
    claimed = [c for r in results for c in r["assigned"]]
    print(
        f"\nrace: {len(claimed)} assigned by two processes "
        + ", ".join(f"{r['worker']} {len(r['assigned'])} in {r['seconds']:.2f}s" for r in results)
    )
    assert len(ids) == len(set(ids)) == AGENTS * CAPACITY  # once each, and every place filled
    assert sorted(claimed) == sorted(ids)  # what each process reports is what the store holds
    assert all(n == CAPACITY for _, n in held) and len(held) == AGENTS  # nobody over capacity
    assert all(r["assigned"] for r in results), (
        "both processes must have assigned some: a real race"
    )
    assert critical_waiting == 0  # the critical ones took places first
