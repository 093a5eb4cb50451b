"""Live chat refuses bad input with a clear reason and keeps the socket; nothing is lost."""

from __future__ import annotations

import pytest

from tests.chat_helpers import chat_socket, receive_until, send_message, wait_for_queue


async def test_a_socket_without_a_valid_ticket_is_refused_with_401(running_router):
    r = running_router
    token = await r.chat_session()
    # The session token itself opens no socket: it must not travel in a URL.
    for query in ("", "?ticket=", "?ticket=forged-ticket", f"?session={token}", f"?ticket={token}"):
        async with r.http.get(r.url(f"/chat/ws{query}")) as resp:
            assert resp.status == 401
            assert "ticket" in (await resp.json())["error"]


async def test_unknown_or_missing_session_gets_no_ticket(running_router):
    r = running_router
    for headers in ({}, {"Authorization": "Bearer forged-token"}, {"Authorization": "forged"}):
        async with r.http.post(r.url("/chat/sessions/ticket"), headers=headers) as resp:
            assert resp.status == 401
            assert "session" in (await resp.json())["error"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'"just a string"', 400),
        (b'{"name": 42}', 400),
        (b'{"name": "' + b"x" * 200 + b'"}', 400),
    ],
)
async def test_bad_session_requests_get_400(running_router, body, status):
    r = running_router
    async with r.http.post(r.url("/chat/sessions"), data=body) as resp:
        assert resp.status == status
        assert "error" in await resp.json()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json at all", "not JSON"),
        ('["message"]', "expected"),
        ('{"type": "typing"}', "expected"),
        ('{"type": "message", "text": ""}', "non-empty"),
        ('{"type": "message", "text": 42}', "non-empty"),
        ('{"type": "message", "text": "' + "长" * 4001 + '"}', "longer than 4000"),
        ('{"type": "message", "text": "hi", "id": 7}', "id must be"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_usable(
    running_router, frame, reason
):
    r = running_router
    async with chat_socket(r) as ws:
        await ws.send_str(frame)
        error = await receive_until(ws, "error")
        assert reason in error["error"]
        assert (await send_message(ws, "what is the withdrawal fee", "ok"))["client_id"] == "ok"


async def test_resending_the_same_client_id_makes_one_message(running_router):
    r = running_router
    admin = await r.login()
    async with chat_socket(r) as ws:
        for _ in range(3):
            await send_message(ws, "my transfer failed", "same")
        await send_message(ws, "and it is still pending", "next")
    [conversation] = await wait_for_queue(r, admin, "payments", lambda c: len(c) == 1)
    for _ in range(300):
        detail = await r.router.store.conversation(conversation["id"])
        inbound = [m for m in detail["messages"] if m["direction"] == "in"]
        if len(inbound) >= 2:
            break
        await __import__("asyncio").sleep(0.05)
    assert [m["text"] for m in inbound] == ["my transfer failed", "and it is still pending"]


async def test_a_customer_sees_only_their_own_conversation(running_router):
    r = running_router
    alice, bob = await r.chat_session(), await r.chat_session()
    async with (
        r.http.ws_connect(await r.chat_ws_url(alice)) as ws_a,
        r.http.ws_connect(await r.chat_ws_url(bob)) as ws_b,
    ):
        await receive_until(ws_a, "history")
        await receive_until(ws_b, "history")
        await ws_a.send_json({"type": "message", "text": "alice: my transfer failed", "id": "a"})
        await receive_until(ws_a, "accepted")
        await receive_until(ws_a, "message")  # alice's acknowledgement
        await ws_b.send_json({"type": "message", "text": "bob: what is the fee", "id": "b"})
        await receive_until(ws_b, "accepted")
        bob_ack = await receive_until(ws_b, "message")
        assert "alice" not in bob_ack["text"]
    async with r.http.ws_connect(await r.chat_ws_url(bob)) as ws_b:
        history = (await receive_until(ws_b, "history"))["messages"]
    assert history and all("alice" not in m["text"] for m in history)
