"""Run only the patterns that can match: a gate of literal anchors in front of the regex engine.

Most operator patterns are built of word lists: `\\b(payments?|charges?|...)`, `(钱|余额)`. A
pattern can only match a text that contains one word of each list it requires: the rarest such
list is its anchors.
`AnchorIndex` finds, in one scan, which anchors of all patterns a text contains, so each pattern
is searched only when one of its anchors is there. A pattern whose anchors cannot be worked out
(it starts with `.`, `\\d`, an optional group, ignores case, ...) is always searched.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable

try:  # the parser behind `re`; it is internal, so anything unexpected just disables the gate
    from re import _constants as _c
    from re import _parser
except ImportError:  # pragma: no cover - another Python: every pattern is always searched
    _parser = None

_MAX_CHARSET = 40


def anchors(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """Literal strings at least one of which is in every text the pattern matches, or None."""
    if _parser is None or flags & re.IGNORECASE:
        return None
    try:
        found = _required(list(_parser.parse(pattern, flags)))
    except Exception:  # an analysis this module does not know: no gate
        return None
    return frozenset(found) if found else None


def _required(items: list) -> set[str] | None:
    """Of the parts every match must contain, the one whose literals are rarest: the longest
    shortest literal (a pattern such as `\\b(i|we) ... (never|didn't) (make|authorise)` is gated
    on `make`/`authorise` rather than on `i`)."""
    best: set[str] | None = None
    for i, (op, av) in enumerate(items):
        if op is _c.LITERAL:
            if i and items[i - 1][0] is _c.LITERAL:
                continue  # inside a run already taken whole
            run = []
            for next_op, next_av in items[i:]:
                if next_op is not _c.LITERAL:
                    break
                run.append(chr(next_av))
            found: set[str] | None = {"".join(run)}
        elif op is _c.IN:
            found = _charset(av)
        elif op is _c.BRANCH:
            found = set()
            for alternative in av[1]:
                part = _required(list(alternative))
                if not part:
                    found = None
                    break
                found |= part
        elif op is _c.SUBPATTERN:
            found = None if _can_be_empty(av[-1]) else _required(list(av[-1]))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT) and av[0] >= 1:
            found = _required(list(av[2]))
        else:
            continue  # zero width, optional, any character: says nothing
        if found and (best is None or _rarer(found, best)):
            best = found
    return best


def _rarer(a: set[str], b: set[str]) -> bool:
    shortest_a, shortest_b = min(map(len, a)), min(map(len, b))
    return shortest_a > shortest_b or (shortest_a == shortest_b and len(a) < len(b))


def _can_be_empty(items) -> bool:
    for op, av in items:
        if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            continue
        if op is _c.SUBPATTERN:
            if not _can_be_empty(av[-1]):
                return False
            continue
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            if av[0] > 0 and not _can_be_empty(av[2]):
                return False
            continue
        if op is _c.BRANCH:
            if not any(_can_be_empty(alternative) for alternative in av[1]):
                return False
            continue
        return False
    return True


def _charset(av) -> set[str] | None:
    chars: set[str] = set()
    for op, value in av:
        if op is _c.LITERAL:
            chars.add(chr(value))
        elif op is _c.RANGE and value[1] - value[0] <= _MAX_CHARSET:
            chars.update(chr(code) for code in range(value[0], value[1] + 1))
        else:  # a negated set, \d, \w, a wide range: no gate
            return None
    return chars


class AnchorIndex:
    """Which of many gated items (patterns) can match a text, from the anchors it contains."""

    def __init__(self, gated: Iterable[tuple[frozenset[str] | None, Hashable]]):
        by_anchor: dict[str, set[Hashable]] = {}
        for found, item in gated:
            for anchor in found or ():
                by_anchor.setdefault(anchor, set()).add(item)
        words = sorted(by_anchor)
        self._finder = re.compile(f"(?=({trie_pattern(words)}))") if words else None
        # A match is the longest anchor starting at a position; the shorter ones it begins with
        # are in the text too.
        self._items = {
            a: frozenset(item for b in words if a.startswith(b) for item in by_anchor[b]) for a in words
        }

    def live(self, text: str) -> frozenset:
        """The items one of whose anchors the text contains."""
        if self._finder is None:
            return frozenset()
        found: set = set()
        for anchor in set(self._finder.findall(text)):
            found |= self._items[anchor]
        return frozenset(found)


def trie_pattern(words: list[str]) -> str:
    """One alternation shaped as a trie, longest match first."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)
