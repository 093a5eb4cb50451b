"""Critical work is never stuck: an offer that lapses goes on in the same timer round, to the
next eligible agent or, when nobody else can take it, back to the same one, with an alert.

Through the whole running router (its own dispatcher timers, the agents' API, support.events)
on a clock the test moves by hand; rounds are counted, never seconds."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from router.app import Router
from router.services.sla import ManualClock
from tests.chat_helpers import wait_for_queue
from tests.conftest import ADMIN_PASSWORD, RunningRouter, router_settings
from tests.kafka_helpers import read_topic
from tests.routing_helpers import classified, config_dir_with
from tests.test_browser import browser  # noqa: F401  (the fixture)

AGENTS = """\
version: 2
agents:
  - {username: admin, role: supervisor}
  - {username: li.na, queues: [fraud, payments], skills: [fraud, payments], languages: [zh, en]}
  - {username: wei, queues: [fraud], skills: [fraud], languages: [zh, en]}
"""
PASSWORD = "agent-password-1"


@pytest.fixture
async def desk(database_url, broker_kind, request, tmp_path):
    clock = ManualClock()
    settings = router_settings(
        database_url,
        broker_kind,
        request,
        config_dir=config_dir_with(tmp_path, **{"agents.yaml": AGENTS}),
    )
    async with Router(settings, clock=clock) as router, aiohttp.ClientSession() as http:
        running = RunningRouter(router, http)
        for name in ("li.na", "wei"):
            await router.store.set_password(name, PASSWORD)
        yield running, clock


async def available(r: RunningRouter, clock: ManualClock, username: str) -> dict[str, str]:
    headers = await r.login(username, PASSWORD)
    async with r.http.post(
        r.url("/api/agents/me/status"), headers=headers, json={"status": "available"}
    ) as resp:
        assert resp.status == 200
    clock.advance(1)  # the next agent has been idle for less time
    return headers


async def report_fraud(r: RunningRouter, key: str) -> None:
    env = classified("unauthorized_transaction", "critical", key=key)
    await r.router.bus.publish(r.router.bus.topics.classified, env.to_bytes(), key=env.kafka_key)


async def one_timer_round(router: Router) -> None:
    """Wait until a whole timer round that began after this call has run."""
    dispatcher = router.dispatcher
    assert dispatcher is not None
    target = dispatcher.rounds_started + 1
    while dispatcher.rounds_done < target:
        await asyncio.sleep(0.02)


async def test_a_lapsed_critical_offer_reaches_another_fraud_agent_within_one_timer_round(desk):
    r, clock = desk
    admin = await r.login()
    await available(r, clock, "li.na")  # idle longest: offered first
    await available(r, clock, "wei")
    await report_fraud(r, "chat:lapse-1")
    [offered] = await wait_for_queue(r, admin, "fraud", lambda c: c and c[0]["assignee"])
    assert offered["assignee"] == "li.na"

    clock.advance(121)  # accept_timeout_seconds is 120
    await one_timer_round(r.router)
    async with r.http.get(r.url(f"/api/conversations/{offered['id']}"), headers=admin) as resp:
        assert (await resp.json())["assignee"] == "wei"
    async with r.http.get(r.url("/api/agents"), headers=admin) as resp:
        statuses = {a["username"]: a["status"] for a in (await resp.json())["agents"]}
    assert statuses["li.na"] == "available"  # one lapse does not send her away
    events = await read_topic(
        r.router.bus,
        r.router.bus.topics.events,
        lambda rs: any(x["value"]["type"] == "offer.lapsed" for x in rs),
    )
    lapsed = next(x["value"] for x in events if x["value"]["type"] == "offer.lapsed")
    assert (lapsed["assignee"], lapsed["urgency"]) == ("li.na", "critical")


async def test_with_one_eligible_agent_a_lapsed_offer_is_offered_to_her_again_with_an_alert(desk):
    r, clock = desk
    admin = await r.login()
    await available(r, clock, "li.na")  # wei stays offline
    await report_fraud(r, "chat:lapse-2")
    [offered] = await wait_for_queue(r, admin, "fraud", lambda c: c and c[0]["assignee"])

    clock.advance(121)
    await one_timer_round(r.router)
    async with r.http.get(r.url(f"/api/conversations/{offered['id']}"), headers=admin) as resp:
        again = await resp.json()
    assert (again["assignee"], again["status"]) == ("li.na", "assigned")
    events = await read_topic(
        r.router.bus,
        r.router.bus.topics.events,
        lambda rs: any(x["value"]["type"] == "offer.reoffered" for x in rs),
    )
    alert = next(x["value"] for x in events if x["value"]["type"] == "offer.reoffered")
    assert (alert["conversation_id"], alert["assignee"]) == (offered["id"], "li.na")


@pytest.mark.browser
async def test_a_supervisors_console_shows_the_alert_when_a_lapsed_offer_goes_back(desk, browser):  # noqa: F811
    r, clock = desk
    admin = await r.login()
    page = await browser.new_page()
    await page.goto(r.url("/console/"))
    await page.fill("#login-username", "admin")
    await page.fill("#login-password", ADMIN_PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#live.live")
    await available(r, clock, "li.na")
    await report_fraud(r, "chat:lapse-3")
    await wait_for_queue(r, admin, "fraud", lambda c: c and c[0]["assignee"])
    clock.advance(121)
    await one_timer_round(r.router)
    alert = page.locator("#alerts li[data-alert='offer.reoffered']")
    await alert.wait_for(timeout=15000)
    text = await alert.inner_text()
    assert "li.na" in text and "CRITICAL" in text
