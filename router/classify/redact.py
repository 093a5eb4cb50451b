"""Masking of secrets at the gateway, before anything reaches Kafka, the store or a log line.

Kinds masked: one-time codes, passwords and PINs, card numbers (Luhn-checked), CVVs and
Chinese resident ID numbers (18 digits, and the 15 of the first generation). Each pattern needs
a cue (a keyword, a checksum, a date inside an ID) so amounts, phone numbers and order numbers
stay readable for the agent. Full-width digits and letters are matched as their ASCII forms
(NFKC), and Traditional Chinese as Simplified (驗證碼 as 验证码, 密碼係 as 密码系: OpenCC's
character table, one character for one), while the text outside a mask is kept as it was typed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from router.classify.fastre import compile_fast
from router.classify.textprep import traditional_characters

ONE_TIME_CODE = "one_time_code"
PASSWORD = "password"
CARD_NUMBER = "card_number"
CVV = "cvv"
RESIDENT_ID = "resident_id"
KINDS = (ONE_TIME_CODE, PASSWORD, CARD_NUMBER, CVV, RESIDENT_ID)

_MASKS = {
    ONE_TIME_CODE: "[code removed]",
    PASSWORD: "[password removed]",
    CARD_NUMBER: "[card number removed]",
    CVV: "[CVV removed]",
    RESIDENT_ID: "[ID number removed]",
}

_SPELLED_EN = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_SPELLED_ZH = r"[零〇一二三四五六七八九幺两]"
_DIGIT_RUN = r"\d(?:[ -]?\d){3,7}(?![\d.,]?\d)"

_RESIDENT_ID = compile_fast(
    r"(?<![\dA-Za-z])(\d{6})\s?((?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))\s?(\d{3}[\dXx])(?![\dA-Za-z])"
)
# First generation: area, YYMMDD, sequence; no check digit, so the area must be a province's.
_RESIDENT_ID_15 = compile_fast(
    r"(?<![\dA-Za-z])(\d{6})\s?(\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))\s?(\d{3})(?![\dA-Za-z])"
)
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82".split()
)
_ID_NAMED = re.compile(r"身份证|身分证|证件|\bid\b|identity", re.I)
# Digits glued to letters (TX2026110100123, an order number) are an id, not a card: a long
# transaction number passes the Luhn check one time in ten. Groups may be split by a space, -, .,
# /, _ or a line break; a run of groups is checked window by window (card_windows), so a card
# next to an amount ("... 1111.50") or after another number is still found.
_CARD_SEPARATOR = r"(?:[ ._/-]|[ \t]*\r?\n[ \t]*)"
# Bounded, so a long run of digits followed by a "-" costs a few hundred steps per start, not
# the length of the run; a longer run is taken in pieces.
_CARD = compile_fast(rf"(?<![\dA-Za-z-])(?:\d{_CARD_SEPARATOR}?){{12,200}}\d(?![\d-])")
_CARD_GROUP = re.compile(r"\d+")
_CVV = re.compile(
    r"(?i)((?:cvv2?|cvc2?|cvn|card security code|security code on the back|安全码|卡背面?(?:的)?(?:三位|3位|三个|3个)(?:数字|数|码)?|"
    r"背面(?:的)?(?:三位|3位|三个|3个)(?:数字|数|码|字)?)\s*(?:is|was|是|为|系|=|:|：|-)?\s*(?:number\s*)?)(\d{3,4})(?!\d)"
)
_AFTER_CARD_CVV = compile_fast(
    r"(\[card number removed\][^\d\n]{0,12}?(?:exp\w*\s*\d{1,2}\s*/\s*\d{2,4}\s*)?)(\d{3,4})(?!\d)"
)
_OTP_WORDS = (
    r"验证码|校验码|动态码|动态密码|短信码|短讯码|认证码|确认码|授权码|激活码|"
    r"otp|one[- ]?time (?:pass)?code|one[- ]?time password|one[- ]?time pin|passcode sent|"
    r"verification code|confirmation code|security code|auth(?:entication|orization)? code|"
    r"sms code|text code|login code|2fa code|access code|code"
)
_OTP = re.compile(
    rf"(?i)((?:{_OTP_WORDS})(?:[^\d.。!?！？\n¥$€£]{{0,24}}?)(?:is|was|是|为|系|:|：|=|#|-|\s)\s*)"
    rf"({_DIGIT_RUN}|(?:{_SPELLED_EN}[ ,-]*){{4,8}}|{_SPELLED_ZH}{{4,8}})"
)
_OTP_TIGHT = re.compile(rf"(?i)((?:{_OTP_WORDS}))({_DIGIT_RUN})")
_OTP_BEFORE = re.compile(
    rf"(?i)(?<![\d.])({_DIGIT_RUN})(\s*(?:is|was|是|就是|系|就系)\s*(?:my|the|your|我的|那个|这个|呢个)?\s*(?:{_OTP_WORDS}))"
)
_NOT_A_CODE_BEFORE = re.compile(
    r"(?i)(?:error|err|错误|返回|reason|promo|discount|coupon|zip|post(?:al)?|area|country|swift|sort|"
    r"bank|branch|优惠|邀请|推荐|区号|邮编)\s*$"
)
_NOT_A_CODE_AFTER = re.compile(
    r"(?i)^\s*(?:元|块|yuan|dollars?|pounds?|euros?|rmb|cny|usd|gbp|eur|%|percent|次|times|分钟|minutes?|mins?|"
    r"hours?|小时|秒|seconds?|位|digits?|characters?|号|年|月|日|蚊|个字)"
)
_PASSWORD = re.compile(
    r"(?i)((?:password|passcode|pass word|passwd|pwd|\bpw|登录密码|支付密码|交易密码|密码|口令|"
    r"\bpin(?: code| number|码)?)"
    r"(?:\s*(?:is|was|is still|=|:|：|是|为|系(?![统列])|改成了?|改为|设置成|设成|设的是|set to|changed to|-)\s*|\s+|(?=[A-Za-z0-9])))"
    r"([^\s，。；！？、）]+)"
)
_PASSWORD_SEPARATOR = re.compile(
    r"(?i)(?:is|was|=|:|：|是|为|系|改成了?|改为|设置成|设成|设的是|set to|changed to|-)\s*$"
)
_NOT_A_PASSWORD = re.compile(
    r"(?i)^(?:(?:not|no|wrong|incorrect|correct|right|invalid|expired|blocked|locked|too|the|my|a|an|still|being|"
    r"working|reset|changed|forgotten|forgot|lost|required|needed|needs?|must|should|and|or|for|to|of|on|in|at|"
    r"with|that|this|it|which|rejected|accepted|never|same|different|weak|strong|greyed|gone|when|if|but|"
    r"so|because|isn't|doesn't|won't|can't|only|just|also|has|had|have|will|would|reset|expired)\b"
    r"|多少|什么|啥|乜|咩|点|不|唔|没|冇|错|对|忘|正确|几位|怎么|要|必须|需要|默认|一直|老是|总是|还|也|都|被|已|就|又|输|的|了|吗|呢|吧|"
    r"\[)"
)
# Literal cues, one of which is in any text the pattern after them can match (compared with the
# text case-folded, as the patterns ignore case): a plain substring test skips a regex that would
# otherwise be tried at every position of every message.
_OTP_CUES = ("码", "otp", "code", "time password", "time pin")
_CVV_CUES = ("cvv", "cvc", "cvn", "code", "安全码", "卡背", "背面")
_PASSWORD_CUES = ("pass", "pw", "密码", "口令", "pin")
_CARD_CONTEXT_TOO_SHORT = 13
_ANY_DIGIT = re.compile(r"\d")
_SPELLED_DIGITS = re.compile(rf"(?i){_SPELLED_EN}[ ,-]+{_SPELLED_EN}|{_SPELLED_ZH}{{4}}")


def _any_in(text: str, cues: tuple[str, ...]) -> bool:
    return any(cue in text for cue in cues)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


# Full-width digits, Latin letters and the separators a card or ID is written with, one
# character to one, so a match in the folded text is at the same place in the original.
_FOLD = {cp: unicodedata.normalize("NFKC", chr(cp)) for cp in range(0xFF10, 0xFF1A)}
_FOLD.update({cp: unicodedata.normalize("NFKC", chr(cp)) for cp in range(0xFF21, 0xFF3B)})
_FOLD.update({cp: unicodedata.normalize("NFKC", chr(cp)) for cp in range(0xFF41, 0xFF5B)})
_FOLD.update({0xFF0D: "-", 0xFF0E: ".", 0xFF0F: "/", 0xFF3F: "_", 0x3000: " "})
# Cantonese words the cues are written around, as Mandarin: "我嘅密碼係 ...".
_CANTONESE = {ord("嘅"): "的"}


@functools.cache
def _fold_table() -> dict[int, str]:
    return {**traditional_characters(), **_CANTONESE, **_FOLD}


def _resident_id_ok(number: str) -> bool:
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == number[17].upper()


@dataclass(frozen=True)
class Redacted:
    text: str
    kinds: list[str]


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def card_windows(run: str) -> list[tuple[int, int]]:
    """The spans of whole digit groups in `run` that are card numbers (13 to 19 digits, Luhn),
    as (start, end) offsets: from the left, the longest window starting at each group.

    The Luhn sum of a window is kept as it grows (a digit's weight depends on its place from
    the right, so both weightings are summed and the length picks one): a run of 20,000
    characters costs a few hundred thousand additions, not a check per window."""
    groups = [(m.start(), m.end()) for m in _CARD_GROUP.finditer(run)]
    found: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        # [plain, doubled] sums of the digits at even and at odd places from the left.
        even, odd, count, last = [0, 0], [0, 0], 0, -1
        for j in range(i, len(groups)):
            for ch in run[groups[j][0] : groups[j][1]]:
                d = ord(ch) - 48
                if not 0 <= d <= 9:  # another script's digit: `\d` takes those too
                    d = int(ch)
                sums = odd if count % 2 else even
                sums[0] += d
                sums[1] += _DOUBLED[d]
                count += 1
            if count > 19:
                break
            # The last digit is plain; so is every digit an even distance from it.
            total = even[0] + odd[1] if (count - 1) % 2 == 0 else even[1] + odd[0]
            if count >= _CARD_CONTEXT_TOO_SHORT and total % 10 == 0:
                last = j
        if last < 0:
            i += 1
            continue
        found.append((groups[i][0], groups[last][1]))
        i = last + 1
    return found


_ANY_MASK = re.compile("|".join(re.escape(m) for m in _MASKS.values()))


def _restore(original: str, folded: str, result: str) -> str:
    """`result` (the folded text, redacted) with the text around each mask as it was typed.

    Everything in `result` but the masks is a piece of `folded`, in order; folding maps one
    character to one, so a piece found at `folded[i:j]` was typed as `original[i:j]`."""
    out: list[str] = []
    cursor = 0
    pieces = _ANY_MASK.split(result)
    masks = _ANY_MASK.findall(result)
    for n, piece in enumerate(pieces):
        at = len(folded) - len(piece) if n == len(pieces) - 1 else folded.find(piece, cursor)
        if piece and 0 <= at and folded[at : at + len(piece)] == piece:
            out.append(original[at : at + len(piece)])
            cursor = at + len(piece)
        else:
            out.append(piece)
        if n < len(masks):
            out.append(masks[n])
    return "".join(out)


def redact(text: str) -> Redacted:
    """The text with every secret replaced by a marker, and the kinds that were masked."""
    folded = text.translate(_fold_table())
    if folded == text:
        return _redact(text)
    found = _redact(folded)
    if found.text == folded:
        return Redacted(text=text, kinds=found.kinds)
    return Redacted(text=_restore(text, folded, found.text), kinds=found.kinds)


def _redact(text: str) -> Redacted:
    kinds: set[str] = set()

    def resident_id(match: re.Match) -> str:
        number = "".join(match.groups())
        # A checksum that fits, or an ID the customer names as one: mask either way.
        named = _ID_NAMED.search(match.string[max(0, match.start() - 16) : match.start()])
        if _resident_id_ok(number) or named:
            kinds.add(RESIDENT_ID)
            return _MASKS[RESIDENT_ID]
        return match.group(0)

    def resident_id_15(match: re.Match) -> str:
        named = _ID_NAMED.search(match.string[max(0, match.start() - 16) : match.start()])
        if match.group(1)[:2] in _PROVINCES or named:
            kinds.add(RESIDENT_ID)
            return _MASKS[RESIDENT_ID]
        return match.group(0)

    def card(match: re.Match) -> str:
        run = match.group(0)
        windows = card_windows(run)
        if not windows:
            return run
        kinds.add(CARD_NUMBER)
        out, at = [], 0
        for start, end in windows:
            out += [run[at:start], _MASKS[CARD_NUMBER]]
            at = end
        return "".join([*out, run[at:]])

    def keep_cue(kind: str):
        def sub(match: re.Match) -> str:
            kinds.add(kind)
            return match.group(1) + _MASKS[kind]

        return sub

    def code(match: re.Match) -> str:
        before = match.string[: match.start()][-12:]
        if _NOT_A_CODE_BEFORE.search(before) or _NOT_A_CODE_AFTER.match(
            match.string[match.end() :]
        ):
            return match.group(0)
        kinds.add(ONE_TIME_CODE)
        return match.group(1) + _MASKS[ONE_TIME_CODE]

    def code_before(match: re.Match) -> str:
        if _NOT_A_CODE_BEFORE.search(match.string[: match.start()][-12:]):
            return match.group(0)
        kinds.add(ONE_TIME_CODE)
        return _MASKS[ONE_TIME_CODE] + match.group(2)

    def password(match: re.Match) -> str:
        cue, value = match.group(1), match.group(2)
        explicit = bool(_PASSWORD_SEPARATOR.search(cue))
        after = match.string[match.end() :]
        if _NOT_A_PASSWORD.match(value) or _NOT_A_CODE_AFTER.match(after):
            return match.group(0)
        if re.fullmatch(r"\d{1,2}", value) or re.match(r"^\d+(?:位|个|次)", value):
            return match.group(0)
        if not explicit and not (re.search(r"\d", value) and len(value) >= 4):
            return match.group(0)
        kinds.add(PASSWORD)
        return cue + _MASKS[PASSWORD]

    folded = text.casefold()
    otp_cue = _any_in(folded, _OTP_CUES)
    # Most messages carry no digits; then only spelled-out codes and passwords can be in them.
    if _ANY_DIGIT.search(text):
        text = _RESIDENT_ID.sub(resident_id, text)
        text = _RESIDENT_ID_15.sub(resident_id_15, text)
        text = _CARD.sub(card, text)
        if _any_in(folded, _CVV_CUES):
            text = _CVV.sub(keep_cue(CVV), text)
        if _MASKS[CARD_NUMBER] in text:
            text = _AFTER_CARD_CVV.sub(keep_cue(CVV), text)
        if otp_cue:
            text = _OTP.sub(code, text)
            text = _OTP_TIGHT.sub(code, text)
            text = _OTP_BEFORE.sub(code_before, text)
    elif otp_cue and _SPELLED_DIGITS.search(text):
        text = _OTP.sub(code, text)
    if _any_in(folded, _PASSWORD_CUES):
        text = _PASSWORD.sub(password, text)
    return Redacted(text=text, kinds=sorted(kinds))
