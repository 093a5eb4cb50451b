"""Fraud needs evidence the customer did not frame away: denied, hypothetical, someone else's,
or a scam avoided. Every message here was written for this test; none comes from ../shared/eval.
"""

from __future__ import annotations

import pytest

from router.classify.clauses import frame
from router.classify.textprep import normalize
from router.core.envelope import Urgency
from router.policy.rules import Rules
from tests.conftest import CONFIG_DIR

FRAUD = "unauthorized_transaction"


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules(CONFIG_DIR)


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
    ],
)
def test_fraud_told_as_ones_own_loss_still_counts(text, evidence):
    assert _frame_of(text, evidence) is None


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
