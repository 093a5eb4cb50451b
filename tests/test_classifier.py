"""The bilingual classifier: categories, urgency, safety, triage, entities, and the text it reads.

The messages here are the team's own; none comes from ../shared/eval.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from router.classify import clauses
from router.classify import model as model_module
from router.classify.classifier import Classifier
from router.classify.entities import extract_entities
from router.classify.model import features
from router.classify.textprep import detect_language, for_model, new_text, normalize, prepare
from router.core.envelope import Urgency
from router.operator_files.config import ConfigError, load_config
from router.policy.rules import Rules
from tests.conftest import CONFIG_DIR

# --- categories, in both languages and every channel's shape ----------------------------------


@pytest.mark.parametrize(
    ("text", "channel", "category"),
    [
        # two-word SMS
        ("盗刷！！", "sms", "unauthorized_transaction"),
        ("pin blocked", "sms", "password_reset"),
        ("转账失败", "sms", "transaction_failed"),
        ("tablet app?", "sms", "multi_device"),
        ("手机丢了", "sms", "data_loss"),
        ("fees abroad?", "sms", "general"),
        # chat, Chinese, English and mixed
        ("我昨天给房东转的租金显示成功了，可是房东说一分钱都没收到", "chat", "transaction_failed"),
        (
            "there is a purchase at a jewellery shop on my account that I never made",
            "chat",
            "unauthorized_transaction",
        ),
        (
            "收到一条短信说我的账户要被冻结，让我点链接重新认证，这是你们发的吗",
            "chat",
            "account_security",
        ),
        ("能不能在 iPad 和手机上同时 login 同一个账号", "chat", "multi_device"),
        ("我的 transfer 被 decline 了，balance 明明够的", "chat", "transaction_failed"),
        ("how can I turn on two-step verification for my account", "telegram", "account_security"),
        ("重装 app 以后 transaction history 全没了", "telegram", "data_loss"),
        ("what's the monthly limit for sending money to other people", "telegram", "general"),
        # speech-to-text: no punctuation, fillers and stutters
        (
            "喂 你好 我 我那个 钱包里 少了 少了两千块 我 我没有转过 是不是 被人 盗了",
            "voice",
            "unauthorized_transaction",
        ),
        (
            "um hi yeah i um i forgot my uh my passcode and the the app won't let me in",
            "voice",
            "password_reset",
        ),
        (
            "hello um my phone fell in the bath and it won't turn on how do i get my wallet on a new one",
            "voice",
            "data_loss",
        ),
    ],
)
def test_messages_get_the_category_a_support_lead_would_give(rules, text, channel, category):
    assert rules.classify(text, channel=channel).category == category


def test_only_the_new_text_of_an_email_reply_counts_not_the_quoted_history(rules):
    email = (
        "Thanks, that is sorted now. One more question: what is the fee for sending money to Canada?\n\n"
        "Best regards,\nMaria Lopez\n+44 7700 900456\n\n"
        "On Tue, 3 Sep 2024 at 09:12, Wallet Support <help@wallet.example> wrote:\n"
        "> You wrote: someone made three payments from my wallet that I did not make, freeze it\n"
        "> We have frozen your account.\n"
    )
    c = rules.classify(email, channel="email")
    assert c.category == "general"
    assert c.urgency is not Urgency.CRITICAL
    assert rules.lane(email) == "standard"


@pytest.mark.parametrize(
    "quoted",
    [
        "-----Original Message-----\nFrom: support\nSubject: fraud report\n\nsomeone stole money from my wallet",
        "在 2024年9月3日 周二 09:12，客服 <help@wallet.example> 写道：\n> 有人用我的钱包转走了五千，不是我转的",
        "> someone used my card for purchases I didn't make\n> please block it",
        "________________________________\nFrom: Wallet Support\nSent: Tuesday\n\nunauthorised transfers reported",
    ],
)
def test_every_common_quoting_style_is_cut_before_classifying(rules, quoted):
    text = f"I forgot my password again, can you send me a reset link?\n\n{quoted}"
    assert (
        "password" in new_text(text)
        and "stole" not in new_text(text)
        and "转走" not in new_text(text)
    )
    assert rules.classify(text, channel="email").category == "password_reset"


def test_a_customer_line_starting_with_from_is_read_not_cut_as_quoted_history():
    # The email channel's splitter and the classifier's are one (router/classify/quotes.py): a
    # "From:" line opens history only at the head of a header block (Sent:/To: after it).
    text = "My transfer failed twice.\nFrom: my bank account I sent 100 yuan\nit never arrived"
    assert new_text(text) == text


def test_a_signature_is_not_read_as_part_of_the_message():
    text = "您好：\n\n我想问一下提现的手续费是多少。\n\n谢谢\n王女士\n13800000000"
    assert new_text(text) == "您好：\n\n我想问一下提现的手续费是多少。"


def test_the_subject_line_counts_with_the_body(rules):
    c = rules.classify(
        "Please call me back today.", channel="email", subject="Re: payments I did not make"
    )
    assert c.category == "unauthorized_transaction"


def test_voice_fillers_and_stutters_are_removed_and_chinese_words_joined():
    assert normalize("um so I I um lost my phone") == "so i lost my phone"
    assert normalize("喂 你好 我 我 的 钱包 多了 多了一笔 扣款") == "你好我的钱包多了一笔扣款"
    assert normalize("ＡＢＣ，ｃａｒｄ") == "abc,card"  # full-width to half-width


# --- every decision explains itself -------------------------------------------------------------


def test_every_decision_carries_a_confidence_and_the_rules_that_fired(rules):
    c = rules.classify("my transfer failed but the money was deducted", channel="chat")
    assert 0 < c.confidence <= 1
    assert any(r.startswith("transaction_failed:kw:") for r in c.rules)
    assert any(r.startswith("model:") for r in c.rules)
    assert "urgency:money_left_the_account" in c.rules
    assert c.rules_version == rules.version


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("我的钱包被盗了", "zh"),
        ("my card was declined", "en"),
        ("我的 balance 少了 ¥3,000，history 里没有记录", "zh"),
        ("hi this is 王伟, my transfer failed", "en"),
    ],
)
def test_language_follows_the_script_that_carries_the_message(text, language):
    assert detect_language(text) == language


# --- urgency ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "category", "urgency"),
    [
        (
            "my transfer failed and the money already left my balance",
            "transaction_failed",
            Urgency.HIGH,
        ),
        ("转账失败了，钱已经扣了，对方没收到", "transaction_failed", Urgency.HIGH),
        ("my transfer failed, no money was taken, why?", "transaction_failed", Urgency.NORMAL),
        ("付款失败，钱没扣，换了张卡也不行", "transaction_failed", Urgency.NORMAL),
        (
            "my phone was stolen on the bus and it was unlocked with the wallet open",
            "data_loss",
            Urgency.CRITICAL,
        ),
        ("手机被偷了，当时没锁屏", "data_loss", Urgency.CRITICAL),
        ("my phone broke, will my history be safe?", "data_loss", Urgency.NORMAL),
        ("will uninstalling the app delete my history?", "data_loss", Urgency.LOW),
        (
            "a man who says he is from support can see my screen right now, he asked me to open the wallet",
            "account_security",
            Urgency.CRITICAL,
        ),
        (
            "someone logged in to my account from another city this morning, it wasn't me, nothing was taken",
            "account_security",
            Urgency.HIGH,
        ),
        ("how do I turn on login alerts?", "account_security", Urgency.LOW),
        (
            "I'm at the pharmacy and my payment pin is locked, I need to pay now",
            "password_reset",
            Urgency.HIGH,
        ),
        ("what is the fee for a withdrawal?", "general", Urgency.LOW),
        # Money gone is read by why it went: said and nothing else, the fraud team looks first;
        # gone with a failed transfer, a raised payments problem; sent to the wrong person by the
        # customer, a payments problem, raised too: the money left and reached no one it should.
        ("钱没了", "unauthorized_transaction", Urgency.CRITICAL),
        ("余额怎么少了？", "unauthorized_transaction", Urgency.CRITICAL),
        ("转账失败了 钱没了", "transaction_failed", Urgency.HIGH),
        (
            "I accidentally sent 500 to the wrong person, can I get it back",
            "transaction_failed",
            Urgency.HIGH,
        ),
    ],
)
def test_urgency_follows_the_urgency_rules(rules, text, category, urgency):
    c = rules.classify(text)
    assert (c.category, c.urgency) == (category, urgency), c.rules


def test_a_fraud_report_is_always_critical(rules):
    for text in ("有人用我的钱包买了东西，不是我买的", "unknown charge of 20 on my card, not me"):
        c = rules.classify(text)
        assert c.category == "unauthorized_transaction" and c.urgency is Urgency.CRITICAL


# --- asymmetric safety ---------------------------------------------------------------------------


def _config_with(tmp_path, change) -> Classifier:
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    path = target / "classifier.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    config = load_config(target)
    return Classifier(config.classifier, config.version)


def test_the_model_never_lowers_the_urgency_a_fraud_rule_set(tmp_path):
    # A fraud keyword in a message every example calls a fee question: whatever category wins,
    # the urgency stays critical.
    def add_keyword(data):
        data["categories"]["unauthorized_transaction"]["keywords"]["en"].append("zebra-alert")
        data["model"]["fraud_floor"] = 1.0  # the model alone may not lift it: only the rule counts
        data["model"]["rule_weight"] = data["model"]["fraud_rule_weight"] = (
            0.0  # nor any weight to the category
        )

    classifier = _config_with(tmp_path, add_keyword)
    c = classifier.classify("what is the fee for a transfer to my own bank account zebra-alert")
    assert c.category != "unauthorized_transaction"
    assert c.urgency is Urgency.CRITICAL
    assert "safety:fraud_rule_keeps_critical" in c.rules
    assert classifier.prescreen("what is the fee for a transfer zebra-alert")


def test_a_rule_that_would_lower_fraud_urgency_is_refused(tmp_path):
    def lower_fraud(data):
        data["urgency_rules"].append(
            {
                "name": "calm_fraud",
                "categories": ["unauthorized_transaction"],
                "urgency": "low",
                "lowers": True,
                "keywords": {"en": ["just checking"]},
            }
        )

    with pytest.raises(ConfigError) as err:
        _config_with(tmp_path, lower_fraud)
    assert "may not lower the urgency of unauthorized_transaction" in str(err.value)
    assert "classifier.yaml:" in str(err.value)


def test_a_negative_pattern_switches_the_fraud_rules_off(rules):
    c = rules.classify(
        "I did make that payment myself, it is not fraud, I only want to know the fee"
    )
    assert c.category != "unauthorized_transaction" and c.urgency is not Urgency.CRITICAL
    assert any(r.startswith("unauthorized_transaction:negated:") for r in c.rules)


def test_a_fraud_lean_of_the_model_alone_goes_to_triage_flagged_possible_fraud(rules):
    # No fraud keyword or pattern here: the model's lean towards fraud is not evidence enough
    # for the fraud desk at critical, but a person reads it first, soon.
    c = rules.classify("a company called BRIGHTLINE took 60 from me, who are they?")
    assert c.category != "unauthorized_transaction"
    assert any(r.startswith("triage:possible_fraud=") for r in c.rules), c.rules
    assert c.urgency is Urgency.HIGH
    assert rules.queue_for(c) == "triage"


def test_fraud_with_rule_evidence_goes_to_the_fraud_desk_at_once(rules):
    text = "a company called BRIGHTLINE took 60 from me and I never authorised it"
    c = rules.classify(text)
    assert c.category == "unauthorized_transaction" and c.urgency is Urgency.CRITICAL
    assert not any(r.startswith("triage:") for r in c.rules)
    assert rules.queue_for(c) != "triage"
    assert rules.lane(text) == "urgent"


# --- triage ----------------------------------------------------------------------------------------


def test_a_doubtful_message_keeps_its_category_but_goes_to_triage(rules):
    c = rules.classify("hello?")
    assert c.confidence < rules.config.classifier.triage_below_confidence
    assert rules.queue_for(c) == "triage"
    assert rules.config.queue_for(c.category) != "triage"  # the category alone routes elsewhere


def test_a_doubtful_fraud_report_goes_to_the_fraud_queue_not_to_triage(rules):
    from router.core.envelope import Classification

    doubtful_fraud = Classification(
        category="unauthorized_transaction", urgency=Urgency.CRITICAL, confidence=0.2, language="en"
    )
    assert rules.queue_for(doubtful_fraud) == "fraud"


# --- operators tune it in config ---------------------------------------------------------------------


def test_an_operator_keyword_changes_the_decision_after_a_reload(tmp_path, rules):
    text = "where do I see my loyalty stamps"
    before = rules.classify(text)

    def teach(data):
        data["categories"]["multi_device"]["keywords"]["en"].append("loyalty stamps")
        data["model"]["rule_weight"] = 6.0

    after = _config_with(tmp_path, teach).classify(text)
    assert after.category == "multi_device" and before.category != "multi_device"
    assert "multi_device:kw:loyalty stamps" in after.rules


def test_the_model_is_trained_from_the_examples_in_config(tmp_path):
    def relabel(data):
        # Teach the model one new phrase through examples only: no keyword, no pattern.
        data["categories"]["multi_device"]["examples"]["en"] += ["quokka quokka sync"] * 8

    classifier = _config_with(tmp_path, relabel)
    assert classifier.classify("quokka sync please").category == "multi_device"


def test_the_fast_scoring_path_gives_scikit_learns_probabilities(rules):
    model = rules.classifier.model
    texts = ["我的钱包被盗刷了", "my transfer failed", "hello", "手机 tablet 同时 login", "", "!!"]
    texts += _every_shape(rules)[::7]
    for text in texts:
        prepared = for_model(prepare(text))
        fast, reference = model.probabilities(prepared), model.sklearn_probabilities(prepared)
        assert fast == pytest.approx(reference, abs=1e-9), text


def test_the_rows_kept_as_python_floats_stay_bounded_and_add_up_as_numpy_adds_them(rules):
    """A stream of messages that reads every row of the table keeps at most the bound of them,
    and each sum is numpy's, bit for bit."""
    model = rules.classifier.model
    table = model._table
    every = range(len(table))
    for start in range(0, len(table), 500):
        rows = set(every[start : start + 500])
        order = np.fromiter(rows, dtype=np.intp, count=len(rows))  # the set's own order
        assert model._summed(rows) == np.add.reduce(table.take(order, axis=0)).tolist()
    assert 0 < len(model._row_values) <= model_module._ROW_CACHE_SIZE + 500


def test_the_fast_scoring_path_reads_exactly_the_n_grams_scikit_learn_reads(rules):
    """The remembered chunks and the word-pair table give the rows of `features`, no more."""
    model = rules.classifier.model
    vocabulary = model._vocabulary
    texts = _every_shape(rules)
    for text in texts + texts:  # the second time every chunk comes from the cache
        prepared = for_model(prepare(text))
        expected = {vocabulary[f] for f in features(prepared) if f in vocabulary}
        assert model._rows(prepared) == expected, text
    assert any(feature.startswith("b:") for feature in vocabulary)  # word pairs are in play


def test_a_config_without_enough_examples_is_refused(tmp_path):
    def strip(data):
        for category in data["categories"].values():
            category["examples"] = {"zh": [], "en": []}

    with pytest.raises(ConfigError) as err:
        _config_with(tmp_path, strip)
    assert "examples are needed" in str(err.value)


# --- entities --------------------------------------------------------------------------------------


def test_entities_are_extracted_from_what_the_customer_wrote(rules):
    c = rules.classify(
        "transfer TXN20240311778 of ¥2,350.00 failed on 2024-03-11 at 14:05 with error E1023, "
        "call me on +86 138 0013 8000 or mail li.wei@example.com"
    )
    e = c.entities
    assert e["transaction_ids"] == ["TXN20240311778"]
    assert e["amounts"] == ["¥2,350.00"]
    assert e["error_codes"] == ["E1023"]
    assert "2024-03-11" in e["dates"] and "14:05" in e["times"]
    assert e["phone_numbers"] == ["+86 138 0013 8000"]
    assert e["emails"] == ["li.wei@example.com"]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("3月5日晚上9点多扣了我648元", "amounts", "648元"),
        ("3月5日晚上9点多扣了我648元", "dates", "3月5日"),
        ("3月5日晚上9点多扣了我648元", "times", "晚上9点多"),
        ("订单号：4200001234567890 一直处理中", "transaction_ids", "4200001234567890"),
        ("提示返回码 R-77，付不了款", "error_codes", "R-77"),
        ("paid 45 EUR yesterday", "amounts", "45 EUR"),
        ("ref PAY-88812-X was charged twice", "transaction_ids", "PAY-88812-X"),
        ("我的电话 139 1234 5678", "phone_numbers", "139 1234 5678"),
    ],
)
def test_entities_in_chinese_and_english_forms(text, kind, value):
    assert value in extract_entities(text)[kind]


def test_a_message_without_digits_has_no_numeric_entities():
    assert extract_entities("my transfer failed this morning") == {"dates": ["this morning"]}


# --- the fast paths decide exactly what the slow ones would ------------------------------------


def _every_shape(rules: Rules) -> list[str]:
    """Every example sentence of the config as a chat line, an SMS, a transcript and an email."""
    out = []
    for category in rules.config.classifier.categories.values():
        for text in category.examples.all():
            out += [
                text,
                text[:40],
                text.replace("，", " ").replace(",", " ").lower(),
                f"Hello,\n\n{text}\n\nThanks,\nSam\n\n> older message about a refund\n",
            ]
    return out


def test_the_anchor_gate_never_changes_a_decision(rules):
    """Patterns run only when one of their literal anchors is in the text, and matches are framed
    (clauses.frame) only when the text holds a framing word. Running every pattern on every text
    and framing every match must give the same category, urgency, confidence and rules fired."""
    texts = _every_shape(rules)
    gated = [rules.classify(text) for text in texts]
    index = rules.classifier._index
    # No anchor gate, and every match framed as if the text held a framing word.
    index.gated = False
    try:
        ungated = [rules.classify(text) for text in texts]
    finally:
        index.gated = True
    for text, fast, slow in zip(texts, gated, ungated, strict=True):
        assert (fast.category, fast.urgency, fast.confidence, fast.rules) == (
            slow.category,
            slow.urgency,
            slow.confidence,
            slow.rules,
        ), text
    assert len(texts) > 1000


def test_the_framing_cue_gate_finds_what_the_cue_regexes_find(rules):
    """Each cue regex runs only when one of its literal anchors is in the text: the cues found
    must be those of every regex run on every text."""
    texts = _every_shape(rules) + [
        "if my friend almost lost money",
        "我同事差点被骗",
        "nothing happened, rather odd",
        "people say it turned out fine",
    ]
    for text in texts:
        prepared = prepare(text)
        denial = clauses._DENIAL_CUE.search(prepared) is not None
        framed = any(regex.search(prepared) for regex in clauses._FRAME_CUES)
        assert clauses.cues(prepared) == (denial, framed), text
        # The same cues, their anchors found in the classifier's one pass over the text.
        assert rules.classifier._text(text, None).framing == (denial, framed), text
    assert sum(any(clauses.cues(prepare(text))) for text in texts) > 100


def test_overlapping_chinese_keywords_are_all_found():
    from router.classify.keywords import KeywordIndex

    index = KeywordIndex()
    index.add("reset", ["支付密码", "忘记密码"])
    index.add("secret", ["密码"])
    index.add("fraud", ["盗刷", "被盗"])
    found = index.find(normalize("我忘记密码了，支付密码也不对，是不是被盗刷了"))
    assert found == {
        "reset": ["忘记密码", "支付密码"],
        "secret": ["密码"],
        "fraud": ["被盗", "盗刷"],
    }


# --- fraud reports written the ways customers write them -----------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "hi, someone logged into my account from another phone and sent 300 USD",
        "I got a login alert from Shenzhen then 5000 yuan was gone",
        "someone got into my account last night and paid for a bunch of game credits",
        "new device login I don't know about, and my savings are gone",
        "有陌生设备登录我的账号并且消费了两笔",
        "收到异地登录短信，随后余额少了两千",
        "手机被偷了，小偷用我的钱包付款买东西",
        # A scam that had the customer send the money themselves.
        "a scammer convinced me to transfer 3000 for a fake investment",
        "they tricked me into sending 800 for a parcel fee that was fake",
        # Mixed and abbreviated, as typed on a phone.
        "我的wallet被hack了 balance全没了",
        "pls help acct hacked",
        "three payments to an online casino this morning, I have never gambled in my life",
        # A phishing link, and then the money went.
        "I clicked a link in a text and now 1000 is gone",
        "我点了一个链接 然后钱就被扣了",
    ],
)
def test_takeovers_scams_and_unknown_payments_are_critical_fraud_reports_on_the_urgent_lane(
    rules, text
):
    result = rules.classify(text)
    assert (result.category, result.urgency) == ("unauthorized_transaction", Urgency.CRITICAL), (
        result.rules
    )
    assert rules.lane(text).value == "urgent"


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # A login alone is account security; a login the customer made is not fraud at all.
        ("someone logged into my account from a new device", "account_security"),
        ("I changed my password after a login alert, nothing was taken", "account_security"),
        ("收到登录提醒，是我自己在新手机上登录的，钱没少", "account_security"),
        ("my friend convinced me to try the new savings feature", "general"),
        ("我点了短信里的链接，是你们发的吗", "account_security"),  # a link, no money gone yet
    ],
)
def test_a_login_without_money_moving_is_not_fraud(rules, text, category):
    assert rules.classify(text).category == category


@pytest.mark.parametrize(
    "text",
    [
        "2fa not working new phone",
        "new phone, authenticator codes dont work",
        "换了新手机，两步验证收不到",
    ],
)
def test_two_step_codes_on_a_new_phone_are_account_security_not_lost_data(rules, text):
    assert rules.classify(text).category == "account_security"


def test_lost_records_are_still_data_loss(rules):
    for text in (
        "聊天记录没了",
        "转账记录不见了",
        "I lost my phone, how do I get my transaction history back",
    ):
        assert rules.classify(text).category == "data_loss", text


@pytest.mark.parametrize(
    ("text", "category", "urgency"),
    [
        ("我把验证码告诉了一个自称客服的人", "account_security", Urgency.HIGH),
        (
            "someone called pretending to be from your bank and I gave them the code",
            "account_security",
            Urgency.HIGH,
        ),
        ("我的手机号被人改了", "account_security", Urgency.HIGH),
        ("my password was changed and I didn't do it", "account_security", Urgency.HIGH),
        ("手机被抢了 当时是解锁状态", "data_loss", Urgency.CRITICAL),
        (
            "my phone was snatched while unlocked and the wallet was open",
            "data_loss",
            Urgency.CRITICAL,
        ),
    ],
)
def test_a_code_given_away_or_a_phone_stolen_unlocked_is_raised_in_both_languages(
    rules, text, category, urgency
):
    result = rules.classify(text)
    assert (result.category, result.urgency) == (category, urgency), result.rules
    assert rules.lane(text).value == "urgent"
