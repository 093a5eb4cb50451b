"""`storable` on whole rows (router/store/storable.py): a row is told clean by one pass of the
JSON encoder, dates and all, and only a row that may need it goes value by value. Either way the
row that comes out holds no NUL and no lone surrogate, in its columns or deep in its JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from router.store.schema import messages
from router.store.storable import storable

AT = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def row(**changes):
    base = {
        "message_id": "m-1",
        "conversation_id": "c-1",
        "direction": "in",
        "kind": "customer",
        "channel": "sms",
        "channel_message_id": "SM1",
        "author": "+15550100",
        "text": "my transfer failed",
        "trace_id": "t-1",
        "meta": {"classification": {"rules": ["a", "b"], "confidence": 0.9}, "thread": {}},
        "delivery_status": None,
        "created_at": AT,
    }
    return {**base, **changes}


def test_a_clean_row_with_a_date_comes_back_as_it_was():
    clean = row()
    out = storable(messages, clean, keep_in="meta")
    assert out == clean
    assert out["created_at"] is AT


@pytest.mark.parametrize(
    ("changes", "column", "expected"),
    [
        ({"author": "Ann\x00"}, "author", "Ann"),
        ({"channel_message_id": "SM\ud8001"}, "channel_message_id", "SM\ufffd1"),
        (
            {"meta": {"thread": {"subject\ud83d": "re:\x00 card"}}},
            "meta",
            {"thread": {"subject\ufffd": "re: card"}},
        ),
    ],
    ids=["nul-in-a-column", "lone-surrogate-in-a-column", "both-deep-in-json-keys-and-values"],
)
def test_a_row_beside_a_date_is_cleaned_wherever_it_needs_it(changes, column, expected):
    out = storable(messages, row(**changes), keep_in="meta")
    assert out[column] == expected
    assert out["created_at"] == AT
    assert out["text"] == "my transfer failed"
