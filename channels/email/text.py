"""Mail bodies to plain text: HTML without markup or scripts, the new text apart from the quoted
history and the signature, so the classifier reads what the customer wrote this time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from router.classify.quotes import split_lines

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


@dataclass(frozen=True)
class Reply:
    new: str  # what the customer wrote this time
    quoted: str  # history and signature, kept for the agent


def split_reply(text: str) -> Reply:
    """Separate the new text from quoted history and signature (router/classify/quotes.py).

    When nothing new is left (a bare forward, a quote-only mail), the whole text is the new text,
    so nothing goes unclassified.
    """
    new_lines, quoted_lines = split_lines(text.split("\n"))
    new = tidy("\n".join(new_lines))
    if not new:
        return Reply(new=tidy(text), quoted="")
    return Reply(new=new, quoted=tidy("\n".join(quoted_lines)))
