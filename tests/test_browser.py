"""The chat widget and the agents' console in headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from router.core.envelope import now
from router.store.credentials import token_hash
from router.store.schema import chat_sessions
from tests.conftest import ADMIN_PASSWORD, missing_service
from tests.test_journey import wait_for_queue

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser():
    if not shutil.which("chromium"):
        missing_service("Debian's chromium (/usr/bin/chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_customer_chats_in_the_widget_and_sees_the_agent_reply_and_the_history_after_reload(
    running_router, browser
):
    r = running_router
    page = await browser.new_page()
    await page.goto(r.url("/chat/"))
    await page.wait_for_selector("#sr-chat-status:has-text('connected')")
    await page.fill(
        "#sr-chat-input", "有人用我的钱包付了一笔我不认识的款，验证码 654321 也发给了他"
    )
    await page.press("#sr-chat-input", "Enter")

    ack = page.locator("#sr-chat-messages .sr-msg.sr-out").first
    await ack.wait_for()
    assert "未授权交易" in await ack.text_content()
    sent = page.locator("#sr-chat-messages .sr-msg.sr-in").first
    assert (
        "654321" not in await sent.text_content()
    )  # the stored, masked text replaces what was typed

    admin = await r.login()
    [conversation] = await wait_for_queue(r, admin, "fraud", lambda c: len(c) == 1)
    async with r.http.post(
        r.url(f"/api/conversations/{conversation['id']}/messages"),
        headers=admin,
        json={"text": "<b>已为您冻结账户</b>"},
    ) as resp:
        assert resp.status == 201
    reply = page.locator("#sr-chat-messages .sr-msg.sr-out", has_text="已为您冻结账户")
    await reply.wait_for()
    assert await reply.locator("b").count() == 0  # shown as text, never as markup

    await page.reload()
    await page.wait_for_selector("#sr-chat-status:has-text('connected')")
    await page.locator("#sr-chat-messages .sr-msg", has_text="已为您冻结账户").wait_for()
    assert await page.locator("#sr-chat-messages .sr-msg").count() == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_agent_logs_into_the_console_sees_the_fraud_report_first_and_replies(
    running_router, browser
):
    r = running_router
    token = await r.chat_session()
    async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
        await ws.receive_json()
        await ws.send_json({"type": "message", "text": "what is the fee for a top-up", "id": "1"})
        await ws.receive_json()
        await ws.send_json(
            {
                "type": "message",
                "text": "and someone made a payment from my wallet I did not make",
                "id": "2",
            }
        )
        await ws.receive_json()
        admin = await r.login()
        [conversation] = await wait_for_queue(r, admin, "fraud", lambda c: len(c) == 1)

        from tests.conftest import ADMIN_PASSWORD

        page = await browser.new_page()
        await page.goto(r.url("/console/"))
        await page.fill("#login-username", "admin")
        await page.fill("#login-password", ADMIN_PASSWORD)
        await page.click("#login-submit")
        await page.select_option("#agent-status", "available")
        for _ in range(100):
            async with r.http.get(r.url("/api/agents/me"), headers=admin) as resp:
                if (await resp.json())["status"] == "available":
                    break
            await page.wait_for_timeout(50)
        assert (await (await r.http.get(r.url("/api/agents/me"), headers=admin)).json())[
            "status"
        ] == "available"
        await page.click("[data-queue='fraud']")
        item = page.locator(f"[data-id='{conversation['id']}']")
        await item.wait_for()
        await item.click()
        await page.click("#conv-claim")
        await page.fill("#reply-text", "We froze your account.")
        await page.click("#reply-send")
        while True:
            frame = await ws.receive_json(timeout=15)
            if frame["type"] == "message" and frame["kind"] == "agent_reply":
                break
    assert frame["text"] == "We froze your account."


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_widget_renews_its_session_and_never_puts_a_token_in_a_socket_url(
    running_router, browser
):
    r = running_router
    page = await browser.new_page()
    stored = "() => localStorage.getItem('supportrouter.chat.session')"
    with capture_logs() as logs:
        await page.goto(r.url("/chat/"))
        await page.wait_for_selector("#sr-chat-status:has-text('connected')")
        first = await page.evaluate(stored)
        await page.reload()
        await page.wait_for_selector("#sr-chat-status:has-text('connected')")
        renewed = await page.evaluate(stored)
        # Expired while the page was away: the widget starts a new session by itself.
        async with r.router.store.engine.begin() as conn:
            await conn.execute(
                chat_sessions.update()
                .where(chat_sessions.c.token_hash == token_hash(renewed))
                .values(expires_at=now() - timedelta(seconds=1))
            )
        await page.reload()
        await page.wait_for_selector("#sr-chat-status:has-text('connected')")
        replaced = await page.evaluate(stored)
        await page.close()
        for _ in range(200):  # a socket's line is written once the server is done with it
            urls = [e["url"] for e in logs if e["event"] == "http.request"]
            if len([u for u in urls if u.startswith("/chat/ws")]) == 3:
                break
            await asyncio.sleep(0.05)
    assert len({first, renewed, replaced}) == 3
    assert len([u for u in urls if u.startswith("/chat/ws?ticket=")]) == 3, urls
    assert not [u for u in urls if any(t in u for t in (first, renewed, replaced))]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_console_opens_its_events_socket_with_a_ticket_and_signs_out_on_logout(
    running_router, browser
):
    r = running_router
    page = await browser.new_page()
    with capture_logs() as logs:
        await page.goto(r.url("/console/"))
        await page.fill("#login-username", "admin")
        await page.fill("#login-password", ADMIN_PASSWORD)
        await page.click("#login-submit")
        await page.wait_for_selector("#live.live")
        await page.click("#logout")
        await page.wait_for_selector("#login-view:not([hidden])")
        for _ in range(200):  # the logout request is not awaited by the page
            if any(e.get("url") == "/api/logout" for e in logs):
                break
            await asyncio.sleep(0.05)
    urls = [e["url"] for e in logs if e["event"] == "http.request"]
    assert "/api/events/ticket" in urls
    assert [u for u in urls if u.startswith("/api/events?")][0].startswith("/api/events?ticket=")
    assert "/api/logout" in urls
