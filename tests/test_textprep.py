"""The classifier's normalized view: one script, half-width forms, the customer's words only."""

from __future__ import annotations

import pytest

from router.classify.redact import redact
from router.classify.textprep import normalize, prepare_with_source, to_simplified


@pytest.mark.parametrize(
    ("traditional", "simplified"),
    [
        ("錢包裡的錢不見了", "钱包里的钱不见了"),
        ("我要重設登入密碼", "我要重设登录密码"),  # Taiwan's 登入 is the mainland's 登录
        ("收不到簡訊", "收不到短信"),
        ("帳戶被凍結", "账户被冻结"),  # 帳 is 帐 in OpenCC; a wallet's 账 in the rules
        ("身分證過期", "身份证过期"),
        ("我不著急", "我不着急"),
    ],
)
def test_traditional_chinese_is_read_as_simplified(traditional, simplified):
    assert normalize(traditional) == simplified


@pytest.mark.parametrize(
    ("cantonese", "mandarin"),
    [
        ("我冇做過呢筆交易", "我没有做过呢笔交易"),
        ("佢哋轉咗我嘅錢", "他们转了我的钱"),
        ("我唔記得密碼", "我不记得密码"),
        ("唔係我轉嘅", "不是我转的"),
        ("點解我冇收到入數", "为什么我没有收到转账"),
    ],
)
def test_cantonese_words_are_read_as_their_mandarin_forms(cantonese, mandarin):
    assert normalize(cantonese) == mandarin


def test_a_lone_cantonese_filler_is_dropped_not_read_as_not():
    normalized = normalize("唔，我想問一下")
    assert "不" not in normalized and normalized.endswith("我想问一下")


@pytest.mark.parametrize(
    "text",
    [
        "我的文件不见了，程序打不开",
        "登录后看不到视频",
        "我想问一下转账限额",
        "输入数字后超过数额，重点解决",
    ],
)
def test_simplified_text_is_left_as_it_was_written(text):
    # 入数, 过数 and 点解 are Cantonese words too, but here only the ends of two words (and
    # nothing else in the text is Cantonese).
    # Taiwan's phrasing table would read 文件 as 文档 and 程序 as 进程: not for Simplified text.
    assert to_simplified(text) == text


def test_full_width_letters_digits_and_punctuation_are_half_width():
    assert normalize("ＯＴＰ　１２３４５６，謝謝！") == "otp 123456,谢谢!"


def test_the_source_keeps_the_customers_own_script_while_the_view_is_simplified():
    normalized, source = prepare_with_source("我的錢包餘額怎麼少了？")
    assert normalized == "我的钱包余额怎么少了?"
    assert source == "我的錢包餘額怎麼少了？"


def test_redaction_keeps_the_customers_script_outside_the_mask():
    assert redact("餘額怎麼少了？").text == "餘額怎麼少了？"
