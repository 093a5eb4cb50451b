"""Fraud needs evidence the customer did not frame away: denied, hypothetical, someone else's,
or a scam avoided. Every message here was written for this test; none comes from ../shared/eval.
"""

from __future__ import annotations

import pytest

from router.classify.clauses import frame
from router.classify.textprep import normalize
from router.core.envelope import Urgency
from tests.conftest import CONFIG_DIR

FRAUD = "unauthorized_transaction"


def _frame_of(text: str, evidence: str) -> str | None:
    body = normalize(text)
    start = body.index(evidence)
    return frame(body, start, start + len(evidence), fraud=True)


@pytest.mark.parametrize(
    ("text", "evidence", "reason"),
    [
        ("这不是盗刷，我自己扫错了码", "盗刷", "denied"),
        ("it's not fraud, just a double charge", "fraud", "denied"),
        ("我没被盗号，只是忘了密码", "被盗", "denied"),
        ("如果手机被偷了，钱会被盗刷吗", "被盗刷", "hypothetical"),
        (
            "what if someone used my card abroad, am I covered",
            "someone used my card",
            "hypothetical",
        ),
        ("万一有人冒用我的身份开户怎么办", "冒用", "hypothetical"),
        ("万一有人盗刷我的卡怎么办", "盗刷", "hypothetical"),
        (
            "if someone ever took money from my wallet, would you pay it back",
            "took money",
            "hypothetical",
        ),
        ("我表姐的卡上周被盗刷了", "被盗刷", "someone_else"),
        ("my neighbour got scammed out of 2k", "got scammed", "someone_else"),
        ("I almost clicked the link but closed it", "clicked", "averted"),
        ("差点被骗了，挂了电话才反应过来", "被骗", "averted"),
    ],
)
def test_fraud_words_framed_away_are_named_with_the_reason(text, evidence, reason):
    assert _frame_of(text, evidence) == reason


@pytest.mark.parametrize(
    ("text", "evidence"),
    [
        ("有人盗刷了我的卡，三笔都不是我买的", "盗刷"),
        ("someone used my card at a casino, I was asleep", "someone used my card"),
        ("我替我妈打的，她的钱包被人转走了两万", "被人转走"),
        ("my colleague borrowed my phone and then 300 was sent from my wallet", "sent"),
        ("我根本没转过这笔钱，收款人我也不认识", "没转过"),
        ("I did not send this money, 3 transfers went out overnight", "did not send"),
        ("上周给朋友转过两百，今天钱包里的钱被转走了三千", "被转走"),
    ],
)
def test_fraud_told_as_ones_own_loss_still_counts(text, evidence):
    assert _frame_of(text, evidence) is None


@pytest.mark.parametrize(
    ("text", "evidence"),
    [
        ("what should I do if I notice a card payment I don't recognise", "don't recognise"),
        ("who do I call if I think a withdrawal was not made by me", "not made by me"),
        ("what do I do if someone has used my card", "someone has used my"),
        ("how do I get it back if somebody else spent money from my wallet", "spent money"),
        ("如果我发现钱包里有一笔不是我付的款，该怎么办", "不是我付"),
        ("如果有人用了我的卡，要先冻结吗", "有人用"),
    ],
)
def test_an_if_that_tells_what_the_customer_sees_or_suspects_still_counts(text, evidence):
    """A question in the form of "what do I do if I see..." is how many customers report what
    they see on their own account; it is not a fear of something that has not happened."""
    assert _frame_of(text, evidence) is None


@pytest.mark.parametrize(
    "text",
    [
        "What should I do if I notice a card payment I don't recognise?",
        "what do I do if someone has used my card",
        "如果有人用了我的卡怎么办",
        "People are using my credit card, please stop it",
        "A top-up on my account was not done by me",
        "There are two payments in the app that weren't made by me",
        "The app keeps saying I made a withdrawal, but I didn't.",
        "a card payment that does not belong to me showed up today",
        "my purse was snatched on the bus and they have already used my card",
        "if my card has been compromised what do I do first",
    ],
)
def test_a_report_in_other_peoples_words_reaches_the_fraud_desk(rules, text):
    """As a question ("what do I do if I see..."), about strangers using the card, a charge that
    "does not belong to me", a wallet stolen and the card used: the way BANKING77's customers put
    it, written anew here."""
    c = rules.classify(text, channel="chat")
    assert c.category == FRAUD, c.rules
    assert c.urgency is Urgency.CRITICAL
    assert rules.lane(text) == "urgent"


@pytest.mark.parametrize(
    "text",
    [
        "我同学的微信被盗了，我想给自己的钱包加个安全锁，在哪设置",
        "my brother lost 500 to a fake landlord, can I set a lower transfer limit on mine?",
        "如果哪天有人偷了我的手机，能马上把钱包冻结吗",
        "what happens if someone steals my card, do I get the money back?",
        "I nearly gave my code to someone claiming to be you, but I hung up",
        "这不是诈骗，是我自己填错了收款账号，钱转出去了",
        "not fraud – I just don't remember what this 9.99 subscription is",
        "the app says I made a payment but I didn't get a receipt",
    ],
)
def test_fraud_words_that_do_not_report_a_loss_do_not_reach_the_fraud_desk(rules, text):
    c = rules.classify(text, channel="chat")
    assert c.category != FRAUD, c.rules
    assert c.urgency is not Urgency.CRITICAL, c.rules
    assert rules.lane(text) == "standard"


@pytest.mark.parametrize(
    "text",
    [
        "包被偷了，今天发现钱包里有三笔我没买过的游戏充值",
        "my bag was snatched and now the app shows four top-ups I never made",
        "hi, a couple of things. the new design is nice. also: there is a 450 transfer to someone "
        "I don't know that I never sent. and can you tell me the fee for a second card?",
        "有人冒充公安让我把钱转到安全账户，我转了三万，现在人找不到了",
    ],
)
def test_fraud_told_as_a_story_or_inside_a_long_message_is_found(rules, text):
    c = rules.classify(text, channel="email")
    assert c.category == FRAUD, c.rules
    assert c.urgency is Urgency.CRITICAL
    assert rules.lane(text) == "urgent"


def test_a_denied_category_keeps_the_denial_as_its_explanation(rules):
    c = rules.classify("不是盗刷哈，我自己手滑转错了人，八百块能追回吗", channel="chat")
    assert c.category != FRAUD
    assert any(r.startswith((f"{FRAUD}:denied:", f"{FRAUD}:negated:")) for r in c.rules), c.rules


# --- unfamiliar text, urgency read like a person, learning from BANKING77 -----------------------


@pytest.mark.parametrize(
    "text",
    [
        "the lady on the phone yesterday was so kind, five stars",
        "客服小姐姐人很好，给你们点赞",
        "is there a dark mode coming soon?",
    ],
)
def test_praise_and_feature_requests_never_reach_the_fraud_desk(rules, text):
    c = rules.classify(text, channel="chat")
    assert c.category != FRAUD and c.urgency is not Urgency.CRITICAL, c.rules


@pytest.mark.parametrize(
    "text",
    [
        "How much does it cost to top up with a foreign card?",
        "Why is the exchange rate in the app different from the one on Google?",
        "Can I get a second card for my partner?",
        "What's the fee for taking cash out abroad?",
    ],
)
def test_ordinary_banking_questions_land_in_general(rules, text):
    c = rules.classify(text, channel="chat")
    assert c.category == "general", c.rules
    assert c.urgency is Urgency.LOW


@pytest.mark.parametrize(
    ("text", "urgency"),
    [
        ("不着急，忘了支付密码，想重置一下", Urgency.NORMAL),
        ("no rush at all, I forgot my PIN and want to reset it", Urgency.NORMAL),
        ("I'm at the hotel reception and locked out of my PIN, they are waiting", Urgency.HIGH),
        ("how often should I change my password?", Urgency.LOW),
    ],
)
def test_password_urgency_reads_the_customers_words(rules, text, urgency):
    c = rules.classify(text, channel="chat")
    assert c.category == "password_reset", c.rules
    assert c.urgency is urgency, c.rules


@pytest.mark.parametrize(
    ("text", "urgency"),
    [
        (
            "someone is logged into my wallet right now from another city, how do I kick them out",
            Urgency.CRITICAL,
        ),
        ("陌生设备现在还在线登录着我的账号，我改了密码也没用", Urgency.CRITICAL),
        (
            "alert: a new payee was added to my account an hour ago, it wasn't me, nothing sent yet",
            Urgency.HIGH,
        ),
        ("刚收到通知说我的账户绑定了一张新的银行卡，不是我绑的，钱还在", Urgency.HIGH),
    ],
)
def test_a_takeover_with_no_money_moved_is_account_security(rules, text, urgency):
    c = rules.classify(text, channel="chat")
    assert c.category == "account_security", c.rules
    assert c.urgency is urgency, c.rules


def test_seeing_a_record_still_is_not_someone_in_the_account(rules):
    c = rules.classify("我还能看到那笔退款记录，但钱一直没到账", channel="chat")
    assert c.urgency is not Urgency.CRITICAL, c.rules
    assert rules.lane("我还能看到那笔退款记录，但钱一直没到账") == "standard"


@pytest.mark.parametrize(
    "text",
    [
        "paid my gas bill on Monday, the money came out of my wallet but the supplier says nothing arrived",
        "给房东转了三千，显示已转出，房东说没收到",
    ],
)
def test_money_out_but_not_arrived_is_high(rules, text):
    c = rules.classify(text, channel="chat")
    assert c.category == "transaction_failed", c.rules
    assert c.urgency is Urgency.HIGH, c.rules


def test_the_model_learns_from_banking77_beside_the_configs_examples(rules):
    settings = rules.config.classifier.model
    assert settings.extra_examples == "banking77_train.csv"
    assert 0 < settings.extra_examples_weight < 1
    # Words only BANKING77 teaches (none of our examples says "disposable virtual card").
    assert "w:disposable" in rules.classifier.model._vocabulary


def test_an_extra_examples_file_that_is_not_shipped_is_refused_with_file_and_line(tmp_path):
    import shutil

    from router.operator_files.config import ConfigError, load_config

    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    path = tmp_path / "config" / "classifier.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "extra_examples: banking77_train.csv", "extra_examples: ../../etc/passwd"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "config")
    assert "classifier.yaml:" in str(err.value)
    assert "not one of the shipped files" in str(err.value)
