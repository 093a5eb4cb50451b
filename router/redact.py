"""Masking of secrets at the gateway, before anything reaches Kafka, the store or a log line."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_OTP = re.compile(
    r"(?i)((?:验证码|校验码|动态码|otp|one[- ]time (?:code|password)|verification code|code)"
    r"\s*(?:is|是|为|:|：)?\s*)(\d{4,8})(?!\d)"
)
_PASSWORD = re.compile(r"(?i)((?:密码|password|passcode|pin)\s*(?:is|是|为|:|：)\s*)(\S+)")
_CVV = re.compile(r"(?i)((?:cvv|cvc|安全码)\s*(?:is|是|为|:|：)?\s*)(\d{3,4})(?!\d)")
_CN_ID = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


@dataclass(frozen=True)
class Redacted:
    text: str
    kinds: list[str]


def redact(text: str) -> Redacted:
    kinds: list[str] = []

    def mark(kind: str, replacement: str):
        def sub(match: re.Match) -> str:
            kinds.append(kind)
            return match.group(1) + replacement if match.re.groups else replacement

        return sub

    def card(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            kinds.append("card_number")
            return "[card number removed]"
        return match.group(0)

    text = _CN_ID.sub(mark("resident_id", "[ID number removed]"), text)
    text = _CARD.sub(card, text)
    text = _CVV.sub(mark("cvv", "[CVV removed]"), text)
    text = _OTP.sub(mark("one_time_code", "[code removed]"), text)
    text = _PASSWORD.sub(mark("password", "[password removed]"), text)
    return Redacted(text=text, kinds=sorted(set(kinds)))
