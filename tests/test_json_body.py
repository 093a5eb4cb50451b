"""The one JSON reader: UTF-8 only, a bounded depth checked before parsing, lone surrogates
refused or cleaned, NaN and Infinity refused; every refusal says why."""

from __future__ import annotations

import pytest

from router.core.http import BadJson, parse_json


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested deeper than 32 levels"),
        (b'{"a":' * 33 + b"1" + b"}" * 33, "nested deeper than 32 levels"),
        (b"[" * 100_000, "nested deeper than 32 levels"),
        (b'{"name":"\\ud800"}', "lone surrogate"),
        (b'{"\\udfff":"key"}', "lone surrogate"),
        ('{"name":"\ud800"}'.encode("utf-8", "surrogatepass"), "not valid UTF-8"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"NaN", "NaN is not JSON"),
        (b'{"a": -Infinity}', "-Infinity is not JSON"),
        (b'{"a":1}{"b":2}', "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_hostile_json_is_refused_with_a_reason(data, reason):
    with pytest.raises(BadJson, match=reason):
        parse_json(data)


def test_brackets_inside_strings_do_not_count_as_depth():
    text = '{"text": "' + "[{" * 1000 + '\\"]"}'
    assert parse_json(text) == {"text": "[{" * 1000 + '"]'}


def test_the_depth_limit_is_the_callers():
    assert parse_json(b"[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(BadJson, match="deeper than 2"):
        parse_json(b"[[[1]]]", max_depth=2)


def test_a_pair_of_escapes_is_one_character_and_lone_halves_can_be_cleaned():
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"
    cleaned = parse_json(b'{"n\\ud800":["\\udfffx\\u0000"]}', surrogates="replace")
    assert cleaned == {"n\ufffd": ["\ufffdx"]}


def test_a_byte_order_mark_is_allowed():
    assert parse_json(b"\xef\xbb\xbf{}") == {}
