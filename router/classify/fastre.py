"""Run only the patterns that can match: a gate of literal anchors in front of the regex engine.

Most operator patterns are built of word lists: `\\b(payments?|charges?|...)`, `(钱|余额)`. A
pattern can only match a text that contains one word of each list it requires: the rarest such
list is its anchors.
`AnchorIndex` finds, in one scan, which anchors of all patterns a text contains, so each pattern
is searched only when one of its anchors is there. A pattern whose anchors cannot be worked out
(it starts with `.`, `\\d`, an optional group, ignores case, ...) is always searched.
`Substrings` is that one scan (an Aho-Corasick automaton), also used for Chinese keywords, and
`compile_fast` puts a lookahead for a pattern's possible first characters in front of it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

import ahocorasick

_c: Any
_parser: Any
try:  # the parser behind `re`; it is internal, so anything unexpected just disables the gate
    _c = importlib.import_module("re._constants")  # internal: typeshed has no stubs for it
    _parser = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - another Python: every pattern is always searched
    _parser = None

_MAX_CHARSET = 40


def anchors(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """Literal strings at least one of which is in every text the pattern matches, or None."""
    if _parser is None or flags & re.IGNORECASE:
        return None
    try:
        parsed = _parser.parse(pattern, flags)
        if parsed.state.flags & re.IGNORECASE:  # an inline (?i): literals of any case
            return None
        found = _required(list(parsed))
    except Exception:  # an analysis this module does not know: no gate
        return None
    return frozenset(found) if found else None


def also_required(pattern: str, flags: int = 0, limit: int = 3) -> tuple[frozenset[str], ...]:
    """Besides `anchors`, other sets of literal strings one of each of which is in every text
    the pattern matches (`\\b(sent|moved)\\s+(money|funds)` needs a word of both lists): up to
    `limit`, rarest first, none of single ASCII characters (almost every text has one)."""
    if _parser is None or flags & re.IGNORECASE:
        return ()
    try:
        parsed = _parser.parse(pattern, flags)
        if parsed.state.flags & re.IGNORECASE:  # an inline (?i)
            return ()
        items = list(parsed)
        primary, found = _required(items), _every_required(items)
    except Exception:  # an analysis this module does not know: no further gate
        return ()
    useful: list[set[str]] = []
    for part in found:
        rare = all(len(literal) > 1 or not literal.isascii() for literal in part)
        if rare and part != primary and part not in useful:
            useful.append(part)
    useful.sort(key=lambda part: (-min(map(len, part)), len(part)))
    return tuple(frozenset(part) for part in useful[:limit])


def _every_required(items: list) -> list[set[str]]:
    """Each part every match must contain, as the set of literals one of which it is."""
    out: list[set[str]] = []
    for i, (op, av) in enumerate(items):
        if op is _c.LITERAL:
            if i and items[i - 1][0] is _c.LITERAL:
                continue  # inside a run already taken whole
            run = []
            for next_op, next_av in items[i:]:
                if next_op is not _c.LITERAL:
                    break
                run.append(chr(next_av))
            out.append({"".join(run)})
        elif op is _c.IN:
            chars = _charset(av)
            if chars:
                out.append(chars)
        elif op is _c.BRANCH:
            either: set[str] | None = set()
            for alternative in av[1]:
                part = _required(list(alternative))
                if not part or either is None:
                    either = None
                    break
                either |= part
            if either:
                out.append(either)
        elif op is _c.SUBPATTERN:
            if not av[1] & re.IGNORECASE and not _can_be_empty(av[-1]):
                out += _every_required(list(av[-1]))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT) and av[0] >= 1:
            out += _every_required(list(av[2]))
    return out


def _required(items: list) -> set[str] | None:
    """Of the parts every match must contain (`_every_required`), the one whose literals are
    rarest: the longest shortest literal (a pattern such as `\\b(i|we) ... (never|didn't)
    (make|authorise)` is gated on `make`/`authorise` rather than on `i`)."""
    best: set[str] | None = None
    for found in _every_required(items):
        if best is None or _rarer(found, best):
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


_CATEGORIES = {"CATEGORY_DIGIT": r"\d", "CATEGORY_WORD": r"\w", "CATEGORY_SPACE": r"\s"}


def compile_fast(pattern: str, flags: int = 0) -> re.Pattern:
    """`re.compile`, with a lookahead for the characters a match can start with put in front.

    `re` tries a pattern such as `\\b(never|didn't) ...` in full at every position of the text;
    a leading `(?=[nd])` lets it move on after one character test. The lookahead only states what
    every match already starts with, so the matches are the same.
    """
    first = _first_characters(pattern, flags)
    if first is None:
        return re.compile(pattern, flags)
    return re.compile(f"(?=[{first}])(?:{pattern})", flags)


def _first_characters(pattern: str, flags: int) -> str | None:
    """A character class (without brackets) that every match starts with, or None."""
    if _parser is None or re.match(r"\(\?[aiLmsux]+\)", pattern):  # global flags must stay first
        return None
    try:
        found, can_be_empty = _first(list(_parser.parse(pattern, flags)))
    except Exception:  # an analysis this module does not know: no lookahead
        return None
    if not found or can_be_empty:
        return None
    return "".join(sorted(found))


def _first(items: list) -> tuple[set[str] | None, bool]:
    """What the sequence's first consumed character can be, and whether it can match nothing."""
    out: set[str] = set()
    for op, av in items:
        if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            continue  # zero width: the next item consumes the first character
        if op is _c.LITERAL:
            return out | {re.escape(chr(av))}, False
        if op is _c.IN:
            chars = _class_items(av)
            return (None, False) if chars is None else (out | chars, False)
        if op is _c.BRANCH:
            parts = [_first(list(alternative)) for alternative in av[1]]
            if any(found is None for found, _ in parts):
                return None, False
            out = out.union(*(found for found, _ in parts if found is not None))
            if not any(empty for _, empty in parts):
                return out, False
            continue
        if op in (_c.SUBPATTERN, _c.ATOMIC_GROUP):
            found, empty = _first(list(av[-1] if op is _c.SUBPATTERN else av))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
            found, empty = _first(list(av[2]))
            empty = empty or av[0] == 0
        else:  # any character, a negated class, a back reference...: anything can come first
            return None, False
        if found is None:
            return None, False
        out |= found
        if not empty:
            return out, False
    return out, True


def _class_items(av) -> set[str] | None:
    out: set[str] = set()
    for op, value in av:
        if op is _c.LITERAL:
            out.add(re.escape(chr(value)))
        elif op is _c.RANGE:
            out.add(f"{re.escape(chr(value[0]))}-{re.escape(chr(value[1]))}")
        elif op is _c.CATEGORY and str(value) in _CATEGORIES:
            out.add(_CATEGORIES[str(value)])
        else:  # a negated class or a category without a short name
            return None
    return out


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

    def found(self, text: str) -> list[str]:
        """The strings that occur in the text, overlapping ones included, each once, in the order
        they end in the text (the longer first where two end together)."""
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
        # Each anchor's automaton value is its items: the items of a text are one union.
        self._automaton = ahocorasick.Automaton()
        for anchor, items in by_anchor.items():
            self._automaton.add_word(anchor, frozenset(items))
        self._empty = not by_anchor
        if not self._empty:
            self._automaton.make_automaton()

    def live(self, text: str) -> frozenset:
        """The items one of whose anchors the text contains."""
        if self._empty:
            return frozenset()
        return frozenset().union(*[items for _, items in self._automaton.iter(text)])
