"""Raw RFC 5322 bytes → what the router needs of a mail, within bounds, never raising.

The standard library's parser (policy=default) does the MIME work. Around it: a structural
pre-check (a MIME bomb of nested or countless parts is refused before the parser spends minutes
on it), headers read defensively (a header the parser cannot model is read raw), charsets that
Python does not know or that lie decoded by a fallback, HTML reduced to text, and the new text
split from quoted history. Whatever was neutralized is named in `problems` for the log line.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import cast

from channels.email.authresults import from_domain_failed
from channels.email.text import html_to_text, split_reply, tidy
from router.core.channel_settings import ADDRESS
from router.core.envelope import Attachment

_MSGID = re.compile(r"<([^<>\s]{1,998})>")
_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^"\s;]{1,200})', re.I)
_LINE_BREAKS = re.compile(r"[\r\n\t\x00-\x1f\x7f]+")
_NO_REPLY_LOCAL = re.compile(
    r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?)([+-].*)?$", re.I
)
MAX_MESSAGE_ID_CHARS = 200  # the store's channel_message_id column
MAX_REFERENCES = 20
MAX_NAME_CHARS = 200
MAX_SUBJECT_CHARS = 300


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 20_000
    max_quoted_chars: int = 20_000
    max_attachments: int = 20
    max_parts: int = 200
    max_multiparts: int = 25


@dataclass
class ParsedMail:
    message_id: str = ""
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    to: list[str] = field(default_factory=list)
    text: str = ""  # the new text: what the classifier reads
    quoted: str = ""  # quoted history and signature: what the agent may also want
    attachments: list[Attachment] = field(default_factory=list)
    auto_reason: str | None = None  # set: this mail must never get an automatic reply
    from_failed: bool = False  # the receiving server found the From domain's DMARC/DKIM failing
    problems: list[str] = field(default_factory=list)  # what was neutralized, for the log line
    refusal: str | None = None  # set: the mail is refused, with this reason

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this mail answers, nearest first: In-Reply-To, then References newest first."""
        seen: dict[str, None] = {}
        for mid in [*self.in_reply_to, *reversed(self.references)]:
            seen.setdefault(mid, None)
        return list(seen)


def normalize_message_id(value: str) -> str | None:
    """One Message-ID in <...> form, short enough for the store; None when there is none."""
    value = (value or "").strip()
    match = _MSGID.search(value)
    if match:
        mid = f"<{match.group(1)}>"
    elif value and " " not in value and len(value) <= 998:
        mid = f"<{value}>"
    else:
        return None
    if len(mid) > MAX_MESSAGE_ID_CHARS:
        mid = f"<{hashlib.sha256(mid.encode(errors='surrogateescape')).hexdigest()}@long-message-id.invalid>"
    return mid


def message_ids(value: str) -> list[str]:
    return [m for m in (normalize_message_id(f"<{v}>") for v in _MSGID.findall(value or "")) if m]


def clean_line(value: str, limit: int) -> str:
    """A header value safe to show and to reuse: one line, no control characters, bounded."""
    value = value.encode("utf-8", errors="replace").decode("utf-8")  # surrogates from bad bytes
    return _LINE_BREAKS.sub(" ", value).strip()[:limit]


def valid_address(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if value and len(value) <= 254 and ADDRESS.match(value) else None


def parse_mail(
    raw: bytes, limits: Limits = Limits(), envelope_from: str | None = None
) -> ParsedMail:
    """Never raises: a mail that cannot be read comes back with `refusal` set."""
    parsed = ParsedMail()
    try:
        _parse(raw, limits, envelope_from, parsed)
    except RecursionError:
        parsed.refusal = "MIME structure nested too deeply"
    except Exception as exc:  # a parser fault must refuse one mail, not stop the listener
        parsed.refusal = f"unreadable message ({type(exc).__name__})"
    return parsed


def _parse(raw: bytes, limits: Limits, envelope_from: str | None, parsed: ParsedMail) -> None:
    refusal = _structure_refusal(raw, limits)
    if refusal:
        parsed.refusal = refusal
        return
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    if msg.defects:
        parsed.problems.append("mime_defects")

    parsed.message_id = normalize_message_id(_header(msg, "Message-ID")) or _synthetic_id(msg, raw)
    parsed.in_reply_to = message_ids(_header(msg, "In-Reply-To"))[:MAX_REFERENCES]
    refs = message_ids(_header(msg, "References"))
    parsed.references = (
        refs if len(refs) <= MAX_REFERENCES else [refs[0], *refs[-(MAX_REFERENCES - 1) :]]
    )
    parsed.subject = _clean_header(msg, "Subject", MAX_SUBJECT_CHARS, parsed)

    from_name, from_address = _mailbox(msg, "From", parsed)
    if from_address is None:  # no usable From: the SMTP envelope sender, if there is one
        from_address, from_name = valid_address(envelope_from), None
    parsed.from_address, parsed.from_name = from_address, from_name
    parsed.reply_to = _mailbox(msg, "Reply-To", parsed)[1] if _raw_header(msg, "Reply-To") else None
    parsed.to = [a for a in (_addresses(msg, "To") + _addresses(msg, "Cc")) if a][:50]
    if parsed.from_address is None:
        parsed.refusal = "no valid sender address"
        return
    parsed.auto_reason = _auto_reason(msg, parsed.from_address, envelope_from)
    results = [str(v) for k, v in msg.raw_items() if k.lower() == "authentication-results"]
    parsed.from_failed = from_domain_failed(results, parsed.from_address)

    plain, html = _walk(msg, limits, parsed)
    body = plain if plain.strip() else html
    reply = split_reply(tidy(body))
    parsed.text = reply.new
    if len(parsed.text) > limits.max_text_chars:
        parsed.text = parsed.text[: limits.max_text_chars]
        parsed.problems.append("text_truncated")
    parsed.quoted = reply.quoted[: limits.max_quoted_chars]
    if not parsed.text:
        parsed.text = parsed.subject or (
            "(attachments only)" if parsed.attachments else "(empty message)"
        )


def _structure_refusal(raw: bytes, limits: Limits) -> str | None:
    """Count multipart containers and part delimiters before parsing: the parser needs minutes
    for a few MB of tiny parts and recurses once per nesting level."""
    boundaries = set(_BOUNDARY.findall(raw))
    if len(boundaries) > limits.max_multiparts:
        return f"MIME structure too complex: {len(boundaries)} multipart containers (limit {limits.max_multiparts})"
    delimiters = sum(raw.count(b"\n--" + b) for b in boundaries)
    if delimiters > 2 * limits.max_parts + 2 * len(boundaries):
        return f"MIME structure too complex: about {delimiters} part delimiters (limit {limits.max_parts} parts)"
    return None


def _header(msg: EmailMessage, name: str) -> str:
    """A header's decoded value; its raw value when the header model cannot parse it."""
    try:
        value = msg.get(name)
        return "" if value is None else str(value)
    except Exception:
        return _decode_words(_raw_header(msg, name))


def _raw_header(msg: EmailMessage, name: str) -> str:
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            return re.sub(r"\r?\n[ \t]+", " ", str(value))
    return ""


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # an encoded word in a charset Python does not know
        return value


def _clean_header(msg: EmailMessage, name: str, limit: int, parsed: ParsedMail) -> str:
    value = _header(msg, name)
    if "\r" in value or "\n" in value:
        parsed.problems.append(f"header_line_break:{name}")
    return clean_line(value, limit)


def _mailbox(msg: EmailMessage, name: str, parsed: ParsedMail) -> tuple[str | None, str | None]:
    """(display name, address) of a one-mailbox header, read from its raw text.

    The header model is not trusted here: a folded or encoded display name can smuggle a second
    address ("Eve\\r\\n Bcc: victim@x <eve@y>" parses as a group holding victim@x). One address
    in angle brackets, or one bare address, is the mailbox; anything else is ambiguous.
    """
    raw = _raw_header(msg, name)
    if not raw:
        return None, None
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', raw)
    bracketed = re.findall(r"<([^<>]*)>", unquoted)
    if bracketed:
        candidates = bracketed
    else:
        candidates = [addr for _, addr in getaddresses([clean_line(raw, 2000)])]
    valid = list(dict.fromkeys(a for a in (valid_address(c) for c in candidates) if a))
    if len(valid) != 1 or len(candidates) != 1:
        parsed.problems.append(f"ambiguous_address:{name}")
        return None, None
    display = raw.rsplit("<", 1)[0] if bracketed else ""
    decoded = _decode_words(display.strip())
    if "\r" in decoded or "\n" in decoded:
        parsed.problems.append(f"header_line_break:{name}")
    display_name = clean_line(decoded, MAX_NAME_CHARS).strip('"').strip()
    return (display_name or None), valid[0]


def _addresses(msg: EmailMessage, name: str) -> list[str]:
    raw = clean_line(_raw_header(msg, name), 5000)
    return [a for a in (valid_address(addr) for _, addr in getaddresses([raw])) if a]


def _synthetic_id(msg: EmailMessage, raw: bytes) -> str:
    # No Message-ID: one made of what a retry of the same mail repeats, so a retry still dedupes.
    _, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    seed = "\n".join(_header(msg, h) for h in ("From", "To", "Date", "Subject")).encode(
        errors="surrogateescape"
    )
    return f"<{hashlib.sha256(seed + body).hexdigest()[:40]}@no-message-id.invalid>"


def _auto_reason(msg: EmailMessage, from_address: str, envelope_from: str | None) -> str | None:
    """Why this mail must not be answered automatically (RFC 3834), or None."""
    auto_submitted = _header(msg, "Auto-Submitted").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return "auto_submitted"
    if _header(msg, "Precedence").strip().lower() in ("bulk", "list", "junk", "auto_reply"):
        return "bulk"
    if any(_header(msg, h) for h in ("List-Id", "List-Unsubscribe", "List-Post")):
        return "mailing_list"
    if any(_header(msg, h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply")):
        return "auto_submitted"
    suppress = _header(msg, "X-Auto-Response-Suppress").lower()
    if any(word in suppress for word in ("all", "autoreply", "oof")):
        return "auto_response_suppressed"
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        return "bounce"
    if msg.get_content_type() == "multipart/report":
        return "bounce"
    if _NO_REPLY_LOCAL.match(from_address.partition("@")[0]):
        return "no_reply_sender"
    return None


def _walk(msg: EmailMessage, limits: Limits, parsed: ParsedMail) -> tuple[str, str]:
    """Depth-first over the parts without recursion; returns (plain text, text from HTML)."""
    plain: list[str] = []
    html: list[str] = []
    stack: list[EmailMessage] = [msg]
    seen = 0
    extra_attachments = 0
    while stack:
        part = stack.pop()
        seen += 1
        if seen > limits.max_parts:
            parsed.problems.append("parts_truncated")
            break
        ctype = part.get_content_type()
        if part.is_multipart() and ctype != "message/rfc822":
            children = part.get_payload()
            if isinstance(children, list):
                # policy.default makes every part an EmailMessage; the stubs say Message | str.
                stack.extend(reversed(cast("list[EmailMessage]", children)))
            continue
        disposition = _safe(part.get_content_disposition)
        filename = _safe(part.get_filename)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text = _decode_text(part, parsed)
            if ctype == "text/plain":
                plain.append(text)
            else:
                converted = html_to_text(text)
                html.append(converted.text)
                parsed.problems.extend(f"html_removed:{kind}" for kind in sorted(converted.removed))
            continue
        if len(parsed.attachments) >= limits.max_attachments:
            extra_attachments += 1
            continue
        parsed.attachments.append(_attachment(part, ctype, filename))
    if extra_attachments:
        parsed.problems.append(f"attachments_not_listed:{extra_attachments}")
    parsed.problems[:] = list(dict.fromkeys(parsed.problems))
    return "\n\n".join(plain), "\n\n".join(html)


def _safe(call):
    try:
        return call()
    except Exception:
        return None


def _payload(part: EmailMessage) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", errors="surrogateescape")
    if isinstance(raw, list):  # an attached message
        return b"".join(p.as_bytes() if hasattr(p, "as_bytes") else b"" for p in raw)
    return b""


def _decode_text(part: EmailMessage, parsed: ParsedMail) -> str:
    data = _payload(part)
    charset = (_safe(part.get_content_charset) or "us-ascii").strip().lower()
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        parsed.problems.append("unknown_charset")
        codec = None
    if codec in ("gb2312", "gbk"):
        codec = "gb18030"  # mislabeled GBK text is common; GB18030 is the superset of both
    for candidate in ([codec] if codec else []) + ["utf-8", "gb18030"]:
        try:
            return data.decode(candidate)
        except (UnicodeDecodeError, LookupError):
            continue
    parsed.problems.append("invalid_bytes")
    return data.decode(codec or "utf-8", errors="replace")


def _attachment(part: EmailMessage, ctype: str, filename: str | None) -> Attachment:
    if ctype == "message/rfc822":
        inner = part.get_payload()
        subject = ""
        if isinstance(inner, list) and inner and isinstance(inner[0], EmailMessage):
            subject = _header(inner[0], "Subject")
        filename = filename or (f"{subject or 'message'}.eml")
    name = (
        clean_line(filename or "", MAX_NAME_CHARS).replace("/", "_").replace("\\", "_") or "unnamed"
    )
    return Attachment(name=name, content_type=clean_line(ctype, 100), size=len(_payload(part)))
