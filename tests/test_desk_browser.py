"""The agents' desk in headless Chromium (Debian's), driven by Playwright, against the whole
running router: the layout at 1280 and 1440 px, offers with Claim and a notification, SLA and
priority in words, attachments as files, every queue for a supervisor, notes, tags, canned
replies, search and the customer across channels."""

from __future__ import annotations

import pytest

from router.core.envelope import Attachment
from tests.chat_helpers import wait_for_queue
from tests.conftest import ADMIN_PASSWORD, RunningRouter
from tests.routing_helpers import classified
from tests.test_browser import browser  # noqa: F401  (the fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

LONG = "someone took money from my wallet " + "without asking me and I never approved it " * 12
PHONE = "+8613800138000"

# Record what the console asks of the browser (a notification, a sound), then let it happen.
RECORD = """
window.__notified = [];
window.__beeps = 0;
const RealNotification = window.Notification;
class RecordedNotification extends RealNotification {
  constructor(title, options) { super(title, options); window.__notified.push(title); }
}
window.Notification = RecordedNotification;
const RealAudio = window.AudioContext;
window.AudioContext = class extends RealAudio {
  createOscillator() { window.__beeps += 1; return super.createOscillator(); }
};
"""


async def publish(r: RunningRouter, envelope) -> None:
    bus = r.router.bus
    await bus.publish(bus.topics.classified, envelope.to_bytes(), key=envelope.kafka_key)


async def console(browser, r: RunningRouter, username="admin", password=ADMIN_PASSWORD, **ctx):  # noqa: F811
    context = await browser.new_context(**ctx)
    page = await context.new_page()
    await page.goto(r.url("/console/"))
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await page.wait_for_selector("#app-view:not([hidden])")
    return page


async def test_conversation_cards_fit_their_column_at_1280_and_1440_px(running_router, browser):  # noqa: F811
    r = running_router
    admin = await r.login()
    for n in range(3):
        await publish(
            r, classified("unauthorized_transaction", "critical", text=LONG, key=f"+86139000{n}")
        )
    await wait_for_queue(r, admin, "fraud", lambda c: len(c) == 3)
    page = await console(browser, r)
    await page.click("[data-queue='fraud']")
    await page.locator("#conversation-list li").nth(2).wait_for()
    for width in (1280, 1440):
        await page.set_viewport_size({"width": width, "height": 900})
        sizes = await page.evaluate(
            """() => {
              const column = document.querySelector('#conversation-list').getBoundingClientRect();
              const cards = [...document.querySelectorAll('#conversation-list li, #conversation-list button')];
              return {column: column.width, cards: cards.map(c => c.getBoundingClientRect().width),
                      panel: [document.querySelector('#conversation-list').closest('.panel').scrollWidth,
                              document.querySelector('#conversation-list').closest('.panel').clientWidth]};
            }"""
        )
        assert sizes["cards"] and max(sizes["cards"]) <= sizes["column"] + 0.5, (width, sizes)
        assert sizes["panel"][0] <= sizes["panel"][1], (width, sizes)  # nothing sticks out
        # The wait time and the channel are still there to read, not cut off.
        first = page.locator("#conversation-list li button").first
        assert "chat" in await first.inner_text()


async def test_a_critical_offer_is_listed_with_claim_and_announced_by_a_notification_and_a_sound(
    running_router,
    browser,  # noqa: F811
):
    r = running_router
    await r.router.store.set_password("li.na", "agent-password-1")
    page = await console(
        browser,
        r,
        "li.na",
        "agent-password-1",
        permissions=["notifications"],
        base_url=r.base_url,
    )
    await page.context.grant_permissions(["notifications"], origin=r.base_url)
    await page.add_init_script(RECORD)
    await page.reload()
    await page.wait_for_selector("#app-view:not([hidden])")
    await page.select_option("#agent-status", "available")
    await page.wait_for_function("document.querySelector('#agent-status').value === 'available'")
    await page.wait_for_timeout(300)  # the first look at her offers: nothing yet
    await publish(r, classified("unauthorized_transaction", "critical", key=PHONE))
    offer = page.locator("#offer-list li.offer.critical")
    await offer.wait_for(timeout=15000)
    await page.wait_for_function("window.__notified.length > 0", timeout=15000)
    assert "Critical" in (await page.evaluate("window.__notified"))[0]
    assert await page.evaluate("window.__beeps") >= 1
    await offer.locator("button.claim").click()
    await page.wait_for_selector("#offers-box", state="hidden")
    headers = await r.login("li.na", "agent-password-1")
    async with r.http.get(r.url("/api/agents/me"), headers=headers) as resp:
        [held] = (await resp.json())["conversations"]
    assert held["accepted_at"] is not None


async def test_sla_due_and_priority_read_plainly_and_attachments_show_as_files(
    running_router,
    browser,  # noqa: F811
):
    r = running_router
    admin = await r.login()
    env = classified("unauthorized_transaction", "critical", key=PHONE, text="see the receipt")
    env = env.model_copy(
        update={
            "attachments": [Attachment(name="receipt.png", content_type="image/png", size=20480)]
        }
    )
    await publish(r, env)
    [conv] = await wait_for_queue(r, admin, "fraud", lambda c: len(c) == 1)
    page = await console(browser, r)
    await page.click("[data-queue='fraud']")
    await page.click(f"#conversation-list [data-id='{conv['id']}']")
    info = page.locator("#conv-info")
    await info.wait_for()
    text = await info.inner_text()
    assert f"Priority\n{conv['priority']}" in text.replace("\t", "\n")
    assert "SLA" in text and "{" not in text
    card = await page.locator(f"#conversation-list [data-id='{conv['id']}']").inner_text()
    assert f"Priority {conv['priority']}" in card and "SLA" in card
    file = page.locator("#conv-messages .files li")
    assert "receipt.png" in await file.inner_text() and "20 KB" in await file.inner_text()
    details = await page.locator("#conv-messages details pre").first.text_content()
    assert "receipt.png" not in details


async def test_a_supervisor_sees_every_queues_conversations(running_router, browser):  # noqa: F811
    r = running_router
    admin = await r.login()
    await publish(r, classified("unauthorized_transaction", "critical", key="+8613700000001"))
    await publish(r, classified("general", "low", key="+8613700000002"))
    fraud = await wait_for_queue(r, admin, "fraud", lambda c: len(c) == 1)
    general = await wait_for_queue(r, admin, "general", lambda c: len(c) == 1)
    page = await console(browser, r)
    await page.click("#tab-all")
    for conv in (fraud[0], general[0]):
        row = page.locator(f"#all-rows tr[data-id='{conv['id']}']")
        await row.wait_for()
        assert conv["ticket"] in await row.inner_text()


async def test_notes_tags_and_canned_replies_in_the_console(running_router, browser):  # noqa: F811
    r = running_router
    admin = await r.login()
    await publish(r, classified("transaction_failed", "normal", key=PHONE, language="zh"))
    [conv] = await wait_for_queue(r, admin, "payments", lambda c: len(c) == 1)
    page = await console(browser, r)
    await page.click("[data-queue='payments']")
    await page.click(f"#conversation-list [data-id='{conv['id']}']")
    await page.fill("#tag-text", "Chargeback")
    await page.click("#tag-add")
    await page.locator("#tag-list [data-tag='chargeback']").wait_for()
    await page.fill("#note-text", "Customer called twice; bank says pending")
    await page.click("#note-add")
    await page.locator("#note-list li", has_text="bank says pending").wait_for()
    await page.select_option("#canned", "ask_transaction")
    reply = await page.input_value("#reply-text")
    assert conv["ticket"] in reply and "交易号" in reply  # the customer's language, ticket filled
    async with r.http.get(r.url(f"/api/conversations/{conv['id']}/desk"), headers=admin) as resp:
        desk = await resp.json()
    assert desk["tags"] == ["chargeback"]
    assert [n["text"] for n in desk["notes"]] == ["Customer called twice; bank says pending"]
    async with r.http.get(r.url(f"/api/conversations/{conv['id']}"), headers=admin) as resp:
        shown = await resp.json()
    assert all("bank says pending" not in m["text"] for m in shown["messages"])  # never sent


async def test_search_finds_by_transaction_id_and_phone_and_the_customer_panel_spans_channels(
    running_router,
    browser,  # noqa: F811
):
    r = running_router
    admin = await r.login()
    await publish(
        r,
        classified(
            "transaction_failed", "normal", channel="sms", key=PHONE, text="TX20250611ABC failed"
        ),
    )
    await publish(
        r, classified("general", "low", channel="whatsapp", key=f"whatsapp:{PHONE}", text="hi")
    )
    [sms] = await wait_for_queue(r, admin, "payments", lambda c: len(c) == 1)
    [whatsapp] = await wait_for_queue(r, admin, "general", lambda c: len(c) == 1)
    page = await console(browser, r)
    await page.fill("#search-q", "TX20250611ABC")
    await page.click("#search-go")
    result = page.locator(f"#search-list [data-result='{sms['id']}']")
    await result.wait_for()
    assert await page.locator("#search-list li").count() == 1
    await page.fill("#search-q", sms["ticket"])
    await page.click("#search-go")
    await page.locator(f"#search-list [data-result='{sms['id']}']").wait_for()
    await page.fill("#search-q", "138 0013 8000")  # a phone number as people write it
    await page.click("#search-go")
    await page.locator(f"#search-list [data-result='{whatsapp['id']}']").wait_for()
    await page.locator(f"#search-list [data-result='{sms['id']}']").click()
    history = page.locator("#customer-history")
    await history.locator(f"[data-history='{whatsapp['id']}']").wait_for()
    assert await history.locator("li").count() == 2
    identities = await page.locator("#customer-info").inner_text()
    assert "whatsapp" in identities and "sms" in identities and PHONE in identities
