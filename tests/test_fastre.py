"""The regex fast paths: the lookahead in front of a pattern never changes what it matches."""

from __future__ import annotations

import re

import pytest

from router.classify import entities, redact
from router.classify.fastre import Substrings, also_required, compile_fast
from router.classify.textprep import normalize
from router.policy.rules import Rules
from tests.conftest import CONFIG_DIR

# Our own texts with the things the patterns look for: amounts, dates, times, ids, codes, phones.
_HANDWRITTEN = [
    "On 3 Sep 2024 at 09:14 I was charged ¥5,000 twice, txn TX2026110100123, error E1043",
    "昨天晚上11点半，我的账户被扣了3万元，流水号 20241101ABC123，客服电话 138 0013 8000",
    "Error code: AB-4471 when sending $1,200.50 to +44 20 7946 0958 on 2024-11-02",
    "i never heard of this merchant, it means nothing to me, money gone from my card",
    "支付密码是多少？验证码 884211 不要发给别人，卡背面三位数 123",
    "my PIN was 4821 and the OTP 77 31 09; card 4111 1111 1111 1111 cvv 737",
    "Someone logged in from a new phone at 3am, blocked while paying now, 200 USD",
    "",
    "a",
]


def _texts() -> list[str]:
    rules = Rules(CONFIG_DIR)
    out = list(_HANDWRITTEN)
    for category in rules.config.classifier.categories.values():
        for text in category.examples.all():
            out += [
                text,
                text.lower(),
                f"Hello,\n\n{text}\n\nOn 2 Sep 2024, 09:14, Support wrote:\n> 100 GBP\n",
            ]
    return out


def _patterns() -> list[tuple[str, int]]:
    rules = Rules(CONFIG_DIR)
    classifier = rules.config.classifier
    out: list[str] = []
    for category in classifier.categories.values():
        out += category.patterns + category.negative_patterns
    for rule in classifier.urgency_rules:
        out += rule.patterns + rule.negative_patterns
    upper = re.compile(r"(?<!\\)[A-Z]")
    found = [(p, re.I if upper.search(p) else 0) for p in out]
    compiled = [*vars(redact).values(), *vars(entities).values(), *entities._PATTERNS.values()]
    for value in compiled:
        if isinstance(value, re.Pattern):
            # The module may already hold the fast form: take the pattern inside the lookahead.
            source = re.sub(r"^\(\?=\[[^\]]*\]\)\(\?:(.*)\)$", r"\1", value.pattern, flags=re.S)
            found.append((source, value.flags & ~re.U))
    return found


def test_every_pattern_matches_the_same_spans_with_its_lookahead():
    texts = _texts()
    patterns = _patterns()
    assert len(patterns) > 100 and len(texts) > 1000
    with_lookahead = 0
    for pattern, flags in patterns:
        plain, fast = re.compile(pattern, flags), compile_fast(pattern, flags)
        with_lookahead += fast.pattern != plain.pattern
        for text in texts:
            expected = [(m.span(), m.groups()) for m in plain.finditer(text)]
            assert [(m.span(), m.groups()) for m in fast.finditer(text)] == expected, (
                pattern,
                text,
            )
    assert with_lookahead > len(patterns) // 2  # the fast path is taken, not silently skipped


@pytest.mark.parametrize(
    ("pattern", "lookahead"),
    [
        (r"\bnever\s+heard|\bmeans nothing", "(?=[mn])"),
        (r"(?<!还)(没|未)(付|转)", "(?=[未没])"),
        (r"x*y", "(?=[xy])"),
        (r"\d+元", r"(?=[\d])"),
        (r"(a)?", None),  # can match nothing: no first character to require
        (r".foo", None),  # any character can come first
        (r"[^a]b", None),  # a negated class says nothing useful
        (r"(?i)abc", None),  # global flags must stay at the start: left as written
    ],
)
def test_the_lookahead_names_what_every_match_starts_with(pattern, lookahead):
    fast = compile_fast(pattern)
    if lookahead is None:
        assert fast.pattern == pattern
    else:
        assert fast.pattern == f"{lookahead}(?:{pattern})"


def test_substrings_finds_overlapping_occurrences_once_each_in_the_order_they_end():
    index = Substrings(["密码", "支付密码", "盗刷", "被盗", "pin"])
    # Two that end together come longer first.
    assert index.found("支付密码被盗刷了, spinning pin") == [
        "支付密码",
        "密码",
        "被盗",
        "盗刷",
        "pin",
    ]
    assert Substrings([]).found("anything") == []


@pytest.mark.parametrize(
    ("pattern", "also"),
    [
        (r"\b(sent|moved)\s+(my\s+)?(money|funds)\b", [{"sent", "moved"}]),  # money: anchors
        (r"(钱|余额).{0,4}(没了|不见了)", [{"钱", "余额"}]),
        (r"\b(i|we) (never|didn't) (make|authorise)", [{"make", "authorise"}]),  # not i/we
        (r"\bcard (was )?(stolen|lost)", [{"stolen", "lost"}]),  # "was " is optional
        (r"(?i)\bpin\b (blocked|locked)", []),  # ignoring case: no literal gate at all
    ],
)
def test_also_required_names_the_other_lists_a_match_needs_a_word_of(pattern, also):
    assert [set(part) for part in also_required(pattern)] == also


def test_every_match_holds_a_literal_of_each_list_its_pattern_needs():
    """The further gate (`also_required`) may only skip a pattern that cannot match."""
    texts = [normalize(text) for text in _texts()]
    checked = 0
    for pattern, flags in _patterns():
        parts = also_required(pattern, flags)
        regex = re.compile(pattern, flags)
        for text in texts:
            match = regex.search(text)
            if match and parts:
                checked += 1
                for part in parts:
                    assert any(literal in text for literal in part), (pattern, text)
    assert checked > 50
