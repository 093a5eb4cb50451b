"""Every operator keyword of every rule, found in one pass over a message.

English keywords match whole words ("pin" is not in "spinning"), so they are looked up as word
n-grams; Chinese has no spaces, so Chinese keywords match anywhere, found in one pass by an
Aho-Corasick automaton (`fastre.Substrings`). Either way the cost grows with the message, not
with the number of keywords.
"""

from __future__ import annotations

import re
from collections import defaultdict

from router.classify.fastre import Substrings
from router.classify.textprep import CJK, normalize

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class KeywordIndex:
    def __init__(self) -> None:
        self._words: dict[tuple[str, ...], set[str]] = defaultdict(set)
        self._chinese: dict[str, set[str]] = defaultdict(set)
        self._sizes_by_first_word: dict[str, set[int]] = defaultdict(set)
        self._finder: Substrings | None = None  # every Chinese keyword, found wherever it occurs

    def add(self, owner: str, keywords: list[str]) -> None:
        for keyword in keywords:
            key = normalize(keyword)
            if not key:
                continue
            if CJK.search(key):
                self._chinese[key].add(owner)
            else:
                words = tuple(_WORD.findall(key))
                if words:
                    self._words[words].add(owner)
                    self._sizes_by_first_word[words[0]].add(len(words))

        self._finder = None  # rebuilt on the next find

    def _chinese_finder(self) -> Substrings | None:
        if self._finder is None and self._chinese:
            self._finder = Substrings(self._chinese)
        return self._finder

    def find(self, text: str) -> dict[str, list[str]]:
        """For a normalized text: each owner with the keywords of theirs that it contains."""
        found: dict[str, list[str]] = {}
        words = _WORD.findall(text)
        sizes_by_first = self._sizes_by_first_word
        # Most words start no keyword: one set operation in C finds the few that may.
        if not sizes_by_first.keys().isdisjoint(words):
            for i, word in enumerate(words):
                sizes = sizes_by_first.get(word)
                if sizes:
                    for size in sizes:
                        owners = self._words.get(tuple(words[i : i + size]))
                        if owners:
                            _hit(found, " ".join(words[i : i + size]), owners)
        finder = self._chinese_finder()
        if finder is not None and CJK.search(text):
            for keyword in finder.found(text):
                _hit(found, keyword, self._chinese[keyword])
        return found


def _hit(found: dict[str, list[str]], keyword: str, owners: set[str]) -> None:
    for owner in owners:
        keywords = found.setdefault(owner, [])
        if keyword not in keywords:
            keywords.append(keyword)
