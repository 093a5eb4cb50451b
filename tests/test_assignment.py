"""Assignment: the longest-idle eligible agent with room, the returning customer's last agent,
critical first, and taking a conversation back from an agent who went silent."""

from __future__ import annotations

import pytest

from router.core.envelope import Outbound
from router.services.assignment.offers import Assigner
from router.services.sla import ManualClock
from router.store.conversations import ConversationStore
from tests.routing_helpers import classified, config_dir_with, place, rules_from
from tests.test_journey import receive_until, wait_for_queue

AGENTS = """\
version: 2
agents:
  - {username: admin, role: supervisor}
  - {username: ann, queues: [payments, accounts, general], skills: [payments, accounts], languages: [en, zh], capacity: {chat: 1}}
  - {username: bo, queues: [payments, accounts, general], skills: [payments, accounts], languages: [en, zh], capacity: {chat: 1}}
  - {username: cy, queues: [payments], languages: [en, zh]}
  - {username: dee, queues: [payments], skills: [payments], languages: [zh]}
"""


class Events:
    def __init__(self):
        self.seen = []

    async def __call__(self, event) -> None:
        self.seen.append((event.type, event.assignee))


@pytest.fixture
def rules(tmp_path):
    return rules_from(config_dir_with(tmp_path, **{"agents.yaml": AGENTS}))


@pytest.fixture
async def store(database_url):
    async with ConversationStore(database_url) as s:
        yield s


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def assigner(store, rules, clock, events):
    return Assigner(store, rules, clock, publish=events, worker="test")


async def conversation(store, rules, clock, category="transaction_failed", urgency="normal", **kw):
    clock.advance(1)
    return await place(store, rules.config, clock, classified(category, urgency, **kw))


async def holder(store, conv) -> str | None:
    return (await store.conversation(conv["id"]))["assignee"]


async def test_the_agent_idle_longest_gets_the_next_conversation(store, rules, clock, assigner):
    await assigner.set_status("ann", "available")
    clock.advance(10)
    await assigner.set_status("bo", "available")
    first = await conversation(store, rules, clock, channel="email")
    second = await conversation(store, rules, clock, channel="email")
    await assigner.assign_waiting()
    assert [await holder(store, first), await holder(store, second)] == ["ann", "bo"]
    third = await conversation(store, rules, clock, channel="email")
    await assigner.assign_waiting()
    assert await holder(store, third) == "ann"  # ann's last offer is older than bo's


async def test_an_agent_at_capacity_gets_nothing_more_until_one_is_resolved(
    store, rules, clock, assigner
):
    await assigner.set_status("ann", "available")  # chat capacity 1
    first = await conversation(store, rules, clock)
    second = await conversation(store, rules, clock)
    await assigner.assign_waiting()
    assert [await holder(store, first), await holder(store, second)] == ["ann", None]
    email = await conversation(store, rules, clock, channel="email")  # room on another channel
    await assigner.assign_waiting()
    assert await holder(store, email) == "ann"
    await store.resolve(first["id"])
    await assigner.assign_waiting()
    assert await holder(store, second) == "ann"


async def test_skills_and_languages_decide_who_is_eligible(store, rules, clock, assigner):
    await assigner.set_status("cy", "available")  # in payments but without the payments skill
    await assigner.set_status("dee", "available")  # payments skill, Chinese only
    english = await conversation(store, rules, clock, language="en")
    chinese = await conversation(store, rules, clock, language="zh")
    await assigner.assign_waiting()
    assert [await holder(store, english), await holder(store, chinese)] == [None, "dee"]


async def test_away_and_offline_agents_get_nothing(store, rules, clock, assigner):
    await assigner.set_status("ann", "away")
    await assigner.set_status("bo", "offline")
    conv = await conversation(store, rules, clock)
    assert await assigner.assign_waiting() == []
    assert await holder(store, conv) is None


async def test_a_critical_conversation_never_waits_behind_a_higher_priority_lower_one(
    store, rules, clock, assigner
):
    vip = await place(
        store,
        rules.config,
        clock,
        classified("transaction_failed", "normal"),
        customer={"vip": True},
    )
    clock.advance(5)
    critical = await conversation(store, rules, clock, urgency="critical")
    assert (
        vip["priority"] > critical["priority"]
    )  # 50 against 20: priority alone would pick the VIP
    listing = await store.queue_conversations("payments")
    assert listing[0]["id"] == critical["id"]
    await assigner.set_status("ann", "available")  # one chat of room
    await assigner.assign_waiting()
    assert await holder(store, critical) == "ann"
    assert await holder(store, vip) is None


async def test_an_agents_own_list_shows_critical_first(store, rules, clock, assigner):
    await assigner.set_status("ann", "available")
    emails = [
        await conversation(store, rules, clock, channel="email", urgency=u)
        for u in ("normal", "critical", "high")
    ]
    await assigner.assign_waiting()
    held = await store.agent_conversations("ann")
    assert [c["id"] for c in held] == [emails[1]["id"], emails[2]["id"], emails[0]["id"]]


async def test_a_returning_customer_goes_back_to_their_last_agent_within_the_window(
    store, rules, clock, assigner
):
    await assigner.set_status("bo", "available")
    clock.advance(10)
    await assigner.set_status("ann", "available")
    first = await conversation(store, rules, clock, key="chat:alice", channel="email")
    await assigner.assign_waiting()
    assert await holder(store, first) == "bo"
    assert await store.claim(first["id"], "bo")  # bo accepted: bo is alice's agent now
    await store.resolve(first["id"])
    clock.advance(3600)
    again = await conversation(store, rules, clock, key="chat:alice", channel="email")
    await assigner.assign_waiting()
    assert await holder(store, again) == "bo"  # returning, though ann is idle longer
    await store.resolve(again["id"])
    await assigner.set_status("bo", "away")
    await assigner.set_status(
        "bo", "available"
    )  # bo idle from now: bo would win only as alice's agent
    clock.advance(86_401)  # past return_to_last_agent_seconds
    late = await conversation(store, rules, clock, key="chat:alice", channel="email")
    await assigner.assign_waiting()
    assert await holder(store, late) == "ann"


async def test_an_offer_not_accepted_in_time_goes_to_the_next_agent_and_she_stays_available(
    store, rules, clock, assigner, events
):
    await assigner.set_status("ann", "available")
    clock.advance(10)
    await assigner.set_status("bo", "available")
    conv = await conversation(store, rules, clock)
    await assigner.assign_waiting()
    assert await holder(store, conv) == "ann"
    clock.advance(119)  # accept_timeout_seconds is 120
    assert await assigner.reassign_timed_out() == []
    clock.advance(2)
    assert await assigner.reassign_timed_out() == [conv["id"]]
    assert (await assigner.agent_view("ann"))["status"] == "available"  # one lapse: no verdict
    await assigner.assign_waiting()
    assert await holder(store, conv) == "bo"
    assert events.seen == [
        ("conversation.assigned", "ann"),
        ("conversation.released", None),
        ("offer.lapsed", "ann"),
        ("conversation.assigned", "bo"),
    ]


async def test_a_lapsed_offer_nobody_else_can_take_goes_back_to_the_same_agent_with_an_alert(
    store, rules, clock, assigner, events
):
    await assigner.set_status("dee", "available")  # the only one for a Chinese payments chat
    conv = await conversation(store, rules, clock, language="zh")
    await assigner.assign_waiting()
    clock.advance(121)
    assert await assigner.reassign_timed_out() == [conv["id"]]
    [again] = await assigner.assign_waiting()
    assert (again.username, again.reason) == ("dee", "reoffered")
    assert events.seen[-2:] == [("conversation.assigned", "dee"), ("offer.reoffered", "dee")]


async def test_three_lapsed_offers_in_a_row_set_the_agent_away_and_say_so(
    store, rules, clock, assigner, events
):
    await assigner.set_status("dee", "available")
    conv = await conversation(store, rules, clock, language="zh")
    for lapse in range(1, 4):  # away_after_lapses is 3 by default
        await assigner.assign_waiting()
        assert await holder(store, conv) == "dee"
        clock.advance(121)
        await assigner.reassign_timed_out()
        status = (await assigner.agent_view("dee"))["status"]
        assert status == ("away" if lapse == 3 else "available"), lapse
    assert events.seen[-1] == ("agent.away", "dee")
    assert await assigner.assign_waiting() == []  # nobody left: it waits, and supervisors know


async def test_an_accepted_offer_breaks_the_run_of_lapses(store, rules, clock, assigner):
    await assigner.set_status("dee", "available")
    first = await conversation(store, rules, clock, language="zh", channel="email")
    await assigner.assign_waiting()
    clock.advance(121)
    await assigner.reassign_timed_out()
    await assigner.assign_waiting()
    assert await store.claim(first["id"], "dee")  # the re-offer is accepted
    for _ in range(2):
        conv = await conversation(store, rules, clock, language="zh", channel="email")
        await assigner.assign_waiting()
        clock.advance(121)
        assert await assigner.reassign_timed_out() == [conv["id"]]
        await store.resolve(conv["id"])  # so it is not offered to her again
    assert (await assigner.agent_view("dee"))["status"] == "available"  # 1, then 2 in a row


async def test_an_accepted_conversation_left_unanswered_goes_to_another_agent(
    store, rules, clock, assigner
):
    await assigner.set_status("ann", "available")
    conv = await conversation(store, rules, clock)
    await assigner.assign_waiting()
    assert await store.claim(conv["id"], "ann")
    clock.advance(10)
    await assigner.set_status("bo", "available")  # ann has been idle longer than bo
    clock.advance(901)  # answer_timeout_seconds is 900
    assert await assigner.reassign_timed_out() == [conv["id"]]
    assert (await assigner.agent_view("ann"))[
        "status"
    ] == "available"  # she is working, not missing
    await assigner.assign_waiting()
    assert await holder(store, conv) == "bo"  # never straight back to the agent who let it lapse


async def test_an_answered_conversation_stays_with_its_agent(store, rules, clock, assigner):
    await assigner.set_status("ann", "available")
    conv = await conversation(store, rules, clock)
    await assigner.assign_waiting()
    await store.claim(conv["id"], "ann")
    await store.add_outbound(
        Outbound(
            conversation_id=conv["id"],
            conversation_key=conv["conversation_key"],
            channel="chat",
            to="x",
            text="on it",
            kind="agent_reply",
        )
    )
    clock.advance(10_000)
    assert await assigner.reassign_timed_out() == []
    assert await holder(store, conv) == "ann"


# --- through the API ---------------------------------------------------------------------------


async def test_an_agent_sets_their_status_and_gets_a_conversation_shown_in_the_listing(
    running_router,
):
    r = running_router
    await r.router.store.set_password("sam", "sam-password-1")
    sam = await r.login("sam", "sam-password-1")
    admin = await r.login()
    async with r.http.post(
        r.url("/api/agents/me/status"), headers=sam, json={"status": "asleep"}
    ) as resp:
        assert resp.status == 400 and "available" in (await resp.json())["error"]
    async with r.http.post(r.url("/api/agents/me/status"), headers=sam, data=b"{") as resp:
        assert resp.status == 400
    async with r.http.post(
        r.url("/api/agents/me/status"), headers=sam, json={"status": "available"}
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "available"

    token = await r.chat_session()
    async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
        await receive_until(ws, "history")
        await ws.send_json(
            {"type": "message", "text": "I forgot my password and cannot log in", "id": "p"}
        )
        await receive_until(ws, "accepted")
    [listed] = await wait_for_queue(
        r, admin, "accounts", lambda c: len(c) == 1 and c[0]["assignee"] == "sam"
    )
    assert listed["status"] == "assigned" and listed["assigned_at"] and listed["sla_due_at"]
    async with r.http.get(r.url("/api/agents/me"), headers=sam) as resp:
        me = await resp.json()
    assert [c["id"] for c in me["conversations"]] == [listed["id"]]
    assert me["load"]["chat"] == {"open": 1, "capacity": 4}
    async with r.http.get(r.url("/api/agents"), headers=admin) as resp:
        assert {a["username"]: a["status"] for a in (await resp.json())["agents"]}[
            "sam"
        ] == "available"
    async with r.http.get(r.url("/api/agents"), headers=sam) as resp:
        assert resp.status == 403


async def test_an_agent_going_available_is_offered_what_waits(running_router):
    r = running_router
    await r.router.store.set_password("sam", "sam-password-1")
    sam = await r.login("sam", "sam-password-1")
    admin = await r.login()
    token = await r.chat_session()
    async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
        await receive_until(ws, "history")
        await ws.send_json({"type": "message", "text": "I forgot my password", "id": "p"})
        await receive_until(ws, "accepted")
    await wait_for_queue(r, admin, "accounts", lambda c: len(c) == 1)
    async with r.http.post(
        r.url("/api/agents/me/status"), headers=sam, json={"status": "available"}
    ) as resp:
        assert resp.status == 200
    [listed] = await wait_for_queue(
        r, admin, "accounts", lambda c: c[0]["assignee"] == "sam", timeout=5
    )
    assert listed["status"] == "assigned"
