"""Screenshots of the agents' desk for docs/console.md, taken from the real thing.

    PYTHONPATH=. python scripts/screenshots.py [OUT_DIR]   (default docs/img)

Starts the whole router (embedded Tansu, a fresh SQLite file, the shipped config/), puts a few
conversations on support.classified, and drives Debian's Chromium (/usr/bin/chromium) through
Playwright at 1440x900: an agent's critical offer, a conversation with notes, tags and the
customer's history, a search, and a supervisor's view of every queue.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Page, async_playwright

from router.app import Router
from router.core.envelope import (
    Attachment,
    Channel,
    Classification,
    Envelope,
    Sender,
    Urgency,
)
from router.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "screenshots-admin-1"
AGENT_PASSWORD = "screenshots-agent-1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PHONE = "+8613800138000"


def message(
    channel: str,
    address: str,
    text: str,
    category: str,
    urgency: str,
    language: str,
    name: str | None = None,
    **extra,
) -> Envelope:
    envelope = Envelope.new(
        channel=Channel(channel),
        channel_message_id=f"shot-{address}-{category}",
        conversation_key=f"{channel}:{address}",
        sender=Sender(address=address, name=name),
        text=text,
    )
    return envelope.model_copy(
        update={
            "classification": Classification(
                category=category, urgency=Urgency(urgency), confidence=0.93, language=language
            ),
            **extra,
        }
    )


MESSAGES = [
    message(
        "sms",
        PHONE,
        "有人用我的钱包付了 3,200 元给陌生账户，交易号 TX20251201A7，不是我本人操作",
        "unauthorized_transaction",
        "critical",
        "zh",
        name="王芳",
        attachments=[Attachment(name="账单截图.png", content_type="image/png", size=184_320)],
    ),
    message(
        "whatsapp",
        f"whatsapp:{PHONE}",
        "上周给房东的一笔转账也失败了，钱却扣了",
        "transaction_failed",
        "normal",
        "zh",
        name="王芳",
    ),
    message(
        "chat",
        "chat:amy",
        "My transfer to my landlord failed twice but the money left my card",
        "transaction_failed",
        "high",
        "en",
        name="Amy Chen",
    ),
    message(
        "email",
        "tom@example.com",
        "What is the fee for topping up from a foreign card?",
        "general",
        "low",
        "en",
        name="Tom Baker",
    ),
]


async def login(page: Page, base: str, username: str, password: str) -> None:
    await page.goto(base + "/console/")
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await page.wait_for_selector("#app-view:not([hidden])")


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp}/store.db",
            http_host="127.0.0.1",
            http_port=0,
            config_dir=ROOT / "config",
            admin_password=ADMIN_PASSWORD,
        )
        async with Router(settings) as router, async_playwright() as p:
            assert router.gateway is not None and router.bus is not None
            base = f"http://127.0.0.1:{router.gateway.port}"
            await router.store.set_password("li.na", AGENT_PASSWORD)
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            context = await browser.new_context(
                viewport={"width": 1440, "height": 900}, locale="zh-CN"
            )
            await context.grant_permissions(["notifications"], origin=base)
            agent = await context.new_page()
            await login(agent, base, "li.na", AGENT_PASSWORD)
            await agent.select_option("#agent-status", "available")
            await agent.wait_for_timeout(500)
            for envelope in MESSAGES:
                await router.bus.publish(
                    router.bus.topics.classified, envelope.to_bytes(), key=envelope.kafka_key
                )
            await agent.locator("#offer-list li.offer.critical").wait_for(timeout=30_000)
            await agent.click("[data-queue='fraud']")
            await agent.locator("#conversation-list li").first.wait_for()
            await agent.screenshot(path=out / "console-offer.png")

            await agent.locator("#offer-list button.claim").first.click()
            await agent.locator("#conv-body:not([hidden])").wait_for()
            await agent.fill("#tag-text", "sim swap")
            await agent.click("#tag-add")
            await agent.fill(
                "#note-text", "客户称手机昨晚丢失；已建议冻结。Bank asked for the TX id."
            )
            await agent.click("#note-add")
            await agent.locator("#note-list li").wait_for()
            await agent.locator("#customer-history li").nth(1).wait_for()
            await agent.select_option("#canned", "account_frozen")
            await agent.evaluate("document.querySelector('#conversation').scrollTop = 0")
            await agent.screenshot(path=out / "console-conversation.png")
            await agent.locator("#desk").scroll_into_view_if_needed()
            await agent.screenshot(path=out / "console-desk.png")

            await agent.fill("#search-q", "TX20251201A7")
            await agent.click("#search-go")
            await agent.locator("#search-list li").first.wait_for()
            await agent.screenshot(path=out / "console-search.png")

            supervisor = await context.new_page()
            await login(supervisor, base, "admin", ADMIN_PASSWORD)
            await supervisor.click("#tab-all")
            await supervisor.locator("#all-rows tr[data-id]").nth(3).wait_for(timeout=30_000)
            await supervisor.screenshot(path=out / "console-every-queue.png")
            await browser.close()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
    print("\n".join(str(p) for p in sorted(target.glob("console-*.png"))))
