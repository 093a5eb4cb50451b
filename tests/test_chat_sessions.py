"""A chat session token expires unless the widget renews it, never travels in a URL (the socket
opens with a one-time ticket), and its socket is closed (4401) once the session has expired."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
from aiohttp import WSMsgType
from structlog.testing import capture_logs

from router.core.envelope import now
from router.store.credentials import token_hash
from router.store.schema import chat_sessions
from tests.chat_helpers import receive_until, send_message
from tests.conftest import RunningRouter, new_router, router_settings


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _expire(r, token: str) -> None:
    async with r.router.store.engine.begin() as conn:
        await conn.execute(
            chat_sessions.update()
            .where(chat_sessions.c.token_hash == token_hash(token))
            .values(expires_at=now() - timedelta(seconds=1))
        )


async def _ticket_status(r, token: str) -> int:
    async with r.http.post(r.url("/chat/sessions/ticket"), headers=_bearer(token)) as resp:
        return resp.status


async def _renew(r, token: str) -> tuple[int, dict]:
    async with r.http.post(r.url("/chat/sessions/renew"), headers=_bearer(token)) as resp:
        return resp.status, await resp.json()


async def test_an_expired_chat_session_is_refused_and_cannot_be_renewed(running_router):
    r = running_router
    token = await r.chat_session()
    assert await _ticket_status(r, token) == 201
    await _expire(r, token)
    assert await _ticket_status(r, token) == 401
    assert (await _renew(r, token))[0] == 401


async def test_a_renewed_chat_token_works_for_the_same_conversation_and_the_old_one_does_not(
    running_router,
):
    r = running_router
    token = await r.chat_session()
    session = await r.router.store.chat_session(token)
    assert session is not None
    status, body = await _renew(r, token)
    assert status == 200 and body["expires_in"] > 0
    fresh = body["session"]
    assert fresh != token
    assert await _ticket_status(r, token) == 401
    renewed = await r.router.store.chat_session(fresh)
    assert renewed is not None
    assert renewed["conversation_key"] == session["conversation_key"]
    assert renewed["expires_at"] >= session["expires_at"]
    async with r.http.ws_connect(await r.chat_ws_url(fresh)) as ws:
        await receive_until(ws, "history")
        await send_message(ws, "my transfer failed", "1")


async def test_a_chat_ticket_opens_one_socket_only(running_router):
    r = running_router
    url = await r.chat_ws_url(await r.chat_session())
    async with r.http.ws_connect(url) as ws:
        await receive_until(ws, "history")
    async with r.http.get(url) as resp:
        assert resp.status == 401


async def test_a_chat_socket_is_closed_once_its_session_has_expired(
    database_url, broker_kind, request
):
    settings = router_settings(database_url, broker_kind, request, socket_auth_check_seconds=0.2)
    async with new_router(settings) as router, aiohttp.ClientSession() as http:
        r = RunningRouter(router, http)
        token = await r.chat_session()
        async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
            await receive_until(ws, "history")
            await _expire(r, token)
            msg = await ws.receive(timeout=15)
            assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED), msg
            assert ws.close_code == 4401


async def test_socket_urls_in_the_access_log_carry_no_long_lived_token(running_router):
    r = running_router
    with capture_logs() as logs:
        session = await r.chat_session()
        async with r.http.ws_connect(await r.chat_ws_url(session)) as ws:
            await receive_until(ws, "history")
        admin = await r.login()
        async with r.http.post(r.url("/api/events/ticket"), headers=admin) as resp:
            ticket = (await resp.json())["ticket"]
        async with r.http.ws_connect(r.url(f"/api/events?ticket={ticket}")):
            pass
        await r.http.post(r.url("/api/logout"), headers=admin)
        # A socket's line is written when the server has finished with it, a moment after.
        for _ in range(200):
            urls = [e["url"] for e in logs if e["event"] == "http.request"]
            sockets = [u for u in urls if u.startswith(("/chat/ws", "/api/events?"))]
            if len(sockets) == 2:
                break
            await asyncio.sleep(0.05)
    agent_token = admin["Authorization"].removeprefix("Bearer ")
    assert len(sockets) == 2 and all("?ticket=" in u for u in sockets), urls
    assert not [e for e in logs if session in repr(e) or agent_token in repr(e)]
