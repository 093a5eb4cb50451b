"""Acknowledgements promise only what is true: "taking it now" only when someone who could take
it is available; otherwise when someone will be, from the agents' hours; times written as a
reader of each language expects ("周三 09:00（北京时间）", "Wed 09:00 (Asia/Shanghai)")."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from router.app import Router
from router.operator_files.config import load_config
from router.routing.replies import Replies, Wait, moment
from router.services.sla import ManualClock
from tests.conftest import CONFIG_DIR, RunningRouter, router_settings
from tests.kafka_helpers import read_topic
from tests.routing_helpers import classified

SHANGHAI = ZoneInfo("Asia/Shanghai")
CONFIG = load_config(CONFIG_DIR)
ASCII_WEEKDAY = re.compile(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\b")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def fraud_ack(language: str, wait: Wait, channel: str = "sms") -> str:
    return Replies(CONFIG.templates).acknowledgement(
        category="unauthorized_transaction",
        urgency="critical",
        language=language,
        channel=channel,
        ticket="T1",
        redactions=[],
        wait=wait,
    )


MONDAY_NIGHT = local(2025, 6, 9, 23, 0)
WEDNESDAY_NINE = local(2025, 6, 11, 9, 0)


def test_nobody_available_the_english_fraud_acknowledgement_says_so_and_when_someone_will_be():
    text = fraud_ack(
        "en",
        Wait(opens=WEDNESDAY_NINE, timezone="Asia/Shanghai", now=MONDAY_NIGHT, staffed=False),
    )
    assert "taking it now" not in text
    assert (
        "No fraud specialist is online right now; one will be available from "
        "Wed 09:00 (Asia/Shanghai)." in text
    )


def test_nobody_available_the_chinese_fraud_acknowledgement_says_so_and_when_someone_will_be():
    text = fraud_ack(
        "zh",
        Wait(opens=WEDNESDAY_NINE, timezone="Asia/Shanghai", now=MONDAY_NIGHT, staffed=False),
    )
    assert "正在优先处理" not in text
    assert "目前没有反欺诈专员在线，预计 周三 09:00（北京时间）起有专员处理。" in text
    assert not ASCII_WEEKDAY.search(text)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_nobody_available_and_no_hours_known_no_time_is_promised(language):
    text = fraud_ack(language, Wait(staffed=False), channel="email")
    assert ("专员一上线即优先处理" if language == "zh" else "the first one to come online") in text
    assert "taking it now" not in text and "正在优先处理" not in text
    assert not re.search(r"\d\d:\d\d|分钟|minutes", text)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "A fraud specialist is taking it now; expected wait about 3 minutes."),
        ("zh", "反欺诈专员正在优先处理，预计等待约 3 分钟。"),
    ],
)
def test_someone_available_the_fraud_acknowledgement_says_it_is_being_taken(language, expected):
    assert expected in fraud_ack(language, Wait(seconds=150))


def test_a_closed_queue_reads_in_chinese_with_a_chinese_weekday_and_no_english():
    text = Replies(CONFIG.templates).acknowledgement(
        category="general",
        urgency="low",
        language="zh",
        channel="sms",
        ticket="T1",
        redactions=[],
        wait=Wait(opens=WEDNESDAY_NINE, timezone="Asia/Shanghai", now=MONDAY_NIGHT),
    )
    assert "预计 周三 09:00（北京时间）开始办公后回复" in text
    assert "预计等待Wed" not in text and not ASCII_WEEKDAY.search(text)


@pytest.mark.parametrize(
    ("at", "language", "expected"),
    [
        (local(2025, 6, 9, 23, 0), "zh", "今天 09:00（北京时间）"),
        (local(2025, 6, 10, 23, 0), "zh", "明天 09:00（北京时间）"),
        (local(2025, 6, 10, 23, 0), "en", "tomorrow 09:00 (Asia/Shanghai)"),
        (local(2025, 6, 1, 23, 0), "zh", "6月11日 09:00（北京时间）"),
        (local(2025, 6, 1, 23, 0), "en", "11 Jun 09:00 (Asia/Shanghai)"),
    ],
)
def test_a_moment_reads_as_today_tomorrow_a_weekday_or_a_date(at, language, expected):
    if expected.startswith("今天"):
        at = local(2025, 6, 11, 7, 0)
    assert moment(WEDNESDAY_NINE, "Asia/Shanghai", at, language) == expected


def test_self_service_answers_two_step_verification_and_failed_payments_in_both_languages():
    replies = Replies(CONFIG.templates)
    expected = {
        ("account_security", "en"): "Two-step verification",
        ("account_security", "zh"): "两步验证",
        ("transaction_failed", "en"): "a 'Failed' payment is returned",
        ("transaction_failed", "zh"): "「失败」的款项会自动退回",
    }
    for (category, language), part in expected.items():
        for urgency, shown in (("normal", True), ("critical", False)):
            text = replies.acknowledgement(
                category=category,
                urgency=urgency,
                language=language,
                channel="chat",
                ticket="T1",
                redactions=[],
                wait=Wait(seconds=60),
            )
            assert (part in text) is shown, (category, language, urgency)


# --- through the running router -------------------------------------------------------------


@pytest.fixture
async def night_router(database_url, broker_kind, request):
    # Tuesday 23:30 in Shanghai: li.na (the only fraud agent) works `office` hours, 09:00-21:00.
    clock = ManualClock(local(2025, 6, 10, 23, 30))
    settings = router_settings(database_url, broker_kind, request)
    async with Router(settings, clock=clock) as router, aiohttp.ClientSession() as http:
        yield RunningRouter(router, http)


async def acknowledgement(r: RunningRouter, language: str, key: str, text: str = "…") -> str:
    env = classified("unauthorized_transaction", "critical", language=language, key=key, text=text)
    await r.router.bus.publish(r.router.bus.topics.classified, env.to_bytes(), key=env.kafka_key)
    records = await read_topic(
        r.router.bus,
        r.router.bus.topics.outbound,
        lambda rs: any(x["value"]["conversation_key"] == key for x in rs),
    )
    text: str = next(x["value"] for x in records if x["value"]["conversation_key"] == key)["text"]
    return text


async def test_the_router_acknowledges_a_fraud_report_truthfully_when_nobody_is_available(
    night_router,
):
    r = night_router
    zh = await acknowledgement(r, "zh", "chat:night-zh")
    en = await acknowledgement(r, "en", "chat:night-en")
    assert "目前没有反欺诈专员在线，预计 明天 09:00（北京时间）起有专员处理" in zh
    assert (
        "No fraud specialist is online right now; one will be available from tomorrow 09:00" in en
    )
    await r.router.store.set_password("li.na", "agent-password-1")
    headers = await r.login("li.na", "agent-password-1")
    async with r.http.post(
        r.url("/api/agents/me/status"), headers=headers, json={"status": "available"}
    ) as resp:
        assert resp.status == 200
    staffed = await acknowledgement(r, "en", "chat:night-en-2")
    assert "A fraud specialist is taking it now; expected wait about" in staffed


async def test_a_customer_who_writes_traditional_chinese_is_answered_in_traditional(night_router):
    r = night_router
    hant = await acknowledgement(r, "zh", "chat:hk", text="我個帳戶俾人轉走咗錢，唔係我做嘅")
    hans = await acknowledgement(r, "zh", "chat:cn", text="我的账户被人转走了钱，不是我做的")
    assert "目前沒有反欺詐專員在線" in hant and "工單" in hant
    assert "目前没有反欺诈专员在线" in hans and "工单" in hans


def test_the_shipped_acknowledgements_never_put_an_english_weekday_in_chinese():
    for day in range(9, 16):  # every day of a week, each opening a few days on
        for staffed in (True, False):
            wait = Wait(
                opens=local(2025, 6, 16, 9, 0),
                timezone="Asia/Shanghai",
                now=local(2025, 6, day, 22, 0),
                staffed=staffed,
            )
            assert not ASCII_WEEKDAY.search(fraud_ack("zh", wait, channel="email"))
