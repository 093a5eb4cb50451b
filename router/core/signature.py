"""The signature on every request the router sends the wallet's backend (docs/cases.md):
`X-Supportrouter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

`verify` is what the backend runs: it refuses a body changed in transit, a signature made with
another secret, a timestamp outside the tolerance, and (given a `seen` set that it keeps) a
request replayed byte for byte. Standard library only, so the backend can copy this file."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import MutableSet

HEADER = "X-Supportrouter-Signature"
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The request is refused; the message says why."""


def signature_header(secret: str, body: bytes, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    return f"t={t},v1={_digest(secret, t, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
    seen: MutableSet[str] | None = None,
) -> int:
    """The request's timestamp if `header` signs `body` with `secret`, else SignatureError.
    With `seen`, a signature accepted once is refused ever after (a replay)."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        fields.setdefault(name, []).append(value)
    try:
        [raw_t] = fields["t"]
        t = int(raw_t)
    except (KeyError, ValueError):
        raise SignatureError("the signature header needs one t=<unix seconds>") from None
    at = time.time() if now is None else now
    if abs(at - t) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    expected = _digest(secret, t, body)
    if not any(hmac.compare_digest(expected, v) for v in fields.get("v1", [])):
        raise SignatureError("signature does not match the body")
    if seen is not None:
        if expected in seen:
            raise SignatureError("request already seen (replay)")
        seen.add(expected)
    return t


def _digest(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
