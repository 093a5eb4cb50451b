"""First-response SLAs under a clock the test moves by hand: business hours in the queue's time
zone, breaches reported once to support.events and the metrics, the ladder and the priority
moved on breach."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from router.app import Router
from router.core.envelope import Outbound
from router.operator_files.schemas.routing import BusinessHours
from router.services.sla import Calendar, ManualClock, SlaMonitor
from tests.conftest import CONFIG_DIR, make_settings
from tests.kafka_helpers import read_topic
from tests.routing_helpers import classified, config_dir_with, place, rules_from

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = BusinessHours(
    timezone="Asia/Shanghai",
    weekly={d: ["09:00-21:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
    | {"sat": ["10:00-18:00"]},
    closed_on=[date(2025, 10, 1)],
)


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


# --- calendars ---------------------------------------------------------------------------------


def test_time_after_closing_counts_from_the_next_opening():
    friday_evening = local(2025, 6, 6, 20, 50)  # 10 minutes before Friday closes
    due = Calendar(OFFICE).add(friday_evening, 30 * 60)
    assert due.astimezone(SHANGHAI) == local(2025, 6, 7, 10, 20)  # Saturday opens at 10:00


def test_a_day_with_no_hours_and_a_holiday_are_skipped():
    saturday_evening = local(2025, 6, 7, 17, 0)
    assert Calendar(OFFICE).add(saturday_evening, 2 * 3600).astimezone(SHANGHAI) == local(
        2025, 6, 9, 10, 0
    )
    before_holiday = local(2025, 9, 30, 20, 0)  # Tuesday; Wednesday 1 October is closed
    assert Calendar(OFFICE).add(before_holiday, 2 * 3600).astimezone(SHANGHAI) == local(
        2025, 10, 2, 10, 0
    )


def test_opening_hours_follow_the_wall_clock_across_a_daylight_saving_change():
    new_york = ZoneInfo("America/New_York")
    hours = BusinessHours(
        timezone="America/New_York", weekly={"mon": ["09:00-17:00"], "fri": ["09:00-17:00"]}
    )
    friday = datetime(2025, 3, 7, 16, 0, tzinfo=new_york)  # EST; clocks go forward on Sunday
    due = Calendar(hours).add(friday, 2 * 3600)
    assert due.astimezone(new_york).replace(tzinfo=None) == datetime(2025, 3, 10, 10, 0)
    assert (
        due.utcoffset() is None or due.astimezone(new_york).utcoffset().total_seconds() == -4 * 3600
    )


def test_open_and_next_opening():
    calendar = Calendar(OFFICE)
    assert calendar.is_open(local(2025, 6, 6, 9, 0))
    assert not calendar.is_open(local(2025, 6, 6, 21, 0))
    assert calendar.next_open(local(2025, 6, 8, 12, 0)).astimezone(SHANGHAI) == local(
        2025, 6, 9, 9, 0
    )
    assert (
        calendar.describe(local(2025, 6, 9, 9, 0), local(2025, 6, 8, 12, 0))
        == "Mon 09:00 (Asia/Shanghai)"
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["is_open", "next_open", "add"]),
            # Around a week with a holiday: evenings, weekends, the closed day, opening times.
            st.datetimes(
                min_value=datetime(2025, 9, 26),
                max_value=datetime(2025, 10, 6),
                timezones=st.just(SHANGHAI),
            ).map(lambda at: at.replace(second=0, microsecond=0)),
            st.sampled_from([0, 60, 30 * 60, 4 * 3600, 30 * 3600]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_a_calendar_asked_again_and_again_answers_as_a_new_one_would(questions):
    # A dispatcher's batch keeps one calendar a queue, which keeps its last answers: asked the
    # same or something else, in any order, it must answer what a calendar of its own would.
    kept = Calendar(OFFICE)
    for method, at, seconds in questions:
        args = (at, seconds) if method == "add" else (at,)
        assert getattr(kept, method)(*args) == getattr(Calendar(OFFICE), method)(*args)


def test_without_hours_a_queue_is_always_open():
    start = local(2025, 6, 8, 3, 0)
    assert Calendar(None).is_open(start)
    assert (Calendar(None).add(start, 90) - start).total_seconds() == 90


# --- the monitor -------------------------------------------------------------------------------


class Events:
    def __init__(self):
        self.seen = []

    async def __call__(self, event) -> None:
        self.seen.append(event)

    def types(self) -> list[str]:
        return [e.type for e in self.seen]


@pytest.fixture
def rules():
    return rules_from(CONFIG_DIR)


@pytest.fixture
async def store(database_url):
    from router.store.conversations import ConversationStore

    async with ConversationStore(database_url) as s:
        yield s


@pytest.fixture
def clock():
    return ManualClock(local(2025, 6, 4, 15, 0))  # a Wednesday afternoon: every queue is open


def breaches(queue: str) -> float:
    return REGISTRY.get_sample_value("supportrouter_sla_breaches_total", {"queue": queue}) or 0.0


async def test_a_breach_is_reported_once_when_the_first_response_is_late(store, rules, clock):
    events = Events()
    monitor = SlaMonitor(store, rules, clock, events)
    conversation = await place(
        store, rules.config, clock, classified("transaction_failed", "normal")
    )
    before = breaches("payments")
    clock.advance(899)  # payments promises a first response within 900 seconds
    await monitor.sweep()
    assert events.types() == []
    clock.advance(2)
    await monitor.sweep()
    await monitor.sweep()
    assert events.types()[0] == "sla.breached"
    assert events.types().count("sla.breached") == 1
    assert breaches("payments") == before + 1
    stored = await store.conversation(conversation["id"])
    assert stored["sla_breached_at"] is not None


async def test_a_first_response_in_time_is_no_breach(store, rules, clock):
    events = Events()
    conversation = await place(
        store, rules.config, clock, classified("transaction_failed", "normal")
    )
    clock.advance(300)
    await store.claim(conversation["id"], "li.na")
    await store.add_outbound(
        Outbound(
            conversation_id=conversation["id"],
            conversation_key=conversation["conversation_key"],
            channel="chat",
            to="x",
            text="checking now",
            kind="agent_reply",
        )
    )
    clock.advance(3600)
    await SlaMonitor(store, rules, clock, events).sweep()
    assert events.types() == []


async def test_an_automatic_acknowledgement_does_not_stop_the_clock(store, rules, clock):
    events = Events()
    conversation = await place(
        store, rules.config, clock, classified("transaction_failed", "normal")
    )
    await store.add_outbound(
        Outbound(
            conversation_id=conversation["id"],
            conversation_key=conversation["conversation_key"],
            channel="chat",
            to="x",
            text="we have it",
            kind="acknowledgement",
        )
    )
    clock.advance(901)
    await SlaMonitor(store, rules, clock, events).sweep()
    assert events.types()[0] == "sla.breached"


async def test_the_ladder_moves_on_after_its_timeout_and_a_breach_on_the_last_step_raises_priority(
    store, rules, clock
):
    events = Events()
    monitor = SlaMonitor(store, rules, clock, events)
    conversation = await place(store, rules.config, clock, classified("transaction_failed", "high"))
    assert (conversation["rule"], conversation["priority"]) == ("money left the account", 20)
    clock.advance(601)  # the rule's first step waits 600 seconds, then priority 60
    await monitor.sweep()
    moved = await store.conversation(conversation["id"])
    assert (moved["ladder_step"], moved["priority"], moved["queue"]) == (1, 60, "payments")
    assert events.types() == ["conversation.escalated"]
    clock.advance(300)  # 901 seconds: the SLA is breached on the last step: priority + 10
    await monitor.sweep()
    assert events.types()[1:] == ["sla.breached", "conversation.reprioritized"]
    assert (await store.conversation(conversation["id"]))["priority"] == 70


async def test_a_fraud_breach_raises_priority_and_the_ladder_never_lowers_it(store, rules, clock):
    events = Events()
    monitor = SlaMonitor(store, rules, clock, events)
    conversation = await place(
        store, rules.config, clock, classified("unauthorized_transaction", "critical")
    )
    clock.advance(61)  # fraud's SLA is 60 seconds; its policy is raise_priority by 50
    await monitor.sweep()
    assert (await store.conversation(conversation["id"]))["priority"] == 150
    clock.advance(60)  # step 2 of "fraud first" says 200: higher, so it applies
    await monitor.sweep()
    assert (await store.conversation(conversation["id"]))["priority"] == 200
    assert events.types() == [
        "sla.breached",
        "conversation.reprioritized",
        "conversation.escalated",
    ]


async def test_without_a_ladder_a_breach_on_a_queue_that_escalates_raises_priority(
    store, rules, clock
):
    events = Events()
    conversation = await place(
        store,
        rules.config,
        clock,
        classified("transaction_failed", "normal"),
        customer={"vip": True},
    )
    await store.transfer(conversation["id"], "payments")  # put back by hand: no ladder any more
    clock.advance(901)
    await SlaMonitor(store, rules, clock, events).sweep()
    assert (await store.conversation(conversation["id"]))["priority"] == 50 + 10
    assert events.types() == ["sla.breached", "conversation.reprioritized"]


async def test_a_breach_on_a_queue_that_escalates_moves_the_conversation_to_the_next_step(
    store, clock, tmp_path
):
    text = (
        (CONFIG_DIR / "routing.yaml")
        .read_text()
        .replace(
            "{queue: payments, priority: 50, timeout: 300, skip_if_no_agent: true}",
            "{queue: payments, priority: 50, timeout: 3000, skip_if_no_agent: true}",
        )
    )
    rules = rules_from(config_dir_with(tmp_path, **{"routing.yaml": text}))
    events = Events()
    vip = await place(
        store,
        rules.config,
        clock,
        classified("transaction_failed", "normal"),
        customer={"vip": True},
    )
    assert vip["queue"] == "payments"
    clock.advance(901)  # payments' SLA, long before the step's own timeout
    await SlaMonitor(store, rules, clock, events).sweep()
    moved = await store.conversation(vip["id"])
    assert (moved["queue"], moved["ladder_step"], moved["priority"]) == ("general", 1, 50)
    assert events.types() == ["sla.breached", "conversation.escalated"]


async def test_time_outside_business_hours_does_not_count(store, rules):
    clock = ManualClock(local(2025, 6, 6, 20, 50))  # Friday, general closes at 21:00; SLA 4 hours
    events = Events()
    monitor = SlaMonitor(store, rules, clock, events)
    await place(store, rules.config, clock, classified("general", "low"))
    clock.set(local(2025, 6, 7, 13, 49))  # Saturday opens 10:00: 10 min Friday + 3 h 49 min
    await monitor.sweep()
    assert events.types() == []
    clock.set(local(2025, 6, 7, 13, 51))
    await monitor.sweep()
    assert events.types()[0] == "sla.breached"


async def test_a_resolved_conversation_never_breaches(store, rules, clock):
    events = Events()
    conversation = await place(
        store, rules.config, clock, classified("transaction_failed", "normal")
    )
    await store.resolve(conversation["id"])
    clock.advance(10_000)
    await SlaMonitor(store, rules, clock, events).sweep()
    assert events.types() == []


async def test_the_running_router_puts_a_breach_on_support_events(tmp_path):
    """The dispatcher's own timers, with the clock the router was given."""
    clock = ManualClock()
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/s.db")
    async with Router(settings, clock=clock) as router:
        env = classified("unauthorized_transaction", "critical", key="chat:sla")
        await router.bus.publish(router.bus.topics.classified, env.to_bytes(), key=env.kafka_key)
        await read_topic(
            router.bus, router.bus.topics.outbound, lambda r: len(r) >= 1
        )  # acknowledged
        clock.advance(61)
        records = await read_topic(
            router.bus,
            router.bus.topics.events,
            lambda r: any(x["value"]["type"] == "sla.breached" for x in r),
        )
    breach = next(r["value"] for r in records if r["value"]["type"] == "sla.breached")
    assert breach["queue"] == "fraud" and breach["urgency"] == "critical"
