"""Routing scenarios an operator would recognize, one row each, against the shipped config/.

The classification is given, not computed, so these rows test the routing rules alone; who is
available and which queues are open are given too.
"""

from __future__ import annotations

import json
import operator
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from router.core.envelope import Envelope, Urgency
from router.operator_files.config import ConfigError, load_config
from router.operator_files.expression import Expression, ExpressionError, namespace
from router.routing.replies import Replies, Wait
from router.routing.workflow import Workflow, facts_for
from tests.conftest import CONFIG_DIR
from tests.routing_helpers import classified

CONFIG = load_config(CONFIG_DIR)
EVERY_QUEUE = frozenset(CONFIG.routing.queues)


@dataclass
class Row:
    situation: str
    envelope: Envelope
    queue: str
    priority: int
    rule: str
    customer: dict = field(default_factory=dict)
    staffed: frozenset = EVERY_QUEUE  # queues where an agent could take it now
    open: frozenset = EVERY_QUEUE
    step: int = 0


ROWS = [
    Row(
        "a fraud report goes to fraud at the top priority",
        classified("unauthorized_transaction", "critical"),
        "fraud",
        100,
        "fraud first",
    ),
    Row(
        "a fraud report goes to fraud even when nobody is signed in",
        classified("unauthorized_transaction", "critical"),
        "fraud",
        100,
        "fraud first",
        staffed=frozenset(),
    ),
    Row(
        "a fraud report the classifier doubts is still fraud, never triage",
        classified("unauthorized_transaction", "critical", confidence=0.2),
        "fraud",
        100,
        "fraud first",
    ),
    Row(
        "a phone stolen unlocked is handled by the fraud team",
        classified("data_loss", "critical"),
        "fraud",
        90,
        "phone stolen unlocked",
    ),
    Row(
        "a critical message the classifier doubts is never sent to triage",
        classified("data_loss", "critical", confidence=0.2),
        "fraud",
        90,
        "phone stolen unlocked",
    ),
    Row(
        "someone in the account right now is handled by the fraud team",
        classified("account_security", "critical"),
        "fraud",
        90,
        "account taken over",
    ),
    Row(
        "a login question that is not critical stays with accounts",
        classified("account_security", "high"),
        "accounts",
        0,
        "route:account_security",
    ),
    Row(
        "a lost chat history is an accounts question",
        classified("data_loss", "normal"),
        "accounts",
        0,
        "route:data_loss",
    ),
    Row(
        "money deducted but not received jumps the payments queue",
        classified("transaction_failed", "high"),
        "payments",
        20,
        "money left the account",
    ),
    Row(
        "a pending transfer waits in payments",
        classified("transaction_failed", "normal"),
        "payments",
        0,
        "route:transaction_failed",
    ),
    Row(
        "a VIP's failed transfer goes to payments at VIP priority",
        classified("transaction_failed", "normal"),
        "payments",
        50,
        "VIP money problems",
        customer={"vip": True},
    ),
    Row(
        "a VIP's failed transfer goes to general when no payments agent can take it",
        classified("transaction_failed", "normal"),
        "general",
        50,
        "VIP money problems",
        customer={"vip": True},
        staffed=EVERY_QUEUE - {"payments"},
        step=1,
    ),
    Row(
        "a forgotten password is an accounts question",
        classified("password_reset", "normal", channel="sms"),
        "accounts",
        0,
        "route:password_reset",
    ),
    Row(
        "a message the classifier doubts goes to triage",
        classified("general", "low", confidence=0.3),
        "triage",
        0,
        "triage",
    ),
    Row(
        "a doubtful message overflows from an unstaffed triage to a staffed general queue",
        classified("general", "low", confidence=0.3),
        "general",
        0,
        "triage",
        staffed=frozenset({"general"}),
    ),
    Row(
        "a doubtful message stays in triage when general could not take it either",
        classified("general", "low", confidence=0.3),
        "triage",
        0,
        "triage",
        staffed=frozenset(),
    ),
    Row(
        "a fee question at night waits in general for the office to open",
        classified("general", "low"),
        "general",
        0,
        "route:general",
        open=EVERY_QUEUE - {"general"},
    ),
    Row(
        "a doubtful message at night skips the closed general queue and stays in triage",
        classified("general", "low", confidence=0.3),
        "triage",
        0,
        "triage",
        staffed=frozenset({"general"}),
        open=EVERY_QUEUE - {"general"},
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.situation for r in ROWS])
def test_routing_scenario(row: Row):
    decision = Workflow(CONFIG).decide(
        facts_for(row.envelope, CONFIG, row.customer),
        available=lambda q: q in row.staffed,
        is_open=lambda q: q in row.open,
    )
    assert (decision.queue, decision.priority, decision.rule, decision.step) == (
        row.queue,
        row.priority,
        row.rule,
        row.step,
    ), decision.explanation
    assert decision.rules_version == CONFIG.version
    assert decision.explanation  # every decision says why


def test_a_ladder_step_with_a_timeout_says_when_the_next_step_comes():
    decision = Workflow(CONFIG).decide(
        facts_for(classified("unauthorized_transaction", "critical"), CONFIG)
    )
    assert decision.timeout == 120
    assert Workflow(CONFIG).ladder("fraud first")[1].priority == 200
    last = Workflow(CONFIG).place("fraud first", Workflow(CONFIG).ladder("fraud first"), 1, [])
    assert (last.queue, last.priority, last.timeout) == ("fraud", 200, None)


# --- replies ----------------------------------------------------------------------------------

REPLY_ROWS = [
    (
        "an SMS acknowledgement is short, with the ticket and the wait",
        "general",
        "low",
        "sms",
        "en",
        [],
        ["T1234", "about 5 minutes"],
        ["\n"],
    ),
    (
        "an email acknowledgement is complete",
        "transaction_failed",
        "normal",
        "email",
        "en",
        [],
        ["T1234", "about 5 minutes", "transaction ID"],
        [],
    ),
    (
        "a password reset by SMS gets the short self-service steps",
        "password_reset",
        "normal",
        "sms",
        "en",
        [],
        ["Forgot password"],
        [],
    ),
    (
        "a password reset by email gets every step",
        "password_reset",
        "normal",
        "email",
        "en",
        [],
        ["1. Open the app", "3. Choose a new password"],
        [],
    ),
    (
        "using several devices gets the device steps",
        "multi_device",
        "low",
        "telegram",
        "zh",
        [],
        ["设备管理"],
        [],
    ),
    (
        "a lost phone gets the backup restore steps",
        "data_loss",
        "normal",
        "whatsapp",
        "en",
        [],
        ["restore your cloud backup"],
        [],
    ),
    (
        "a phone stolen unlocked gets no self-service, it is urgent",
        "data_loss",
        "critical",
        "sms",
        "en",
        [],
        ["T1234"],
        ["restore your cloud backup"],
    ),
    (
        "a masked secret brings the warning, in Chinese",
        "general",
        "low",
        "chat",
        "zh",
        ["one_time_code"],
        ["验证码"],
        [],
    ),
]


@pytest.mark.parametrize(
    ("situation", "category", "urgency", "channel", "language", "redactions", "has", "lacks"),
    REPLY_ROWS,
    ids=[r[0] for r in REPLY_ROWS],
)
def test_reply_scenario(situation, category, urgency, channel, language, redactions, has, lacks):
    text = Replies(CONFIG.templates).acknowledgement(
        category=category,
        urgency=urgency,
        language=language,
        channel=channel,
        ticket="T1234",
        redactions=redactions,
        wait=Wait(seconds=290),
    )
    for part in has:
        assert part in text or part.replace("about 5 minutes", "约 5 分钟") in text
    for part in lacks:
        assert part not in text


def test_sms_replies_are_much_shorter_than_email_replies():
    def reply(channel):
        return Replies(CONFIG.templates).acknowledgement(
            category="password_reset",
            urgency="normal",
            language="en",
            channel=channel,
            ticket="T1234",
            redactions=["password"],
            wait=Wait(seconds=60),
        )

    assert len(reply("sms")) * 2 < len(reply("email"))


def test_a_closed_queue_quotes_its_opening_time():
    text = Replies(CONFIG.templates).acknowledgement(
        category="general",
        urgency="low",
        language="en",
        channel="sms",
        ticket="T1",
        redactions=[],
        wait=Wait(
            opens=datetime(2025, 6, 9, 1, 0, tzinfo=UTC),  # Monday 09:00 in Shanghai
            timezone="Asia/Shanghai",
            now=datetime(2025, 6, 6, 14, 0, tzinfo=UTC),  # Friday 22:00 there
        ),
    )
    assert "we open at Mon 09:00 (Asia/Shanghai) and will reply then" in text


# --- the filter language ------------------------------------------------------------------------

FACTS = {
    "category": "transaction_failed",
    "urgency": Urgency.HIGH,
    "confidence": 0.9,
    "channel": "voice",
    "text": "refund please",
    "customer": namespace({"vip": True, "segment": "gold"}),
    "entities": namespace({"amount": ["500"]}, missing=[]),
}

FILTERS = [
    ('urgency >= "high"', True),
    ('urgency > "high"', False),
    ('urgency in ["high", "critical"]', True),
    ('channel == "voice" and customer.vip', True),
    ('customer.segment == "gold" and not customer.blocked', True),
    ("len(entities.amount) > 0 and len(entities.transaction_id) == 0", True),
    ('"refund" in text or confidence < 0.5', True),
    ('category != "transaction_failed" or confidence <= 0.5', False),
    ('confidence > "high"', None),  # cannot be evaluated: the filter is skipped, not crashed
]


@pytest.mark.parametrize(("source", "expected"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filter_language_evaluates(source, expected):
    expression = Expression(source)
    if expected is None:
        from router.operator_files.expression import EvaluationError

        with pytest.raises(EvaluationError):
            expression.evaluate(FACTS)
    else:
        assert expression.evaluate(FACTS) is expected


URGENCIES = list(Urgency)
OPERATORS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


@pytest.mark.parametrize("op", OPERATORS)
def test_urgencies_compare_by_rank_on_either_side_and_anything_else_as_text(op):
    test = getattr(operator, OPERATORS[op])
    for have in URGENCIES:
        for named in URGENCIES:
            facts = {**FACTS, "urgency": have}
            expected = test(URGENCIES.index(have), URGENCIES.index(named))
            assert Expression(f'urgency {op} "{named}"').evaluate(facts) is expected
            assert Expression(f'"{named}" {op} urgency').evaluate(facts) is test(
                URGENCIES.index(named), URGENCIES.index(have)
            )
        # Not an urgency (a customer's attribute): the two compare as text, never by rank.
        for other in ("gold", "HIGH", 3, None):
            facts = {**FACTS, "urgency": have, "customer": namespace({"segment": other})}
            assert Expression(f"urgency {op} customer.segment").evaluate(facts) is test(
                str(have), str(other)
            )


REFUSED = [
    ('__import__("os").system("id")', "calling a function"),
    ("category.__class__", "only customer and entities"),
    ("customer._secret", "not allowed"),
    ('categroy == "general"', "unknown name 'categroy'"),
    ('urgency == "urgent"', "'urgent' is not an urgency"),
    ('open("/etc/passwd")', "calling a function"),
    ("[c for c in text]", "not allowed"),
    ("lambda: 1", "not allowed"),
    ('category == "a" if vip else "b"', "not allowed"),
    ("category ==", "syntax error"),
    ("true", "write True"),
    ("", "non-empty"),
]


@pytest.mark.parametrize(("source", "reason"), REFUSED, ids=[r[0] or "empty" for r in REFUSED])
def test_filter_language_refuses_anything_outside_it(source, reason):
    with pytest.raises(ExpressionError) as err:
        Expression(source)
    assert reason in str(err.value)


@pytest.fixture
def config_copy(tmp_path):
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    return target


def test_a_bad_filter_in_routing_yaml_is_refused_with_file_line_and_reason(config_copy):
    path = config_copy / "routing.yaml"
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if 'filter: category == "data_loss"' in line)
    lines[at] = '    filter: category == "data_loss" and os.system("rm")'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(config_copy)
    [problem] = err.value.problems
    assert problem.file == "routing.yaml" and problem.line == at + 1
    assert "os.system" in problem.reason or "function" in problem.reason


def test_unknown_queues_and_hours_are_each_named(config_copy):
    path = config_copy / "routing.yaml"
    text = path.read_text()
    text = text.replace("{queue: general, priority: 50}", "{queue: vip_desk, priority: 50}")
    text = text.replace("    hours: office\n", "    hours: offfice\n")
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(config_copy)
    reasons = [p.reason for p in err.value.problems]
    assert any("workflow.2.targets.1.queue: unknown queue 'vip_desk'" in r for r in reasons)
    assert any("queues.general.hours: unknown business hours 'offfice'" in r for r in reasons)
    assert all(p.line for p in err.value.problems)


def test_a_template_with_an_unknown_placeholder_is_refused(config_copy):
    path = config_copy / "templates" / "replies.yaml"
    path.write_text(
        path.read_text().replace(
            "(ticket {ticket}) and an agent", "(ticket {tikcet}) and an agent", 1
        )
    )
    with pytest.raises(ConfigError) as err:
        load_config(config_copy)
    assert "unknown placeholder {tikcet}" in str(err.value)
    assert "templates/replies.yaml:" in str(err.value)


def test_simulate_shows_filter_queue_priority_and_the_reply():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "router.cli",
            "simulate",
            "I forgot my password",
            "--channel",
            "sms",
            "--language",
            "zh",
            "--config",
            str(CONFIG_DIR),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(result.stdout)
    assert out["queue"] == "accounts" and out["priority"] == 0
    assert out["filter_matched"] == "route:password_reset"
    assert "T00000000" in out["reply"] and "忘记密码" in out["reply"]  # zh, with the short steps
    assert out["explanation"][-1].startswith("step 1 of 1: queue accounts")
