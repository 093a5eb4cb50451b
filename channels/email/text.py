"""Mail bodies to plain text: HTML without markup or scripts, the new text apart from the quoted
history and the signature, so the classifier reads what the customer wrote this time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

# Elements whose content is never text a person reads; <script> and <style> are dropped whole.
_SKIP = {
    "script",
    "style",
    "head",
    "title",
    "template",
    "noscript",
    "svg",
    "math",
    "object",
    "iframe",
}
_BLOCK = {
    "p",
    "div",
    "br",
    "tr",
    "li",
    "ul",
    "ol",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "dl",
    "dt",
    "dd",
}
# What is worth a log line when removed: active content has no place in a customer's mail.
_ACTIVE = {"script", "iframe", "object", "embed"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.quote_depth = 0
        self.removed: set[str] = set()

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP or tag == "embed":
            if tag in _ACTIVE:
                self.removed.add(tag)
            if tag in _SKIP:
                self.skipping += 1
            return
        if any(name.startswith("on") for name, _ in attrs):
            self.removed.add("event_handler")
        if tag == "blockquote":
            self.quote_depth += 1
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
            return
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.quote_depth:
            # A <blockquote> is the mail client's quoted history: mark it as a plain-text
            # client would, so the quote splitter treats both alike.
            segments = data.split("\n")
            at_line_start = not self.out or self.out[-1].endswith("\n")
            data = "\n".join(
                "> " + seg if seg.strip() and (i > 0 or at_line_start) else seg
                for i, seg in enumerate(segments)
            )
        if data:
            self.out.append(data)


@dataclass(frozen=True)
class HtmlText:
    text: str
    removed: frozenset[str]  # what was taken out: script, style, event_handler ...


def html_to_text(html: str) -> HtmlText:
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; anything it still chokes on ends the text here
        parser.removed.add("unparseable_html")
    return HtmlText(tidy("".join(parser.out)), frozenset(parser.removed))


_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def tidy(text: str) -> str:
    """Normalize line ends, drop control and bidi-override characters, collapse blank runs."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


# Where quoted history starts: attribution lines and separators of common clients, zh and en.
_ATTRIBUTION = [
    re.compile(r"^on\b.{0,300}\bwrote:?$", re.I),
    re.compile(r"^在.{0,300}(写道|寫道)[:：]?$"),
    re.compile(r"^.{0,300}\d{4}年\d{1,2}月\d{1,2}日.{0,200}(写道|寫道)[:：]?$"),
    re.compile(r"^-{2,}\s*(original message|原始邮件|原始郵件|回复的原邮件)\s*-{2,}$", re.I),
    re.compile(r"^_{10,}$"),  # Outlook's rule above the quoted header block
]
_HEADER_BLOCK = re.compile(r"^(from|发件人|寄件者)\s*[:：].+$", re.I)
_HEADER_BLOCK_NEXT = ("sent:", "date:", "to:", "subject:", "发送时间", "收件人", "日期", "主题")
_FORWARD = re.compile(r"^-{2,}\s*(forwarded message|转发邮件|轉寄郵件)\s*-{2,}$", re.I)
_SIGNATURE = re.compile(r"^--\s?$")
_MOBILE_SIGNATURE = re.compile(
    r"^(sent from my \w+|get outlook for \w+|发自我的\s*\S+|从我的\s*\S+\s*发送|來自我的\s*\S+)$",
    re.I,
)


@dataclass(frozen=True)
class Reply:
    new: str  # what the customer wrote this time
    quoted: str  # history and signature, kept for the agent


def split_reply(text: str) -> Reply:
    """Separate the new text from quoted history and signature.

    Cut at the first attribution line ("On ... wrote:", "在 ... 写道：", an Outlook header
    block); above it, lines quoted with ">" are history too; the signature after "-- " goes with
    the history. A forwarded message is content, not history. When nothing new is left (a bare
    forward, a quote-only mail), the whole text is the new text, so nothing goes unclassified.
    """
    lines = text.split("\n")
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
    top, history = lines[:cut], lines[cut:]
    new_lines = [line for line in top if not line.lstrip().startswith(">")]
    quoted_lines = [line for line in top if line.lstrip().startswith(">")]
    signature: list[str] = []
    for i, line in enumerate(new_lines):
        if _SIGNATURE.match(line) or _MOBILE_SIGNATURE.match(line.strip()):
            new_lines, signature = new_lines[:i], new_lines[i:]
            break
    new = tidy("\n".join(new_lines))
    if not new:
        return Reply(new=tidy(text), quoted="")
    return Reply(new=new, quoted=tidy("\n".join(quoted_lines + signature + history)))


def _starts_history(line: str, following: list[str]) -> bool:
    if any(pattern.match(line) for pattern in _ATTRIBUTION):
        return True
    # Clients wrap a long attribution: "On Mon, 3 Nov 2026 at 10:00, Support <" / "s@x> wrote:".
    if (
        following
        and line.lower().startswith("on ")
        and _ATTRIBUTION[0].match(f"{line} {following[0].strip()}")
    ):
        return True
    # "From: ..." opens a quoted header block only when "Sent:"/"To:" follow, as Outlook
    # writes it; a customer's own "From: my bank" line is not history.
    if _HEADER_BLOCK.match(line):
        return any(key in " ".join(following).lower() for key in _HEADER_BLOCK_NEXT)
    return False
