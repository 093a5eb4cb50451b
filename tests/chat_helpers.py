"""What the live-chat tests share: a customer's chat socket on the running router, and waiting for
what they sent to show up in an agent queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 15
) -> dict:
    while True:
        frame = await asyncio.wait_for(ws.receive_json(), timeout)
        if frame["type"] == kind:
            return frame


async def wait_for_queue(
    running, headers, queue: str, predicate, timeout: float = 15
) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with running.http.get(
            running.url(f"/api/queues/{queue}/conversations"), headers=headers
        ) as r:
            assert r.status == 200
            conversations = (await r.json())["conversations"]
        if predicate(conversations):
            return conversations
        assert asyncio.get_running_loop().time() < deadline, (
            f"queue {queue} never matched: {conversations}"
        )
        await asyncio.sleep(0.05)


async def chat_ws_url(http: aiohttp.ClientSession, base_url: str, token: str) -> str:
    """The chat socket's URL for the session `token`: with a one-time ticket, never the token."""
    async with http.post(
        f"{base_url}/chat/sessions/ticket", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 201, await r.text()
        ticket = (await r.json())["ticket"]
    return f"{base_url}/chat/ws?ticket={ticket}"


@asynccontextmanager
async def chat_socket(running) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A new customer's chat socket, past the history frame every connection opens with."""
    token = await running.chat_session()
    async with running.http.ws_connect(await running.chat_ws_url(token)) as ws:
        await receive_until(ws, "history")
        yield ws


async def send_message(ws: aiohttp.ClientWebSocketResponse, text: str, client_id: str) -> dict:
    """Send one chat message; returns the gateway's `accepted` frame for it."""
    await ws.send_json({"type": "message", "text": text, "id": client_id})
    return await receive_until(ws, "accepted")


async def chat_into_queue(running, headers, text: str, *, queue: str, count: int = 1) -> list[dict]:
    """A new customer sends `text` on live chat and leaves; returns `queue` once it lists `count`
    conversations."""
    async with chat_socket(running) as ws:
        await send_message(ws, text, "1")
    return await wait_for_queue(running, headers, queue, lambda c: len(c) == count)
