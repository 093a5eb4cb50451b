"""Text every part of the router can carry: JSON on Kafka, and both databases."""

from __future__ import annotations

import re

SURROGATE = re.compile("[\ud800-\udfff]")  # a lone half, or either half of a pair


def unicode_safe(value: str) -> str:
    """`value` without NUL characters (PostgreSQL refuses them in text) and without lone
    surrogates (UTF-8 cannot encode one: a chat frame's JSON may carry "\\ud800"). A valid pair
    joins into the character it encodes; a lone half becomes U+FFFD."""
    if value.isascii():  # the common case: no surrogate can be in it
        return value.replace("\x00", "") if "\x00" in value else value
    value = value.replace("\x00", "")
    if SURROGATE.search(value):
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value
