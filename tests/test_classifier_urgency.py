"""Urgency that reads like a person, round 2: a change nobody asked for is high, an intruder on
a device the customer does not know is critical, money that left without arriving is high,
a blocked or long-waiting customer is normal, a question before anything happened is low.
Every message here was written for this test; none comes from ../shared/eval.
"""

from __future__ import annotations

import pytest

from router.core.envelope import Urgency
from router.policy.rules import Rules
from tests.conftest import CONFIG_DIR


@pytest.mark.parametrize(
    ("text", "category", "urgency"),
    [
        # a change or a login that was not the customer, no money moved: high
        (
            "my login alerts were switched off last night and I never did that, money still there",
            "account_security",
            Urgency.HIGH,
        ),
        (
            "alert: sign-in from a new device in Porto. i'm in Leeds and it's not me",
            "account_security",
            Urgency.HIGH,
        ),
        (
            "绑定的邮箱被改成了一个陌生的地址，我没动过设置，余额倒是没变",
            "account_security",
            Urgency.HIGH,
        ),
        (
            "刚收到通知说有人 在 一台 新 的 device 上 登录 了 我的 account",
            "account_security",
            Urgency.HIGH,
        ),
        # an intruder now
        ("账户里现在有人在登录，不是我，快帮我处理", "account_security", Urgency.CRITICAL),
        # money left and did not arrive: high
        (
            "paid the plumber £80 through the app, it came off my balance but he says nothing reached him",
            "transaction_failed",
            Urgency.HIGH,
        ),
        (
            "给学校交学费显示 successful，可是学校说没收到，已经三天了",
            "transaction_failed",
            Urgency.HIGH,
        ),
        # a question before anything happened: low
        ("想问问钱包的聊天记录和账单有没有云端备份？先问问，不急", "data_loss", Urgency.LOW),
        (
            "my phone's data: is my wallet history backed up automatically somewhere?",
            "data_loss",
            Urgency.LOW,
        ),
        (
            "can I use a passkey or fingerprint for 2fa instead of text messages?",
            "account_security",
            Urgency.LOW,
        ),
    ],
)
def test_urgency_reads_like_a_person(rules, text, category, urgency):
    c = rules.classify(text, channel="chat")
    assert c.category == category, c.rules
    assert c.urgency is urgency, c.rules


def test_a_lost_phone_while_the_customer_is_logged_in_elsewhere_is_not_an_intruder(rules):
    c = rules.classify(
        "left my phone on the bus, it has a lock screen. I'm still logged in on my laptop, how do I sign the phone out?",
        channel="chat",
    )
    assert c.urgency is not Urgency.CRITICAL, c.rules


def test_a_real_loss_asked_about_backups_is_not_lowered(rules):
    c = rules.classify("我的手机昨天丢了，钱包里的账单有没有云端备份？能找回吗", channel="chat")
    assert c.category == "data_loss", c.rules
    assert c.urgency is not Urgency.LOW, c.rules


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("送你们一个大大的好评，上周那个客服小姐姐特别有耐心", "general"),
        ("kudos to the support team, sorted my question in five minutes", "general"),
        ("我的新人优惠券过期了吗？在哪里领", "general"),
        ("I need a receipt for last month's rent transfer for my tax return", "general"),
        ("passport upload got rejected twice, says the selfie doesn't match", "general"),
        ("手滑转错人了，给一个不认识的人转了两百，能退回来吗", "transaction_failed"),
        ("mm记不清了 怎么重置", "password_reset"),
        (
            "I read my one time code to a caller who said he was from your bank, nothing gone yet",
            "account_security",
        ),
    ],
)
def test_categories_from_everyday_words(rules, text, category):
    c = rules.classify(text, channel="chat")
    assert c.category == category, c.rules


def test_in_a_long_email_the_point_the_customer_marks_decides():
    rules = Rules(CONFIG_DIR)
    mail = (
        "Hello, first a few small things: what are your fees for sending money to Spain, and "
        "can I order a second card for my partner? Also the new app design is lovely. "
        "The main reason I'm writing though: since Friday the app says my passcode is wrong, "
        "I'm sure it isn't, and now it's locked after three tries."
    )
    c = rules.classify(mail, channel="email")
    assert c.category == "password_reset", c.rules
    assert any(r.startswith("focus:") for r in c.rules)


def test_fraud_before_the_marked_point_still_counts(rules):
    mail = (
        "Hi, someone took 900 EUR out of my wallet last night, I didn't make that payment. "
        "Most importantly, how do I raise my daily limit for a house deposit next week?"
    )
    c = rules.classify(mail, channel="email")
    assert c.category == "unauthorized_transaction", c.rules
    assert c.urgency is Urgency.CRITICAL


@pytest.mark.parametrize(
    ("text", "urgency"),
    [
        ("部手机啱啱喺地铁俾人扒咗，冇锁屏，钱包仲登入紧", Urgency.CRITICAL),
        ("手机在公交上被人拿走了，没设密码，微信钱包都开着", Urgency.CRITICAL),
        ("收到短信说支付密码被重置了，不是我操作的，现在我登不进去了", Urgency.CRITICAL),
        (
            "my password was changed and it wasn't me, now I'm locked out of the app",
            Urgency.CRITICAL,
        ),
    ],
)
def test_a_thief_or_intruder_holding_the_account_is_critical(rules, text, urgency):
    assert rules.classify(text, channel="chat").urgency is urgency


def test_locked_out_without_saying_someone_else_did_it_is_not_critical(rules):
    c = rules.classify("我没改密码，但是今天突然登不进去了", channel="chat")
    assert c.urgency is not Urgency.CRITICAL, c.rules


@pytest.mark.parametrize(
    ("cantonese", "mandarin"),
    [
        ("俾人呃咗五千蚊", "被人骗了五千蚊"),
        ("佢 係 呃 人 嘅", "他系骗人的"),
        ("我啱啱收到通知", "我刚刚收到通知"),
        (
            "呃 我想問下 點 樣 改密碼 唔該",
            "我想问下怎么改密码麻烦",
        ),  # a filler, and a transcript's spaces
    ],
)
def test_cantonese_cheat_and_just_now_are_read(cantonese, mandarin):
    from router.classify.textprep import normalize

    assert normalize(cantonese) == mandarin


def test_a_cantonese_scam_paid_and_found_out_afterwards_is_fraud(rules):
    c = rules.classify(
        "有個自稱銀行職員叫我轉錢去安全戶口，我轉咗三萬蚊，之後先知係呃人", channel="chat"
    )
    assert (c.category, c.urgency) == ("unauthorized_transaction", Urgency.CRITICAL), c.rules


@pytest.mark.parametrize(
    ("text", "category", "urgency"),
    [
        ("在便利店结账，支付密码怎么都不对，后面排队的人都在等", "password_reset", Urgency.HIGH),
        (
            "at the checkout and my passcode won't work, queue behind me",
            "password_reset",
            Urgency.HIGH,
        ),
        ("转错人了，给一个陌生号码转了三百，怎么要回来", "transaction_failed", Urgency.HIGH),
        (
            "accidentally sent £40 to the wrong person, can it be pulled back?",
            "transaction_failed",
            Urgency.HIGH,
        ),
        ("工资卡提现一直说失败，客户的钱收不到款，三天了", "transaction_failed", Urgency.NORMAL),
        (
            "the overdraft interest keeps coming off even though I paid it off, pls refund",
            "general",
            Urgency.NORMAL,
        ),
    ],
)
def test_paying_now_wrong_recipients_and_waiting_customers(rules, text, category, urgency):
    c = rules.classify(text, channel="chat")
    assert (c.category, c.urgency) == (category, urgency), c.rules
