"""What the classifier reads: the customer's new words, normalized the same way for rules and model.

An email reply carries the whole thread below it and a signature; a voice transcript carries
fillers and stutters; a Chinese transcript has spaces between words. None of that is evidence
of what the customer needs now, so it is removed before any rule or model looks at the text.

Chinese is read in one script: Traditional text is converted to Simplified with OpenCC (Taiwan
phrasing too: 簡訊 is 短信, 登入 is 登录), and a few Hong Kong and Cantonese words are read as
their Mandarin forms (冇 is 没有, 咗 is 了), so a rule or an example written once in Simplified
holds for a customer in Taipei or Hong Kong. Only the classifier's view changes: the stored text
keeps the customer's own script.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import opencc

from router.classify.fastre import compile_fast
from router.classify.quotes import split_lines

# A closing word alone on its line, followed by a few short lines (a name, a phone): a signature.
_SIGN_OFF = re.compile(
    r"^\s*(?:thanks?(?: you)?(?: so much| very much| again| in advance)?|many thanks|cheers|"
    r"(?:best|kind|warm)?\s*regards|best(?: wishes)?|sincerely|yours(?: sincerely| truly| faithfully)?|"
    r"thx|ty|谢谢(?:你们|您)?|多谢|感谢(?:您|你们)?|此致|敬礼|祝好|顺祝商祺)\s*[,，.。!！~]*\s*$",
    re.I,
)
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|回复|答复|转发)\s*[:：]\s*)+", re.I)

# Han characters (CJK Unified Ideographs and Extension A): the one definition the classifier uses.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff"
CJK = re.compile(f"[{_CJK}]")
_CJK_GAP = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
# These run on lower-cased text, so without re.I (which doubles the engine's work);
# compile_fast's lookahead and the possessive \w++ let the engine give up at once where no filler
# or repeat can start.
_EN_FILLERS = compile_fast(r"\b(?:um+|uh+|erm+|er|ah+|hmm+|mm+|uh-huh)\b[,.]?\s*")
_ZH_FILLERS = re.compile(r"[嗯呃唔]+|^\s*喂[，,\s]*")
_REPEAT_WORD = re.compile(r"\b(\w++)(?:\s+\1\b)+")
# A stutter in a transcript is a word said twice with a pause: "我 我", "转了 转了一共".
_STUTTER_CJK = re.compile(rf"([{_CJK}]{{1,4}})(?:\s+\1)+")
_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "`": "'"})
_CURLY_QUOTE = re.compile("[’‘“”`]")  # the quotes to straighten
_DIGITS = re.compile(r"\d")
_ASCII_DIGITS = re.compile(r"[0-9]")

# Words of Hong Kong, Taiwan and Cantonese writing that OpenCC leaves as they are, and the
# Mandarin a rule is written in. Only words that mean nothing else in Simplified text: 户口 (a
# bank account in Hong Kong, the household register on the mainland) is left alone.
_REGIONAL = {
    "帐": "账",
    "身分证": "身份证",
    "著急": "着急",
    "身分": "身份",
    "冇": "没有",
    "咗": "了",
    "嘅": "的",
    "喺": "在",
    "佢哋": "他们",
    "我哋": "我们",
    "你哋": "你们",
    "佢": "他",
    "畀": "给",
    "俾人": "被人",  # "俾人搶咗": robbed by someone
    "啱啱": "刚刚",
    "乜嘢": "什么",
    "咩": "什么",
    "嘢": "东西",
    "啲": "些",
    "嚟": "来",
    "搵": "找",
    "揾": "找",
    "睇": "看",
    "攞": "拿",
    "琴日": "昨天",
    "唔该": "麻烦",
    "唔系": "不是",
    "系唔系": "是不是",
    "电邮": "邮件",
    "私隐": "隐私",
}
# Cantonese words that the end of one Mandarin word and the start of the next can spell (重点解决,
# 输入数字, 超过数额): read only in a text written in Cantonese, one with a word only Cantonese has.
_CANTONESE_PHRASES = {
    "点解": "为什么",
    "点样": "怎么",
    "边个": "谁",
    "而家": "现在",
    "入数": "转账",
    "过数": "转账",
    # 呃 is "to cheat" before a person or money, not the filler it is elsewhere.
    "呃人": "骗人",
    "呃钱": "骗钱",
    "呃了": "骗了",
    "呃咗": "骗了",
}
_CANTONESE_ONLY = re.compile("[冇咗嘅喺佢哋嘢啲嚟搵揾睇攞畀咩唔]|系唔系")
# A transcript puts a space between the characters ("呃 人"): allowed inside a phrase.
_CANTONESE_PHRASE = re.compile("|".join(r"\s?".join(phrase) for phrase in _CANTONESE_PHRASES))
_REGIONAL_FIRST = re.compile(f"[{''.join(sorted({word[0] for word in _REGIONAL}))}]")
_REGIONAL_WORD = re.compile("|".join(sorted(map(re.escape, _REGIONAL), key=len, reverse=True)))
# Cantonese 唔 is "not" before a verb ("唔记得", "唔系我"); alone it is a filler, dropped below.
_CANTONESE_NOT = re.compile(r"唔(?=\s?[系是知见记到可得识会明好使想能要够需用对啱准肯理])")


@functools.cache
def _converters() -> tuple[opencc.OpenCC, opencc.OpenCC]:
    # Loading a dictionary takes milliseconds; one converter of each kind serves every message.
    return opencc.OpenCC("t2s"), opencc.OpenCC("tw2sp")


@functools.cache
def traditional_characters() -> dict[int, str]:
    """Each Han character that OpenCC's t2s writes as one other character, for `str.translate`:
    one character to one, so a match in the translated text is at the same place in the original
    (redaction finds its cues this way). Built once, in about a quarter of a second."""
    chars = [chr(cp) for cp in range(0x3400, 0xA000)]
    converted = _converters()[0].convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):  # a phrase across lines: convert one by one instead
        converted = [_converters()[0].convert(ch) for ch in chars]
    return {
        ord(ch): out
        for ch, out in zip(chars, converted, strict=True)
        if out != ch and len(out) == 1
    }


@functools.cache
def _traditional() -> re.Pattern[str]:
    return re.compile(f"[{''.join(map(chr, traditional_characters()))}]")


def has_traditional(text: str) -> bool:
    """Whether a Han character in the text is written differently in Simplified."""
    return _traditional().search(text) is not None


@functools.cache
def _to_traditional() -> opencc.OpenCC:
    return opencc.OpenCC("s2t")


def in_script_of(reply: str, customer_text: str) -> str:
    """A Chinese reply in the script the customer wrote: Traditional characters for a customer
    who wrote Traditional (Hong Kong, Taiwan), as it was (Simplified) for everyone else."""
    return _to_traditional().convert(reply) if has_traditional(customer_text) else reply


def to_simplified(text: str) -> str:
    """Chinese in Simplified characters and mainland words; Simplified text comes back as it was.

    Only a text with a Traditional character goes through OpenCC, with Taiwan's phrasing (tw2sp):
    that table would also rewrite Simplified words that mean something else on the mainland
    (程序, 文件), and most messages need no conversion, so a character class decides first."""
    if _traditional().search(text):
        text = _converters()[1].convert(text)
    if _CANTONESE_ONLY.search(text):
        text = _CANTONESE_PHRASE.sub(
            lambda m: _CANTONESE_PHRASES["".join(m.group(0).split())], text
        )
    if _REGIONAL_FIRST.search(text):
        text = _REGIONAL_WORD.sub(lambda m: _REGIONAL[m.group(0)], text)
    return _CANTONESE_NOT.sub("不", text) if "唔" in text else text


def new_text(text: str) -> str:
    """The part of a message the customer just wrote: no quoted thread, no signature."""
    if "\n" not in text and "\r" not in text:
        # One line (SMS, chat, a transcript): nothing is quoted unless the line itself is.
        stripped = text.strip()
        return stripped[1:].strip() if stripped.startswith(">") else stripped
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept, _ = split_lines(lines)
    kept = _drop_sign_off(kept)
    body = "\n".join(kept).strip()
    return body or text.strip()


def _drop_sign_off(lines: list[str]) -> list[str]:
    """Cut a closing ("Thanks,", "谢谢") and the short name lines under it, near the end only."""
    content = [i for i, line in enumerate(lines) if line.strip()]
    for i in reversed(content[1:]):
        if _SIGN_OFF.match(lines[i]):
            tail = [line for line in lines[i + 1 :] if line.strip()]
            if len(tail) <= 4 and all(len(line.strip()) <= 40 for line in tail):
                return lines[:i]
            return lines
    # No closing word: a lone short last line (a name such as "许女士" or "R. Patel") after a
    # blank line is a signature too.
    if len(content) >= 2:
        last = content[-1]
        if (
            last - 1 >= 0
            and not lines[last - 1].strip()
            and len(lines[last].strip()) <= 24
            and not re.search(r"[?？!！。.,，:：]\s*$", lines[last].strip())
            and len(lines[last].split()) <= 3
        ):
            return lines[:last]
    return lines


def subject_text(subject: str | None) -> str:
    return _SUBJECT_PREFIX.sub("", subject or "").strip()


def normalize(text: str) -> str:
    """Lower case, half-width, Simplified Chinese, no fillers or stutters, no spaces between
    Chinese words."""
    text = unicodedata.normalize("NFKC", text).lower()
    chinese = CJK.search(text) is not None
    if chinese:
        text = to_simplified(text)
    if ("`" in text or not text.isascii()) and _CURLY_QUOTE.search(text):  # translate is slow
        text = text.translate(_QUOTES)
    text = _EN_FILLERS.sub("", text)
    if chinese:
        text = _ZH_FILLERS.sub(" ", text)
    text = " ".join(text.split())
    if " " not in text:  # the rest needs a space (the only whitespace left): a Chinese chat line
        return text
    if chinese:
        text = _STUTTER_CJK.sub(r"\1", text)
    text = _REPEAT_WORD.sub(r"\1", text)
    if chinese:
        text = _CJK_GAP.sub("", text)
    return text


def for_model(normalized: str) -> str:
    """Digits say little about the problem and everything about one customer: fold them."""
    # In ASCII text \d is [0-9], a range the regex engine checks without a Unicode lookup.
    return (_ASCII_DIGITS if normalized.isascii() else _DIGITS).sub("0", normalized)


def prepare(text: str, subject: str | None = None) -> str:
    """Subject line (reply prefixes removed) and new text, normalized: what rules and model read."""
    return prepare_with_source(text, subject)[0]


def prepare_with_source(text: str, subject: str | None = None) -> tuple[str, str]:
    """What `prepare` returns, and the same subject line and new text as the customer wrote them."""
    body = new_text(text)
    subject = subject_text(subject)
    source = f"{subject}\n{body}" if subject else body
    return normalize(source), source


_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> str:
    """zh when Chinese carries the message (a Chinese character says about as much as a word)."""
    if text.isascii():  # no Chinese character can be in it; isascii is a flag lookup
        return "en"
    cjk = CJK.subn("", text)[1]  # counts without building a list of every character
    if not cjk:
        return "en"
    return "zh" if cjk * 4 >= _LATIN.subn("", text)[1] else "en"
