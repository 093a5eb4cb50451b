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
from collections.abc import Hashable, Iterable, Iterator

import ahocorasick

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


class Substrings:
    """Every occurrence of many literal strings in a text, in one pass (an Aho-Corasick automaton,
    in C: a regex alternation tried at every position cost five times as much)."""

    def __init__(self, words: Iterable[str]):
        self._automaton = ahocorasick.Automaton()
        for word in words:
            self._automaton.add_word(word, word)
        self._empty = len(self._automaton) == 0
        if not self._empty:
            self._automaton.make_automaton()

    def __iter__(self):
        return iter(self._automaton.keys())

    def found(self, text: str) -> list[str]:
        """The strings that occur in the text, overlapping ones included, each once, in the order
        they end in the text."""
        return list(dict.fromkeys(self.each(text)))

    def each(self, text: str) -> Iterator[str]:
        """Every occurrence, repeats included."""
        if not self._empty:
            for _, word in self._automaton.iter(text):
                yield word


class AnchorIndex:
    """Which of many gated items (patterns) can match a text, from the anchors it contains."""

    def __init__(self, gated: Iterable[tuple[frozenset[str] | None, Hashable]]):
        by_anchor: dict[str, set[Hashable]] = {}
        for found, item in gated:
            for anchor in found or ():
                by_anchor.setdefault(anchor, set()).add(item)
        self._items = {anchor: frozenset(items) for anchor, items in by_anchor.items()}
        self._anchors = Substrings(self._items)

    def live(self, text: str) -> frozenset:
        """The items one of whose anchors the text contains."""
        found: set = set()
        items = self._items
        for anchor in self._anchors.each(text):
            found |= items[anchor]
        return frozenset(found)
