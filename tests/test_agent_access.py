"""Agents see only their queues; every refusal is a clear 4xx."""

from __future__ import annotations

import pytest

from tests.chat_helpers import chat_into_queue


@pytest.fixture
async def agent_sam(running_router):
    await running_router.router.store.set_password("sam", "sam-password-1")
    return await running_router.login("sam", "sam-password-1")


async def test_agent_cannot_list_or_open_a_queue_they_do_not_belong_to(running_router, agent_sam):
    r = running_router
    admin = await r.login()
    [conversation] = await chat_into_queue(
        r, admin, "someone stole money from my wallet", queue="fraud"
    )

    async with r.http.get(r.url("/api/queues"), headers=agent_sam) as resp:
        assert [q["name"] for q in (await resp.json())["queues"]] == [
            "accounts",
            "general",
            "triage",
        ]
    async with r.http.get(r.url("/api/queues/fraud/conversations"), headers=agent_sam) as resp:
        assert resp.status == 403
    async with r.http.get(
        r.url(f"/api/conversations/{conversation['id']}"), headers=agent_sam
    ) as resp:
        assert resp.status == 404
    async with r.http.post(
        r.url(f"/api/conversations/{conversation['id']}/claim"), headers=agent_sam
    ) as resp:
        assert resp.status == 404
    async with r.http.get(r.url("/api/outbox"), headers=agent_sam) as resp:
        assert resp.status == 403


async def test_a_conversation_claimed_by_one_agent_cannot_be_taken_by_another(running_router):
    r = running_router
    store = r.router.store
    await store.set_password("li.na", "li-na-password")
    admin = await r.login()
    li_na = await r.login("li.na", "li-na-password")
    [conversation] = await chat_into_queue(
        r, admin, "someone stole money from my wallet", queue="fraud"
    )
    async with r.http.post(
        r.url(f"/api/conversations/{conversation['id']}/claim"), headers=li_na
    ) as resp:
        assert resp.status == 200
    async with r.http.post(
        r.url(f"/api/conversations/{conversation['id']}/claim"), headers=admin
    ) as resp:
        assert resp.status == 409
    async with r.http.post(
        r.url(f"/api/conversations/{conversation['id']}/messages"),
        headers=admin,
        json={"text": "hello"},
    ) as resp:
        assert resp.status == 409


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/login", b"not json", 400),
        ("/api/login", b"[1, 2]", 400),
        ("/api/login", b'{"username": "admin", "password": "wrong"}', 401),
        ("/api/login", b'{"username": 5, "password": null}', 400),
        ("/api/login", b"x" * (70 * 1024), 413),
    ],
)
async def test_bad_login_requests_get_a_clear_4xx(running_router, path, body, status):
    r = running_router
    async with r.http.post(
        r.url(path), data=body, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == status
        assert "error" in await resp.json()


async def test_api_without_a_token_is_401_and_unknown_routes_are_json_404(running_router):
    r = running_router
    async with r.http.get(r.url("/api/queues")) as resp:
        assert resp.status == 401 and "error" in await resp.json()
    async with r.http.get(r.url("/api/queues"), headers={"Authorization": "Bearer forged"}) as resp:
        assert resp.status == 401
    async with r.http.get(r.url("/api/nothing-here")) as resp:
        assert resp.status == 404 and "error" in await resp.json()
    admin = await r.login()
    async with r.http.get(r.url("/api/conversations/does-not-exist"), headers=admin) as resp:
        assert resp.status == 404
    async with r.http.post(
        r.url("/api/conversations/x/messages"), headers=admin, data=b"\xff\xfe"
    ) as resp:
        assert resp.status == 404
