"""`supportrouter replay`: recorded conversations through candidate rules, against the rules in
force, with what would change (queue, priority, reply) and the counts."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest

from router.core.envelope import now
from router.services.sla import ManualClock
from router.store.conversations import ConversationStore
from tests.conftest import CONFIG_DIR, ROOT, migrated_sqlite
from tests.routing_helpers import classified, config_dir_with, place, rules_from

RECORDED = [  # text, the category and urgency it is recorded with
    ("my transfer failed", "transaction_failed", "normal"),
    ("my transfer failed again", "transaction_failed", "normal"),
    ("my transfer failed and the money was deducted", "transaction_failed", "high"),
    ("I forgot my password", "password_reset", "normal"),
    ("I forgot my password and the reset code never arrives", "password_reset", "normal"),
    ("what is the fee for a top-up?", "general", "low"),
]


def candidate(tmp_path):
    routing = (CONFIG_DIR / "routing.yaml").read_text()
    routing = routing.replace(
        "{category: password_reset, queue: accounts}", "{category: password_reset, queue: triage}"
    )
    routing = routing.replace(
        "{queue: payments, priority: 20, timeout: 600}",
        "{queue: payments, priority: 30, timeout: 600}",
    )
    replies = (CONFIG_DIR / "templates" / "replies.yaml").read_text()
    replies = replies.replace(
        "Please do not pay again; an agent will check", "Please do not pay twice; an agent checks"
    )
    assert "priority: 30" in routing and "do not pay twice" in replies
    return config_dir_with(
        tmp_path / "candidate", **{"routing.yaml": routing, "templates__replies.yaml": replies}
    )


@pytest.fixture
async def recorded(tmp_path):
    url = await migrated_sqlite(tmp_path / "store.db")
    rules = rules_from(CONFIG_DIR)
    async with ConversationStore(url) as store:
        old = ManualClock(now() - timedelta(days=10))
        await place(
            store,
            rules.config,
            old,
            classified("transaction_failed", "normal", text="my transfer failed"),
        )
        clock = ManualClock()
        for text, category, urgency in RECORDED:
            clock.advance(1)
            await place(store, rules.config, clock, classified(category, urgency, text=text))
    return url


def replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", "replay", "--current", str(CONFIG_DIR), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


async def test_replay_counts_what_candidate_rules_would_change(recorded, tmp_path):
    result = replay(
        "--config", str(candidate(tmp_path)), "--database-url", recorded, "--since", "7d", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["replayed"] == 6  # the conversation from ten days ago is left out
    assert report["changed"] == {"queue": 2, "priority": 1, "reply": 3}
    assert report["unchanged"] == 1
    assert report["queue_moves"] == [{"from": "accounts", "to": "triage", "conversations": 2}]
    assert report["rules_in_force"] != report["candidate"]
    deducted = next(c for c in report["conversations"] if c["priority"] == [20, 30])
    assert deducted["changes"] == ["priority", "reply"]
    assert "do not pay again" in deducted["reply"][0] and "do not pay twice" in deducted["reply"][1]


async def test_replay_prints_a_readable_summary_of_everything_recorded(recorded, tmp_path):
    result = replay("--config", str(candidate(tmp_path)), "--database-url", recorded)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("replayed 7 conversations")
    assert "  queue changed    2" in out and "  accounts -> triage: 2" in out
    assert "filter route:password_reset -> route:password_reset): queue accounts -> triage" in out


async def test_the_same_rules_change_nothing(recorded):
    result = replay("--config", str(CONFIG_DIR), "--database-url", recorded, "--json")
    report = json.loads(result.stdout)
    assert (report["replayed"], report["unchanged"], report["conversations"]) == (7, 7, [])


async def test_a_bad_candidate_is_refused_with_file_line_and_reason(recorded, tmp_path):
    bad = config_dir_with(tmp_path / "bad")
    path = bad / "routing.yaml"
    path.write_text(
        path.read_text().replace(
            'filter: category == "data_loss"', 'filter: category === "data_loss"'
        )
    )
    result = replay("--config", str(bad), "--database-url", recorded)
    assert result.returncode == 1
    assert "routing.yaml:" in result.stderr and "syntax error" in result.stderr


async def test_a_bad_since_is_a_clear_error(recorded, tmp_path):
    result = replay(
        "--config", str(CONFIG_DIR), "--database-url", recorded, "--since", "last tuesday"
    )
    assert result.returncode == 2 and "--since 'last tuesday'" in result.stderr


@pytest.mark.parametrize(
    "option, value, reason",
    [
        ("--limit", "-3", "from 1 to 10,000,000"),  # SQLite took it for no limit at all
        ("--limit", "ten", "from 1 to 10,000,000"),
        ("--show", "-1", "from 0 to 1,000,000"),  # listed all but the last
    ],
)
def test_a_count_out_of_range_is_refused_before_the_store_is_opened(option, value, reason):
    result = replay("--config", str(CONFIG_DIR), option, value)
    assert result.returncode == 2
    assert f"argument {option}: expected a whole number {reason}, not {value!r}" in result.stderr
