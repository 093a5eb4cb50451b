"""What the classifier reads: the customer's new words, normalized the same way for rules and model.

An email reply carries the whole thread below it and a signature; a voice transcript carries
fillers and stutters; a Chinese transcript has spaces between words. None of that is evidence
of what the customer needs now, so it is removed before any rule or model looks at the text.
"""

from __future__ import annotations

import re
import unicodedata

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
_DIGITS = re.compile(r"\d")


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
    """Lower case, half-width, no fillers or stutters, no spaces between Chinese words."""
    text = unicodedata.normalize("NFKC", text).lower()
    if (
        "`" in text or not text.isascii()
    ):  # the quotes to straighten; translate is slow, so ask first
        text = text.translate(_QUOTES)
    chinese = CJK.search(text) is not None
    text = _EN_FILLERS.sub("", text)
    if chinese:
        text = _ZH_FILLERS.sub(" ", text)
    text = " ".join(text.split())
    if chinese:
        text = _STUTTER_CJK.sub(r"\1", text)
    text = _REPEAT_WORD.sub(r"\1", text)
    if chinese:
        text = _CJK_GAP.sub("", text)
    return text


def for_model(normalized: str) -> str:
    """Digits say little about the problem and everything about one customer: fold them."""
    return _DIGITS.sub("0", normalized)


def prepare(text: str, subject: str | None = None) -> str:
    """Subject line (reply prefixes removed) and new text, normalized: what rules and model read."""
    return prepare_with_source(text, subject)[0]


def prepare_with_source(text: str, subject: str | None = None) -> tuple[str, str]:
    """What `prepare` returns, and the same subject line and new text as the customer wrote them."""
    body = new_text(text)
    subject = subject_text(subject)
    source = f"{subject}\n{body}" if subject else body
    return normalize(source), source
