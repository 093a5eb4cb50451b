"""The desk API over real HTTP: notes, tags, canned replies, search and the customer panel,
each limited to the asker's queues; bad input gets a clear 4xx."""

from __future__ import annotations

import pytest

from router.store.desk import phone_of
from tests.chat_helpers import wait_for_queue
from tests.routing_helpers import classified

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def fraud_conversation(r, key="+8613800138001", text="TX99 was not me"):
    env = classified("unauthorized_transaction", "critical", key=key, text=text)
    await r.router.bus.publish(r.router.bus.topics.classified, env.to_bytes(), key=env.kafka_key)
    admin = await r.login()
    [conv] = await wait_for_queue(r, admin, "fraud", lambda c: len(c) == 1)
    return admin, conv


@SQLITE
async def test_bad_desk_input_gets_a_clear_4xx(running_router):
    r = running_router
    admin, conv = await fraud_conversation(r)
    base = r.url(f"/api/conversations/{conv['id']}")
    cases = [
        ("POST", f"{base}/notes", {"text": "  "}, 400),
        ("POST", f"{base}/notes", {"text": "x" * 4001}, 400),
        ("POST", f"{base}/tags", {"tag": "<script>"}, 400),
        ("POST", f"{base}/tags", {"tag": 7}, 400),
        ("DELETE", f"{base}/tags/never-added", None, 404),
        ("GET", r.url("/api/search?q=ab"), None, 400),
        ("GET", r.url("/api/search?q=" + "x" * 201), None, 400),
        ("GET", r.url("/api/conversations/nope/desk"), None, 404),
    ]
    for method, url, body, status in cases:
        async with r.http.request(method, url, headers=admin, json=body) as resp:
            assert resp.status == status, (method, url, body, await resp.text())
            assert "error" in await resp.json()
    async with r.http.post(f"{base}/notes", json={"text": "x"}) as resp:
        assert resp.status == 401


@SQLITE
async def test_an_agent_cannot_see_or_note_a_conversation_outside_her_queues(running_router):
    r = running_router
    _, conv = await fraud_conversation(r)
    await r.router.store.set_password("sam", "sam-password-1")
    sam = await r.login("sam", "sam-password-1")  # accounts, general, triage: not fraud
    async with r.http.post(
        r.url(f"/api/conversations/{conv['id']}/notes"), headers=sam, json={"text": "hi"}
    ) as resp:
        assert resp.status == 404
    async with r.http.get(r.url("/api/search?q=TX99"), headers=sam) as resp:
        assert (await resp.json())["results"] == []


@SQLITE
async def test_tags_are_kept_once_and_removed_and_canned_replies_come_from_the_templates(
    running_router,
):
    r = running_router
    admin, conv = await fraud_conversation(r)
    url = r.url(f"/api/conversations/{conv['id']}/tags")
    statuses = []
    for tag in ("SIM swap", "sim swap"):
        async with r.http.post(url, headers=admin, json={"tag": tag}) as resp:
            statuses.append(resp.status)
            tags = (await resp.json())["tags"]
    assert statuses == [201, 200] and tags == ["sim swap"]
    async with r.http.delete(f"{url}/sim swap", headers=admin) as resp:
        assert (await resp.json())["tags"] == []
    async with r.http.get(r.url("/api/canned?ticket=T123"), headers=admin) as resp:
        canned = {c["name"]: c for c in (await resp.json())["canned"]}
    assert "T123" in canned["ask_transaction"]["en"] and "交易号" in canned["ask_transaction"]["zh"]


def test_a_phone_is_read_the_same_from_every_channels_address():
    assert phone_of("whatsapp:+86 138-0013-8000") == phone_of("+8613800138000") == "+8613800138000"
    assert phone_of("alice@example.com") is None
