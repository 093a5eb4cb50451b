"""A token stops working when its agent's password changes, at logout and at expiry, and an
events socket it opened is closed then (4401); a socket opens with a one-time ticket only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.conftest import RunningRouter, new_router, router_settings


@asynccontextmanager
async def router_with(database_url, broker_kind, request, **overrides) -> AsyncIterator:
    settings = router_settings(database_url, broker_kind, request, **overrides)
    async with new_router(settings) as router, aiohttp.ClientSession() as http:
        yield RunningRouter(router, http)


async def _me(r, headers) -> int:
    async with r.http.get(r.url("/api/agents/me"), headers=headers) as resp:
        return resp.status


async def _events_url(r, headers) -> str:
    async with r.http.post(r.url("/api/events/ticket"), headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        ticket = (await resp.json())["ticket"]
    return r.url(f"/api/events?ticket={ticket}")


async def _closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    msg = await ws.receive(timeout=15)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED), msg
    return ws.close_code


@pytest.fixture
async def agent_sam(running_router):
    await running_router.router.store.set_password("sam", "sam-password-1")
    return await running_router.login("sam", "sam-password-1")


async def test_a_password_change_revokes_the_agents_tokens(running_router, agent_sam):
    r = running_router
    assert await _me(r, agent_sam) == 200
    await r.router.store.set_password("sam", "sam-password-2")
    assert await _me(r, agent_sam) == 401
    assert await _me(r, await r.login("sam", "sam-password-2")) == 200


async def test_logout_revokes_the_token_and_only_that_token(running_router, agent_sam):
    r = running_router
    other = await r.login("sam", "sam-password-1")
    async with r.http.post(r.url("/api/logout"), headers=agent_sam) as resp:
        assert resp.status == 200
    assert await _me(r, agent_sam) == 401
    assert await _me(r, other) == 200
    async with r.http.post(r.url("/api/logout"), headers=agent_sam) as resp:
        assert resp.status == 401


async def test_an_events_ticket_opens_one_socket_only_and_a_token_in_the_url_opens_none(
    running_router, agent_sam
):
    r = running_router
    url = await _events_url(r, agent_sam)
    async with r.http.ws_connect(url):
        pass
    token = agent_sam["Authorization"].removeprefix("Bearer ")
    for refused in (url, r.url(f"/api/events?token={token}"), r.url("/api/events?ticket=x")):
        async with r.http.get(refused) as resp:
            assert resp.status == 401


async def test_logout_closes_the_events_socket_it_opened(running_router, agent_sam):
    r = running_router
    async with r.http.ws_connect(await _events_url(r, agent_sam)) as ws:
        async with r.http.post(r.url("/api/logout"), headers=agent_sam) as resp:
            assert resp.status == 200
        assert await _closed_with(ws) == 4401


async def test_a_password_change_closes_the_events_socket(database_url, broker_kind, request):
    async with router_with(database_url, broker_kind, request, socket_auth_check_seconds=0.2) as r:
        await r.router.store.set_password("sam", "sam-password-1")
        sam = await r.login("sam", "sam-password-1")
        async with r.http.ws_connect(await _events_url(r, sam)) as ws:
            await r.router.store.set_password("sam", "sam-password-2")
            assert await _closed_with(ws) == 4401


async def test_the_events_socket_closes_when_its_token_expires(database_url, broker_kind, request):
    # Checks only every hour: the close comes from the token's own expiry time.
    async with router_with(
        database_url,
        broker_kind,
        request,
        agent_token_ttl_seconds=2,
        socket_auth_check_seconds=3600,
    ) as r:
        admin = await r.login()
        async with r.http.ws_connect(await _events_url(r, admin)) as ws:
            assert await _closed_with(ws) == 4401
        assert await _me(r, admin) == 401


async def test_setting_the_same_password_again_keeps_the_tokens(running_router, agent_sam):
    # Every start sets the configured admin password again; that is no password change.
    r = running_router
    await r.router.store.set_password("sam", "sam-password-1")
    assert await _me(r, agent_sam) == 200
