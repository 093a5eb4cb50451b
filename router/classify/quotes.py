"""Where the new text of a reply ends: quoted history, attribution lines, signatures, zh and en.

The one splitter: the classifier reads the new lines (router/classify/textprep.py), the email
channel keeps the rest for the agent (channels/email/text.py). It is strict about what it cuts:
a "From:" line opens history only as the head of a header block (Sent:/To: after it), and a
forwarded message is content; a customer's own "From: my bank ..." stays what they wrote.
"""

from __future__ import annotations

import re

# Where quoted history starts: attribution lines and separators of common clients.
_ATTRIBUTION = re.compile(
    r"^on\b.{0,300}\bwrote\s*[:：]?$"
    r"|^-{2,}\s*(original message|原始邮件|原始郵件|原邮件|回复的原邮件)\s*-{2,}$"
    r"|^_{10,}$",  # Outlook's rule above the quoted header block
    re.I,
)
_WROTE_EN = re.compile(r"^on\b.{0,300}\bwrote\s*[:：]?$", re.I)
# Chinese clients' attributions all end in 写道 (寫道): the regexes, which try every length of
# `.{0,300}`, run only on a line that holds the word.
_WROTE_ZH = ("写道", "寫道")
_ATTRIBUTION_ZH = [
    re.compile(r"^(在|于).{0,300}(写道|寫道)\s*[:：]?$"),
    re.compile(r"^.{0,300}\d{4}年\d{1,2}月\d{1,2}日.{0,200}(写道|寫道)\s*[:：]?$"),
    re.compile(r"^.{0,120}\d{4}.{0,60}(写道|寫道)\s*[:：]?$"),
]
_HEADER_BLOCK = re.compile(r"^(from|发件人|寄件者)\s*[:：].+$", re.I)
_HEADER_BLOCK_NEXT = ("sent:", "date:", "to:", "subject:", "发送时间", "收件人", "日期", "主题")
_FORWARD = re.compile(r"^-{2,}\s*(forwarded message|转发邮件|轉寄郵件)\s*-{2,}$", re.I)
_SIGNATURE = re.compile(r"^--\s?$")
_MOBILE_SIGNATURE = re.compile(
    r"^(sent from my \w+|get outlook for \w+|发自我的\s*\S+|从我的\s*\S+\s*发送|來自我的\s*\S+"
    r"|来自\s*\S+\s*客户端)$",
    re.I,
)


def split_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    """The lines written this time, and the rest: lines quoted with ">", signature, history.

    Cut at the first attribution line ("On ... wrote:", "在 ... 写道：", an Outlook header
    block); above it, lines quoted with ">" are history too; the signature after "-- " (or a
    phone's "Sent from my iPhone") goes with the history. A forwarded message is content.
    """
    cut = len(lines)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(">"):
            continue
        if _FORWARD.match(stripped):
            break
        if _starts_history(stripped, lines[i + 1 : i + 4]):
            cut = i
            break
    history = lines[cut:]
    new: list[str] = []
    quoted: list[str] = []
    for line in lines[:cut]:
        (quoted if line.lstrip().startswith(">") else new).append(line)  # quoted with ">"
    for i, line in enumerate(new):
        stripped = line.strip()
        if _SIGNATURE.match(stripped) or _MOBILE_SIGNATURE.match(stripped):
            return new[:i], quoted + new[i:] + history
    return new, quoted + history


def _starts_history(line: str, following: list[str]) -> bool:
    if _ATTRIBUTION.match(line):
        return True
    if any(word in line for word in _WROTE_ZH) and any(
        pattern.match(line) for pattern in _ATTRIBUTION_ZH
    ):
        return True
    # Clients wrap a long attribution: "On Mon, 3 Nov 2026 at 10:00, Support <" / "s@x> wrote:".
    if (
        following
        and line.lower().startswith("on ")
        and _WROTE_EN.match(f"{line} {following[0].strip()}")
    ):
        return True
    # "From: ..." opens a quoted header block only when "Sent:"/"To:" follow, as Outlook
    # writes it; a customer's own "From: my bank" line is not history.
    if _HEADER_BLOCK.match(line):
        return any(key in " ".join(following).lower() for key in _HEADER_BLOCK_NEXT)
    return False
