"""Entities an agent needs at a glance: transaction ids, amounts, error codes, dates, phones, emails.

They are read from the redacted text, so a masked card number or code can never come back here.
"""

from __future__ import annotations

import re

_CURRENCY_SIGN = r"[¥￥$€£]|US\$|HK\$|S\$|A\$|C\$"
_CURRENCY_CODE = r"RMB|CNY|USD|EUR|GBP|HKD|JPY|SGD|AUD|CAD|INR|THB|MYR|PHP|IDR|VND|KRW"
_CURRENCY_WORD = r"元|块钱|块|人民币|美元|美金|欧元|英镑|港币|日元|yuan|dollars?|bucks|euros?|pounds?|quid|rupees?"
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"

_PATTERNS: dict[str, re.Pattern] = {
    "emails": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "transaction_ids": re.compile(
        r"\b((?:TXN|TX|TRX|T)\d{6,})\b"
        r"|(?:(?:txn|tx|trx|transaction|ref(?:erence)?|order|交易单号|交易号|订单号|流水号|参考号|单号)"
        r"\s*(?:id|no\.?|number|#)?\s*[:：#]?\s*)"
        r"([A-Z0-9][A-Z0-9-]{4,39}[A-Z0-9])",
        re.I,
    ),
    "amounts": re.compile(
        rf"(?:(?:{_CURRENCY_SIGN})\s?(?:{_NUMBER})(?:\s?[kK万])?"
        rf"|(?:{_CURRENCY_CODE})\s?(?:{_NUMBER})"
        rf"|(?:{_NUMBER})\s?(?:[kK万千])?\s?(?:{_CURRENCY_CODE}|{_CURRENCY_WORD}))",
        re.I,
    ),
    "error_codes": re.compile(
        r"(?:error|err|code|错误码|错误代码|返回码|代码|提示码)\s*(?:code)?\s*[:：#]?\s*([A-Z]{0,4}-?\d{2,6})\b"
        r"|\b([A-Z]{1,3}-?\d{2,5})\b(?=\s*(?:error|错误|报错))"
        r"|\b([A-Z]{1,3}\d{3,5})\b",
        re.I,
    ),
    "dates": re.compile(
        r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"
        r"|\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b"
        r"|(?:\d{4}年)?\d{1,2}月\d{1,2}[日号]"
        r"|\b\d{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?(?:\s+\d{4})?\b"
        r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?\b"
        r"|\b(?:yesterday|today|tonight|this morning|last night)\b"
        r"|昨天|今天|前天|今早|昨晚|今晚",
        re.I,
    ),
    "times": re.compile(
        r"\b\d{1,2}:\d{2}(?:\s?[ap]\.?m\.?)?\b|\b\d{1,2}\s?[ap]\.?m\.?\b"
        r"|(?:凌晨|早上|上午|中午|下午|晚上|夜里)?\d{1,2}点(?:\d{1,2}分|半|多)?",
        re.I,
    ),
    "phone_numbers": re.compile(
        r"(?<![\w.+])(?:\+\d{1,3}[\s-]?\d{2,5}(?:[\s-]?\d{2,5}){1,3}"
        r"|1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}|\(?\d{2,4}\)?[\s-]\d{3,4}[\s-]\d{3,4})(?![\w.])"
    ),
}


def extract_entities(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    taken: list[tuple[int, int]] = []
    for kind in ("emails", "transaction_ids", "amounts", "phone_numbers", "dates", "times", "error_codes"):
        values: list[str] = []
        for match in _PATTERNS[kind].finditer(text):
            groups = [g for g in match.groups() if g] if match.re.groups else []
            value = groups[0] if groups else match.group(0)
            start = match.start(match.lastindex) if groups else match.start()
            end = start + len(value)
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
