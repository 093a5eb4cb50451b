"""Run only the patterns that can match: a gate of literal anchors in front of the regex engine.

Most operator patterns begin with a word from a list: `\\b(payments?|charges?|...)`, `(钱|余额)`.
A pattern can only match a text that contains one of those leading literals, its anchors.
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
        found = _leading(list(_parser.parse(pattern, flags)))
    except Exception:  # an analysis this module does not know: no gate
        return None
    return frozenset(found) if found else None


def _leading(items: list) -> set[str] | None:
    for i, (op, av) in enumerate(items):
        if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            continue  # zero width: the next item decides
        if op is _c.LITERAL:
            literal = []
            for next_op, next_av in items[i:]:
                if next_op is not _c.LITERAL:
                    break
                literal.append(chr(next_av))
            return {"".join(literal)}
        if op is _c.IN:
            return _charset(av)
        if op is _c.BRANCH:
            union: set[str] = set()
            for alternative in av[1]:
                found = _leading(list(alternative))
                if not found:
                    return None
                union |= found
            return union
        if op is _c.SUBPATTERN:
            return _leading(list(av[-1]))
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT) and av[0] >= 1:
            return _leading(list(av[2]))
        return None  # optional, any character, a class: no literal must be there
    return None


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
        self._finder = re.compile(f"(?=({_trie(words)}))") if words else None
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


def _trie(words: list[str]) -> str:
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
