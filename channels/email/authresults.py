"""What the receiving server's Authentication-Results headers (RFC 8601) say of a mail's From.

Only failures are read. A sender can write any header into their own mail, but a forged
`dmarc=fail` only hurts the forger; a forged `pass` is never believed, because nothing here
acts on a pass. A DMARC result without `header.from` is about the From domain by definition;
a DKIM failure counts only for a signature of the From domain (or a parent or subdomain of it),
since a mail may carry other signatures (a mailing list's, a sending service's) that fail.
"""

from __future__ import annotations

import re

_COMMENT = re.compile(r"\([^()]*\)")


def _related(domain: str, other: str) -> bool:
    other = other.strip().lower().lstrip("@").rsplit("@", 1)[-1]
    return bool(other) and (
        other == domain or other.endswith("." + domain) or domain.endswith("." + other)
    )


def from_domain_failed(headers: list[str], from_address: str) -> bool:
    """True when any Authentication-Results header reports dmarc=fail, or dkim=fail for a
    signature of the From domain."""
    domain = from_address.rpartition("@")[2].lower()
    for header in headers:
        for resinfo in _COMMENT.sub(" ", header).split(";")[1:]:  # [0] is the authserv-id
            tokens = resinfo.split()
            if not tokens or "=" not in tokens[0]:
                continue
            method, _, result = tokens[0].lower().partition("=")
            if result != "fail":
                continue
            props = dict(t.lower().split("=", 1) for t in tokens[1:] if "=" in t)
            if method == "dmarc" and _related(domain, props.get("header.from", domain)):
                return True
            if method == "dkim" and any(
                _related(domain, props[p]) for p in ("header.d", "header.i") if p in props
            ):
                return True
    return False
