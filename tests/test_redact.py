"""Redaction at the gateway: every kind of secret is masked, everything else stays readable."""

from __future__ import annotations

import pytest

from router.classify.redact import (
    CARD_NUMBER,
    CVV,
    ONE_TIME_CODE,
    PASSWORD,
    RESIDENT_ID,
    card_windows,
    redact,
)
from router.policy.rules import Rules
from tests.conftest import CONFIG_DIR

VALID_CARDS = ["4111 1111 1111 1111", "5555-5555-5555-4444", "6011000990139424", "378282246310005"]
VALID_RESIDENT_ID = "11010519491231002X"


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        ("我的验证码是 482913 你们看一下", "482913", ONE_TIME_CODE),
        ("验证码：558201", "558201", ONE_TIME_CODE),
        ("刚收到的验证码771204是你们发的吗", "771204", ONE_TIME_CODE),
        ("390512是验证码", "390512", ONE_TIME_CODE),
        ("the code is 448120, is that normal?", "448120", ONE_TIME_CODE),
        ("my OTP 8812 just arrived", "8812", ONE_TIME_CODE),
        ("the code they sent me was 771 204", "771 204", ONE_TIME_CODE),
        ("verification code: 9931", "9931", ONE_TIME_CODE),
        (
            "my code is four eight two nine one three",
            "four eight two nine one three",
            ONE_TIME_CODE,
        ),
        ("验证码是六六八八九九", "六六八八九九", ONE_TIME_CODE),
        ("my password is Hunter2!x", "Hunter2!x", PASSWORD),
        ("password: correcthorsebattery", "correcthorsebattery", PASSWORD),
        ("密码是abc12345，帮我看看", "abc12345", PASSWORD),
        ("登录密码 qwe123456", "qwe123456", PASSWORD),
        ("支付密码198877", "198877", PASSWORD),
        ("my pin is 4321", "4321", PASSWORD),
        ("card 4111 1111 1111 1111 please block it", "4111 1111 1111 1111", CARD_NUMBER),
        ("卡号6011000990139424被盗刷", "6011000990139424", CARD_NUMBER),
        ("amex 378282246310005", "378282246310005", CARD_NUMBER),
        ("cvv 737", "737", CVV),
        ("卡背面的三位数是 123", "123", CVV),
        ("安全码：456", "456", CVV),
        (f"身份证号 {VALID_RESIDENT_ID}", VALID_RESIDENT_ID, RESIDENT_ID),
        (f"my id is {VALID_RESIDENT_ID.lower()}", VALID_RESIDENT_ID.lower(), RESIDENT_ID),
    ],
)
def test_each_kind_of_secret_is_masked_and_recorded(text, secret, kind):
    result = redact(text)
    assert secret not in result.text
    assert kind in result.kinds


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        # Traditional script, Taiwan and Hong Kong words, Cantonese phrasing: every kind.
        ("我的驗證碼是 384920", "384920", ONE_TIME_CODE),
        ("驗證碼係 662018，點算好", "662018", ONE_TIME_CODE),
        ("收到嘅動態碼：771530", "771530", ONE_TIME_CODE),
        ("校驗碼 550917 係咪你哋發嘅", "550917", ONE_TIME_CODE),
        ("簡訊認證碼是 204817", "204817", ONE_TIME_CODE),
        ("309415 就係我嘅驗證碼", "309415", ONE_TIME_CODE),
        ("驗證碼係六八三九二一", "六八三九二一", ONE_TIME_CODE),
        ("支付密碼是 abc12345", "abc12345", PASSWORD),
        ("我嘅交易密碼係 hk778899", "hk778899", PASSWORD),
        ("登入密碼：Tw2026pass", "Tw2026pass", PASSWORD),
        ("提款卡 PIN碼係 4826", "4826", PASSWORD),
        ("卡號 4111 1111 1111 1111 被盜刷", "4111 1111 1111 1111", CARD_NUMBER),
        (
            "張卡號碼係５５５５５５５５５５５５４４４４",
            "５５５５５５５５５５５５４４４４",
            CARD_NUMBER,
        ),
        ("卡背面三個數字係 319", "319", CVV),
        ("安全碼：842", "842", CVV),
        (f"身分證號碼 {VALID_RESIDENT_ID}", VALID_RESIDENT_ID, RESIDENT_ID),
        ("身份證 110105194912310021", "110105194912310021", RESIDENT_ID),
    ],
)
def test_each_kind_of_secret_written_in_traditional_chinese_is_masked(text, secret, kind):
    result = redact(text)
    assert secret not in result.text, result.text
    assert kind in result.kinds


def test_around_a_traditional_mask_the_customers_own_script_is_kept():
    result = redact("我嘅驗證碼係 384920，唔該幫我睇睇帳戶")
    assert result.text == "我嘅驗證碼係 [code removed]，唔該幫我睇睇帳戶"


@pytest.mark.parametrize(
    "text",
    ["密碼唔啱，點算", "驗證碼收唔到，等咗 5 分鐘", "密码系统升级 2026 后登不上", "轉賬 3000 蚊"],
)
def test_traditional_and_cantonese_text_without_a_secret_is_left_alone(text):
    result = redact(text)
    assert result.text == text and result.kinds == []


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        # Each cue the redactor looks for before running a pattern, written in capitals, in
        # mixed case and in every spelling the patterns accept: the quick test must not skip them.
        ("MY PIN IS 4821", "4821", PASSWORD),
        ("Passcode: Tr0ub4dor", "Tr0ub4dor", PASSWORD),
        ("PWD=zx81spectrum", "zx81spectrum", PASSWORD),
        ("口令是 qaz741", "qaz741", PASSWORD),
        ("Your One-Time Password is 550321", "550321", ONE_TIME_CODE),
        ("one time pin 8841", "8841", ONE_TIME_CODE),
        ("OTP 77 31 09", "77 31 09", ONE_TIME_CODE),
        ("Verification CODE: 884211", "884211", ONE_TIME_CODE),
        ("动态密码 662190", "662190", ONE_TIME_CODE),
        ("my CODE is SEVEN TWO NINE ONE FOUR FOUR", "SEVEN TWO NINE ONE FOUR FOUR", ONE_TIME_CODE),
        ("CVC2: 9182", "9182", CVV),
        ("the Security Code On The Back is 314", "314", CVV),
        ("背面3位数字 271", "271", CVV),
    ],
)
def test_cues_are_found_whatever_their_case_and_spelling(text, secret, kind):
    result = redact(text)
    assert secret not in result.text, result.text
    assert kind in result.kinds


@pytest.mark.parametrize("card", VALID_CARDS)
def test_luhn_valid_card_numbers_are_masked_whatever_the_separators(card):
    assert redact(f"my card is {card}").kinds == [CARD_NUMBER]


def test_a_cvv_right_after_a_card_number_is_masked_too():
    result = redact("card number 4111-1111-1111-1111 exp 09/27 321")
    assert "321" not in result.text and "4111" not in result.text
    assert result.kinds == [CARD_NUMBER, CVV]


@pytest.mark.parametrize(
    "text",
    [
        "error code 4012 when paying",
        "promo code 2024 is not working",
        "I transferred 5,000 yuan and the code took 30 minutes to arrive",
        "订单号 202403181234567890",
        "call me on 13812345678",
        "transaction 4111111111111112 failed",  # sixteen digits, but not a valid card number
        "my password is not working",
        "密码是多少位",
        "密码是6位数字吗",
        "my pin is blocked",
        "验证码收不到 已经等了10分钟",
        "I paid ¥1,280 at 10:30 on 3 May",
    ],
)
def test_amounts_phones_order_numbers_and_talk_about_secrets_stay_readable(text):
    result = redact(text)
    assert result.text == text
    assert result.kinds == []


def test_an_eighteen_digit_number_that_is_not_a_resident_id_stays():
    assert redact("reference 110105194912310021").kinds == []  # wrong check digit, no cue


def test_a_mistyped_resident_id_is_still_masked_when_named_as_one():
    assert RESIDENT_ID in redact("身份证 110105194912310021").kinds


def test_every_secret_in_one_message_is_masked_and_each_kind_recorded_once():
    text = (
        f"OTP 123456, password is P@ss1word, card 5555555555554444 cvc 999, id {VALID_RESIDENT_ID}"
    )
    result = redact(text)
    for secret in ("123456", "P@ss1word", "5555555555554444", "999", VALID_RESIDENT_ID):
        assert secret not in result.text
    assert result.kinds == sorted([ONE_TIME_CODE, PASSWORD, CARD_NUMBER, CVV, RESIDENT_ID])


@pytest.mark.parametrize(
    ("language", "expected"),
    [("zh", "请不要向任何人"), ("en", "Never send one-time codes")],
)
def test_the_acknowledgement_warns_the_customer_in_their_language(language, expected):
    rules = Rules(CONFIG_DIR)
    with_secret = rules.acknowledgement_text("general", language, "T1", [ONE_TIME_CODE])
    without = rules.acknowledgement_text("general", language, "T1", [])
    assert expected in with_secret
    assert expected not in without


def test_a_transaction_id_whose_digits_pass_luhn_is_kept_but_a_card_after_chinese_text_is_masked():
    from router.classify.redact import redact as mask

    kept = mask("转账失败了，钱已经扣了，交易号 TX2026110100123")
    assert "TX2026110100123" in kept.text and kept.kinds == []
    masked = mask("卡号4111111111111111被盗刷")
    assert "4111111111111111" not in masked.text and "card_number" in masked.kinds


@pytest.mark.parametrize(
    "written",
    [
        "4111.1111.1111.1111",
        "4111/1111/1111/1111",
        "4111_1111_1111_1111",
        "4111\n1111\n1111\n1111",
        "4111 \r\n1111\r\n 1111\n1111",
        "５５５５ ５５５５ ５５５５ ４４４４",
        "６０１１－０００９－９０１３－９４２４",
    ],
    ids=[
        "dots",
        "slashes",
        "underscores",
        "line-breaks",
        "crlf-and-spaces",
        "full-width",
        "fw-dash",
    ],
)
def test_card_numbers_are_masked_whatever_separates_their_groups(written):
    result = redact(f"卡号 {written} 被盗刷了")
    assert result.kinds == [CARD_NUMBER], result.text
    assert result.text == "卡号 [card number removed] 被盗刷了"


def test_separators_are_no_way_around_the_luhn_check():
    for text in ("ref 4111.1111.1111.1112", "ref 4111/1111/1111/1112", "ref 4111_1111_1111_1112"):
        assert redact(text).kinds == [], text


def test_a_card_next_to_an_amount_or_another_number_is_still_found_and_they_stay():
    assert redact("paid 4111 1111 1111 1111.50").text == "paid [card number removed].50"
    assert redact("no.12345.4111 1111 1111 1111").text == "no.12345.[card number removed]"


def test_dates_versions_and_addresses_with_dots_and_slashes_stay_readable():
    for text in ("on 2026/11/01 at 10.30", "version 4.12.1.1080", "ip 192.168.100.200", "1/2/3/4"):
        assert redact(text).text == text


def test_a_full_width_resident_id_is_masked_and_the_rest_keeps_its_width():
    result = redact("身份证１１０１０５１９４９１２３１００２Ｘ，订单１２３４５")
    assert result.text == "身份证[ID number removed]，订单１２３４５"
    assert result.kinds == [RESIDENT_ID]


def test_full_width_letters_do_not_hide_a_password():
    result = redact("ｐａｓｓｗｏｒｄ：ｈｕｎｔｅｒ２ｘ 好的")
    assert result.text == "ｐａｓｓｗｏｒｄ：[password removed] 好的"


@pytest.mark.parametrize(
    "text",
    [
        "身份证 110105491231002",  # named
        "my number is 110105491231002 please check",  # a province's area code and a date
        "老身份证号码是４４０３０１７２０６１５５１３",  # full width
    ],
)
def test_fifteen_digit_first_generation_resident_ids_are_masked(text):
    result = redact(text)
    assert RESIDENT_ID in result.kinds
    assert "[ID number removed]" in result.text


@pytest.mark.parametrize(
    "text",
    [
        "order 202611010012345",  # no province starts with 20
        "tracking 991231010112345",
        "amex 371449635398431",  # a card: no date fits, masked as a card
    ],
)
def test_fifteen_digit_numbers_that_cannot_be_resident_ids_are_not_masked_as_one(text):
    assert RESIDENT_ID not in redact(text).kinds


def test_two_card_numbers_in_one_run_of_digits_are_both_masked():
    result = redact("names: 4539148803436467 4024 0071 5384 5218")
    assert result.text == "names: [card number removed] [card number removed]"


@pytest.mark.parametrize(
    ("digits", "is_card"),
    [
        ("4111111111111111", True),
        ("378282246310005", True),
        ("6011000990139424", True),
        ("4222222222222", True),  # 13 digits
        ("4111111111111112", False),
        ("1234567890123", False),
        ("411111111111", False),  # 12 digits: too short, whatever its checksum
    ],
)
def test_the_window_search_agrees_with_the_luhn_check(digits, is_card):
    assert (card_windows(digits) == [(0, len(digits))]) is is_card
    if is_card:  # one digit a group: the whole number is still the longest window
        spaced = " ".join(digits)
        assert card_windows(spaced) == [(0, len(spaced))]
