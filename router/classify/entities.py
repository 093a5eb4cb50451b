"""Entities an agent needs at a glance: transaction ids, amounts, error codes, dates, phones, emails.

They are read from the redacted text, so a masked card number or code can never come back here.
"""

from __future__ import annotations

import re

from router.classify.fastre import compile_fast

_CURRENCY_SIGN = r"[¥￥$€£]|us\$|hk\$|s\$|a\$|c\$"
_CURRENCY_CODE = r"rmb|cny|usd|eur|gbp|hkd|jpy|sgd|aud|cad|inr|thb|myr|php|idr|vnd|krw"
_CURRENCY_WORD = r"元|块钱|块|人民币|美元|美金|欧元|英镑|港币|日元|yuan|dollars?|bucks|euros?|pounds?|quid|rupees?"
# Bounded, and never starting inside a longer number: a run of thousands of digits must not make
# the engine retry every suffix (quadratic time on hostile input).
_NUMBER = r"(?<![\d,.])(?:\d{1,3}(?:,\d{3}){1,5}(?:\.\d{1,2})?|\d{1,12}(?:\.\d{1,2})?)(?![\d,])"

_PATTERNS: dict[str, re.Pattern] = {
    "emails": compile_fast(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "transaction_ids": compile_fast(
        r"\b((?:txn|tx|trx|t)\d{6,})\b"
        r"|(?:(?:txn|tx|trx|transaction|ref(?:erence)?|order|交易单号|交易号|订单号|流水号|参考号|单号)"
        r"\s*(?:id|no\.?|number|#)?\s*[:：#]?\s*)"
        r"([a-z0-9][a-z0-9-]{4,39}[a-z0-9])",
    ),
    "amounts": compile_fast(
        rf"(?:(?:{_CURRENCY_SIGN})\s?(?:{_NUMBER})(?:\s?[k万])?"
        rf"|(?:{_CURRENCY_CODE})\s?(?:{_NUMBER})"
        rf"|(?:{_NUMBER})\s?(?:k|万|千)?\s?(?:{_CURRENCY_CODE}|{_CURRENCY_WORD}))",
    ),
    "error_codes": compile_fast(
        r"(?:error|err|code|错误码|错误代码|返回码|代码|提示码)\s*(?:code)?\s*[:：#]?\s*([a-z]{0,4}-?\d{2,6})\b"
        r"|\b([a-z]{1,3}-?\d{2,5})\b(?=\s*(?:error|错误|报错))"
        r"|\b([a-z]{1,3}\d{3,5})\b",
    ),
    "dates": compile_fast(
        r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"
        r"|\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b"
        r"|(?:\d{4}年)?\d{1,2}月\d{1,2}[日号]"
        r"|\b\d{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?(?:\s+\d{4})?\b"
        r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?\b"
        r"|\b(?:yesterday|today|tonight|this morning|last night)\b"
        r"|昨天|今天|前天|今早|昨晚|今晚",
    ),
    "times": compile_fast(
        r"\b\d{1,2}:\d{2}(?:\s?[ap]\.?m\.?)?\b|\b\d{1,2}\s?[ap]\.?m\.?\b"
        r"|(?:凌晨|早上|上午|中午|下午|晚上|夜里)?\d{1,2}点(?:\d{1,2}分|半|多)?",
    ),
    "phone_numbers": compile_fast(
        r"(?<![\w.+])(?:\+\d{1,3}[\s-]?\d{2,5}(?:[\s-]?\d{2,5}){1,3}"
        r"|1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}|\(?\d{2,4}\)?[\s-]\d{3,4}[\s-]\d{3,4})(?![\w.])"
    ),
}


_DIGIT = re.compile(r"\d")
_DATE_WORDS = re.compile(
    r"yesterday|today|tonight|this morning|last night|昨天|今天|前天|今早|昨晚|今晚"
)


def extract_entities(text: str) -> dict[str, list[str]]:
    """Entities of a text, as written (the patterns run on a lower-cased copy of the same length)."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a rare letter whose lower case is longer: keep positions true
        lowered = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)
    found: dict[str, list[str]] = {}
    taken: list[tuple[int, int]] = []
    # Every kind but a few date words needs a digit (or an @): most messages skip the patterns.
    kinds = ["emails"] if "@" in text else []
    digits = len(_DIGIT.findall(lowered))
    if digits:
        if digits >= 5:  # an id or a phone number has at least five digits
            kinds += [
                "transaction_ids",
                "amounts",
                "phone_numbers",
                "dates",
                "times",
                "error_codes",
            ]
        else:
            kinds += ["amounts", "dates", "times", "error_codes"]
    elif _DATE_WORDS.search(lowered):
        kinds.append("dates")
    for kind in kinds:
        values: list[str] = []
        for match in _PATTERNS[kind].finditer(lowered):
            group = match.lastindex if match.re.groups and match.lastindex else 0
            start, end = match.span(group)
            value = text[start:end]
            # A span one kind already took (the digits of a phone, an id) is not also an amount.
            if any(s < end and start < e for s, e in taken):
                continue
            if kind == "error_codes" and not re.search(r"\d", value):
                continue
            taken.append((start, end))
            value = value.strip()
            if value not in values:
                values.append(value)
        if values:
            found[kind] = values
    return found
