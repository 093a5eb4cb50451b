"""Hypothesis strategies for hostile input: JSON (deep, surrogates, huge, wrong types, extra
fields), raw bytes, forms, odd Content-Types and charsets, Telegram updates and chat frames."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st

from tests import telegram_standin as tg

# Names our handlers read, so a drawn object often has the right key with the wrong value.
FIELDS = [
    "username",
    "password",
    "text",
    "queue",
    "status",
    "name",
    "type",
    "id",
    "update_id",
    "message",
    "edited_message",
    "channel_post",
    "chat",
    "from",
    "date",
    "MessageSid",
    "SmsSid",
    "CallSid",
    "AccountSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "MessageStatus",
    "CallStatus",
    "SpeechResult",
    "Digits",
    "RecordingUrl",
    "TranscriptionText",
    "ErrorCode",
]

CONTENT_TYPES = [
    None,  # aiohttp's application/octet-stream for bytes
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=UTF8",
    "application/json; charset=x-bogus",
    "application/json; charset=utf-16",
    "application/json; charset=",
    'application/json; charset="utf-8"',
    "application/json; charset=utf-8; charset=x-bogus",
    "application/json;;;",
    "text/plain; charset=latin-1",
    "text/plain; charset=unicode-1-1-utf-7",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=UTF-8",
    "application/x-www-form-urlencoded; charset=x-bogus",
    "application/x-www-form-urlencoded; charset=idna",
    "multipart/form-data; boundary=zzz",
    "multipart/form-data",
    "garbage",
    "*/*; q=nope",
]

# Any code point, lone surrogates included (st.characters() keeps category Cs).
any_text = st.text(max_size=40)
utf8_text = st.text(st.characters(codec="utf-8"), max_size=200)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_keys = st.sampled_from(FIELDS) | any_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=4),
    max_leaves=12,
)
objects_with_our_fields = st.dictionaries(json_keys, json_values, max_size=8)


def _dumps(value: Any, ascii_only: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=ascii_only)
    # Not ASCII-only, a lone surrogate goes out as CESU-style bytes: not UTF-8 at all.
    return text.encode("utf-8", "surrogatepass")


def _deep(depth: int, shape: str) -> bytes:
    if shape == "array":
        return b"[" * depth + b"]" * depth
    if shape == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if shape == "in-field":
        return b'{"text":' + b"[" * depth + b"]" * depth + b"}"
    return b"[" * depth  # never closed


deep_json = st.builds(
    _deep, st.integers(33, 6000), st.sampled_from(["array", "object", "in-field", "unclosed"])
)
huge_json = st.sampled_from([70_000, 300_000]).map(lambda n: b'{"text":"' + b"x" * n + b'"}')
long_fields = st.builds(
    lambda name, n, ch: json.dumps({name: ch * n}).encode(),
    st.sampled_from(FIELDS),
    st.sampled_from([101, 4001, 20_000]),
    st.sampled_from(["x", "长", "\U0001f600", "\ud800"]),
)
literal_bodies = st.sampled_from(
    [
        b"",
        b"null",
        b"[]",
        b"{}",
        b"NaN",
        b'{"a": Infinity}',
        b'{"name":"\\ud800"}',
        b'{"text":"\\udfff","username":"\\ud800","password":"\\ud83d"}',
        b'{"text":"\\u0000"}',
        b"\xef\xbb\xbf{}",
        b'{"a":1}{"b":2}',
        b'"\\ud800"',
    ]
)
other_encodings = st.builds(
    lambda value, codec: json.dumps(value, ensure_ascii=False).encode(codec, "replace"),
    objects_with_our_fields,
    st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252", "gb18030"]),
)
forms = st.dictionaries(st.sampled_from(FIELDS) | utf8_text, utf8_text, max_size=8).map(
    lambda d: urlencode(d).encode()
)


def _telegram_update(text: str, first_name: str, user_id: int, update_id: int) -> dict[str, Any]:
    sender = tg.user(user_id=user_id, first_name=first_name or "x", username=None)
    return tg.text_update(text or "x", sender, update_id=update_id)


telegram_updates = st.builds(
    _telegram_update,
    any_text,
    any_text,
    st.integers(min_value=1, max_value=2**40),
    st.integers(min_value=0, max_value=2**31),
) | st.fixed_dictionaries(
    {"update_id": st.integers() | any_text},
    optional={
        "message": json_values,
        "edited_message": json_values,
        "channel_post": json_values,
        "callback_query": json_values,
    },
)

bodies = st.one_of(
    objects_with_our_fields.flatmap(lambda v: st.sampled_from([_dumps(v, True), _dumps(v, False)])),
    json_values.map(lambda v: _dumps(v, True)),
    telegram_updates.map(lambda v: _dumps(v, True)),
    deep_json,
    huge_json,
    long_fields,
    literal_bodies,
    other_encodings,
    forms,
    st.binary(max_size=400),
)


@dataclass
class HostileRequest:
    """One drawn input, sent to every route (GET routes take its query instead of its body)."""

    body: bytes
    content_type: str | None
    auth: str  # none | valid | garbage
    signature: str  # none | valid | forged (Twilio)
    secret: str  # none | right | wrong (Telegram)
    segment: str  # fills {id} and {queue}
    query: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # hypothesis prints it on a failure: keep it readable
        return (
            f"HostileRequest(body={self.body[:200]!r}{'...' if len(self.body) > 200 else ''}"
            f" [{len(self.body)} bytes], content_type={self.content_type!r}, auth={self.auth},"
            f" signature={self.signature}, secret={self.secret}, segment={self.segment!r},"
            f" query={self.query!r})"
        )


hostile_requests = st.builds(
    HostileRequest,
    body=bodies,
    content_type=st.sampled_from(CONTENT_TYPES),
    auth=st.sampled_from(["none", "valid", "garbage"]),
    signature=st.sampled_from(["none", "valid", "forged"]),
    secret=st.sampled_from(["none", "right", "wrong"]),
    segment=st.sampled_from(["1", "payments", "..", "%00", "x" * 300]) | any_text,
    query=st.dictionaries(
        st.sampled_from(["session", "token", "stage", "queue", "valid"]), any_text, max_size=3
    ),
)

# Chat socket frames: text (JSON or not), under aiohttp's 64 KiB frame limit, or binary.
chat_frames = st.one_of(
    json_values.map(lambda v: json.dumps(v)),
    st.fixed_dictionaries(
        {"type": st.just("message") | any_text},
        optional={"text": json_values, "id": json_values, "extra": json_values},
    ).map(json.dumps),
    st.builds(
        lambda text, cid: json.dumps({"type": "message", "text": text, "id": cid}),
        st.text(max_size=60) | st.sampled_from(["\ud800", "a\udfffb", "\x00", " ", "长" * 4001]),
        st.none() | st.text(max_size=120),
    ),
    deep_json.map(lambda b: b.decode()),  # 30 KB at most
    literal_bodies.map(lambda b: b.decode("utf-8", "replace")),
    utf8_text,
    st.binary(max_size=200),
)
