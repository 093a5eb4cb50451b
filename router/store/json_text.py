"""The text the store writes for a JSON column, on SQLite and PostgreSQL alike.

orjson instead of the standard library's encoder: a dispatcher's chunk writes a JSON value or
more for every message (its meta, its acknowledgement's), and the standard encoder was 6-8% of
the dispatcher's time (py-spy, a steady 500 messages/s). Text stays UTF-8 as it is
(both databases store it so; the standard encoder escaped it to ASCII), keys that are not text
are written as text, as before. A value orjson refuses (a lone surrogate, an integer past 64
bits: `storable` keeps the first from the store) is written by the standard encoder, as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

OPTIONS = orjson.OPT_NON_STR_KEYS  # what `storable`'s check encodes with too


def dumps(value: Any) -> str:
    """`value` as JSON text (the engine's `json_serializer`)."""
    try:
        return orjson.dumps(value, option=OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value)
