"""The walking skeleton's journey: a customer on live chat, an agent on the API, both for real.

Runs against the real embedded broker and each database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio

from router.core.envelope import Urgency
from tests.chat_helpers import (
    chat_into_queue,
    chat_socket,
    receive_until,
    send_message,
    wait_for_queue,
)

FRAUD_ZH = "有人用我的钱包付了一笔我不认识的款"
FRAUD_EN = "someone made a payment from my wallet that I did not make"


async def test_chinese_fraud_report_heads_the_fraud_queue_and_the_agent_reply_reaches_the_customer(
    running_router,
):
    r = running_router
    admin = await r.login()
    token = await r.chat_session(name="王先生")
    async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
        assert (await receive_until(ws, "history"))["messages"] == []
        await ws.send_json({"type": "message", "text": FRAUD_ZH, "id": "m1"})
        accepted = await receive_until(ws, "accepted")
        ack = await receive_until(ws, "message")
        assert ack["kind"] == "acknowledgement"
        assert "未授权交易" in ack["text"]  # the zh template, in the customer's language

        conversations = await wait_for_queue(r, admin, "fraud", lambda c: len(c) == 1)
        head = conversations[0]
        assert head["category"] == "unauthorized_transaction"
        assert head["urgency"] == Urgency.CRITICAL
        assert head["channel"] == "chat" and head["status"] == "waiting"
        for field in ("id", "queue", "assignee", "waiting_seconds", "preview"):
            assert field in head

        async with r.http.post(
            r.url(f"/api/conversations/{head['id']}/claim"), headers=admin
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["assignee"] == "admin"
        async with r.http.post(
            r.url(f"/api/conversations/{head['id']}/messages"),
            headers=admin,
            json={"text": "我们已冻结您的账户，请稍候。"},
        ) as resp:
            assert resp.status == 201
            reply_id = (await resp.json())["id"]
        reply = await receive_until(ws, "message")
        assert reply["id"] == reply_id and reply["text"] == "我们已冻结您的账户，请稍候。"

    # Reconnecting with the same token restores the whole conversation, in order.
    async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
        history = (await receive_until(ws, "history"))["messages"]
    assert [m["id"] for m in history] == [accepted["id"], ack["id"], reply_id]
    assert [m["direction"] for m in history] == ["in", "out", "out"]


async def test_english_fraud_report_gets_the_english_acknowledgement_and_outranks_older_questions(
    running_router,
):
    r = running_router
    admin = await r.login()
    await chat_into_queue(r, admin, "my transfer failed, can you check it?", queue="payments")

    async with chat_socket(r) as ws:
        await ws.send_json({"type": "message", "text": FRAUD_EN, "id": "b"})
        ack = await receive_until(ws, "message")
    assert ack["text"].startswith("We have your report of a transaction you did not make")
    fraud = await wait_for_queue(r, admin, "fraud", lambda c: len(c) == 1)
    assert fraud[0]["urgency"] == "critical"


async def test_queue_lists_critical_before_older_lower_urgency_conversations(running_router):
    """Within one queue: urgency first, then age. A later critical message jumps the line."""
    r = running_router
    admin = await r.login()
    texts = [
        "my transfer failed",
        "my transfer failed and the money was deducted",
        "my transfer failed again",
    ]
    for i, text in enumerate(texts):
        await chat_into_queue(r, admin, text, queue="payments", count=i + 1)
    listing = await wait_for_queue(r, admin, "payments", lambda c: len(c) == 3)
    assert [c["urgency"] for c in listing] == ["high", "normal", "normal"]
    assert [c["preview"] for c in listing] == [texts[1], texts[0], texts[2]]


async def test_a_follow_up_in_the_same_chat_joins_the_open_conversation_and_can_only_raise_urgency(
    running_router,
):
    r = running_router
    admin = await r.login()
    async with chat_socket(r) as ws:
        await send_message(ws, "what is the fee for a top-up?", "1")
        await wait_for_queue(r, admin, "general", lambda c: len(c) == 1)
        await send_message(ws, FRAUD_EN, "2")
        fraud = await wait_for_queue(r, admin, "fraud", lambda c: len(c) == 1)
        await send_message(ws, "thanks", "3")
    conversation_id = fraud[0]["id"]

    async def messages_stored() -> dict:
        async with r.http.get(
            r.url(f"/api/conversations/{conversation_id}"), headers=admin
        ) as resp:
            return await resp.json()

    for _ in range(300):
        detail = await messages_stored()
        if sum(m["direction"] == "in" for m in detail["messages"]) == 3:
            break
        await asyncio.sleep(0.05)
    assert sum(m["direction"] == "in" for m in detail["messages"]) == 3
    assert detail["urgency"] == "critical" and detail["queue"] == "fraud"
    assert await wait_for_queue(r, admin, "general", lambda c: len(c) == 0) == []
