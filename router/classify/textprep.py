"""What the classifier reads: the customer's new words, normalized the same way for rules and model.

An email reply carries the whole thread below it and a signature; a voice transcript carries
fillers and stutters; a Chinese transcript has spaces between words. None of that is evidence
of what the customer needs now, so it is removed before any rule or model looks at the text.
"""

from __future__ import annotations

import re
import unicodedata

from router.classify.fastre import compile_fast

# Where quoted history starts: everything from this line down is someone else's older text.
_HISTORY_START = re.compile(
    r"""^\s*(?:
        -{2,}\s*(?:original\s+message|原始邮件|原邮件)\s*-{2,}
      | _{8,}
      | (?:from|发件人)\s*[:：].{0,200}$
      | on\s.{0,200}\bwrote\s*[:：]?\s*$
      | (?:在|于).{0,120}写道\s*[:：]?\s*$
      | .{0,120}\d{4}.{0,60}写道\s*[:：]?\s*$
    )""",
    re.I | re.X,
)
# "On Tue, 3 Sep 2024 at 09:12, Wallet Support <help@example.com>" with "wrote:" on the next line.
_ON_LINE = re.compile(r"^\s*on\s.{0,200}$", re.I)
_WROTE_LINE = re.compile(r"^\s*.{0,80}\bwrote\s*:\s*$", re.I)
_QUOTED = re.compile(r"^\s*>")
_SIG_DASHES = re.compile(r"^\s*--\s*$")
_DEVICE_FOOTER = re.compile(
    r"^\s*(?:sent from my \w+.*|get outlook for .*|发自我的\s*\S+.*|来自\s*\S+\s*客户端.*|sent via .*)$",
    re.I,
)
# A closing word alone on its line, followed by a few short lines (a name, a phone): a signature.
_SIGN_OFF = re.compile(
    r"^\s*(?:thanks?(?: you)?(?: so much| very much| again| in advance)?|many thanks|cheers|"
    r"(?:best|kind|warm)?\s*regards|best(?: wishes)?|sincerely|yours(?: sincerely| truly| faithfully)?|"
    r"thx|ty|谢谢(?:你们|您)?|多谢|感谢(?:您|你们)?|此致|敬礼|祝好|顺祝商祺)\s*[,，.。!！~]*\s*$",
    re.I,
)
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|回复|答复|转发)\s*[:：]\s*)+", re.I)

_CJK = "\u3400-\u4dbf\u4e00-\u9fff"
_HAS_CJK = re.compile(f"[{_CJK}]")
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
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _HISTORY_START.match(line) and (kept or i > 0):
            break
        if _ON_LINE.match(line) and i + 1 < len(lines) and _WROTE_LINE.match(lines[i + 1]) and kept:
            break
        if _SIG_DASHES.match(line) and kept:
            break
        if _QUOTED.match(line) or _DEVICE_FOOTER.match(line):
            continue
        kept.append(line)
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
    chinese = _HAS_CJK.search(text) is not None
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
