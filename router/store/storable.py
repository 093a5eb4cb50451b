"""Values made storable on SQLite and PostgreSQL alike, at the point the store builds its rows.

Everything the router accepts must be storable, or a message acknowledged to its provider
would end in the DLQ. SQLite takes almost anything; PostgreSQL refuses a NUL character in text,
a lone surrogate (UTF-8 cannot encode one) and a value longer than its `varchar(n)`. So every
value the store writes, and every value it looks a row up by, goes through `fit`:

- NUL characters are removed;
- lone surrogates become U+FFFD (a valid pair becomes the character it encodes);
- JSON values are cleaned the same way, keys and all;
- a string longer than its column (the length of the `sa.String` in `schema.py`) is cut:
  a column that identifies a row (a key, unique, or indexed: the store looks rows up by it)
  keeps a prefix and a digest of the whole value, so two long values that share a prefix stay
  two rows, and the same long value always finds its row again; any other column keeps its
  first characters.

The whole value is kept only where the row has a JSON field for it: a message row keeps what
was cut in `meta["uncut"]` ({column: whole value}), e.g. a long sender address in `author`
(200). A conversation row has no such field, but its `customer_address` (320) holds any valid
email address; other tables keep only what fits.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.sql.schema import ColumnCollectionConstraint

from router.core.text import unicode_safe
from router.store import json_text

_DIGEST_CHARS = 16


def clean(value: Any) -> Any:
    """`value` without NUL characters or lone surrogates: strings, and JSON (dicts, lists)."""
    if isinstance(value, dict | list | tuple) and _clean_json(value):
        return value
    return _clean_each(value)


def _clean_each(value: Any) -> Any:
    if isinstance(value, str):
        return unicode_safe(value)
    if isinstance(value, dict):
        return {_clean_each(k): _clean_each(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_each(v) for v in value]
    return value


def _clean_json(value: dict | list | tuple, *, opaque: bool = False) -> bool:
    """True when a JSON value surely holds no NUL and no lone surrogate, told by one pass of
    orjson's encoder instead of a call per value (a message's meta holds dozens): it writes a
    NUL as the escape \\u0000 and refuses a lone surrogate. False sends it the long way: a value
    orjson cannot write (an object it does not know, unless `opaque`: a row's other values,
    which `clean` keeps as they are, so the check may pass over them), or one that may need
    cleaning."""
    try:
        text = orjson.dumps(value, default=_opaque if opaque else None, option=json_text.OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return False
    return b"\\u0000" not in text


def _opaque(value: Any) -> None:
    """What the check writes for a value `clean` leaves as it is: nothing to look at."""
    return None


def fit(column: sa.Column[Any], value: Any) -> Any:
    """`value` as `column` can store it (see the module's docstring); anything else as it is."""
    return _cut(column, clean(value))


def _cut(column: sa.Column[Any], value: Any) -> Any:
    """A `clean` value cut to the length of `column`, if it has one."""
    length = getattr(column.type, "length", None)
    if not isinstance(value, str) or length is None or len(value) <= length:
        return value
    if not _identifies(column):
        return value[:length]
    digest = hashlib.sha256(value.encode()).hexdigest()[:_DIGEST_CHARS]
    return (value[: max(length - _DIGEST_CHARS - 1, 0)] + "~" + digest)[:length]


def storable(table: sa.Table, row: dict[str, Any], *, keep_in: str | None = None) -> dict[str, Any]:
    """`row` with every value fitted to its column of `table`. With `keep_in` (a JSON column of
    the row), each value that was cut is kept whole there, under "uncut"."""
    cleaned = (
        row  # the whole row told clean by one pass of the encoder: no call per value
        if _clean_json(row, opaque=True)
        else {name: clean(value) for name, value in row.items()}
    )
    lengths = _lengths(table)  # per message, on the hot path: only a long value looks further
    out = {
        name: _cut(table.c[name], value)
        if isinstance(value, str) and len(value) > lengths[name]
        else value
        for name, value in cleaned.items()
    }
    if keep_in is not None:
        uncut = {
            name: value
            for name, value in cleaned.items()
            if isinstance(value, str) and out[name] != value
        }
        if uncut:
            out[keep_in] = {**out[keep_in], "uncut": uncut}
    return out


@functools.cache
def _lengths(table: sa.Table) -> dict[str, float]:
    """Each column's length; infinite for a column without one."""
    return {c.name: getattr(c.type, "length", None) or math.inf for c in table.columns}


def _identifies(column: sa.Column[Any]) -> bool:
    """A key, unique or indexed column: rows are found by its value."""
    if column.primary_key or column.unique or column.index:
        return True
    table = column.table
    groups = [c.columns for c in table.constraints if isinstance(c, ColumnCollectionConstraint)]
    groups += [index.columns for index in table.indexes]
    return any(column.name in group.keys() for group in groups)
