"""A rule's evidence in a message: its keywords and patterns, gated by literal anchors, framed.

`EvidenceIndex` prepares a message once for every rule: the keywords it contains (one pass, see
keywords.py), the patterns one of whose literal anchors it contains (one Aho-Corasick pass, see
fastre.py), grouped by the rule that owns them in the order they are written, and the rules
with anything that could fire (`Prepared.active`). Each `Evidence` then only searches its
group: most rules of most messages search nothing.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from router.classify.clauses import CUE_ANCHORS, cues, frame, spans
from router.classify.fastre import AnchorIndex, also_required, anchors, compile_fast
from router.classify.keywords import KeywordIndex

_numbers = itertools.count()  # pattern numbers, unique in the process
_UPPER_IN_PATTERN = re.compile(r"(?<!\\)[A-Z]")
_NOTHING: tuple[re.Pattern, ...] = ()


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern
    anchors: (
        frozenset[str] | None
    )  # one of these is in any text it matches (None: unknown, always runs)
    number: int  # its key in the AnchorIndex; numbers rise in the order patterns are written
    also: tuple[frozenset[str], ...] = ()  # more literal sets, one of each in any text it matches


def _compile(patterns: list[str]) -> tuple[Pattern, ...]:
    """The text is already lower case, and ignoring case costs the regex engine twice the time,
    so only a pattern that spells an upper-case letter gets it."""
    out = []
    for p in patterns:
        flags = re.I if _UPPER_IN_PATTERN.search(p) else 0
        found = anchors(p, flags)
        also = also_required(p, flags) if found else ()
        out.append(Pattern(compile_fast(p, flags), found, next(_numbers), also))
    return tuple(out)


def clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Prepared:
    """A prepared message and what every rule asks of it, computed once."""

    __slots__ = ("text", "keywords", "runnable", "source", "active", "_framing", "_cues")

    def __init__(
        self,
        text: str,
        keywords: dict[str, list[str]],
        runnable: dict[object, list[re.Pattern]],
        source: str,
        active: frozenset[str],
        framing: tuple[bool, bool] | None = None,
        cue_regexes: frozenset[re.Pattern[str]] | None = None,
    ):
        self.text = text
        self.keywords = keywords  # each owner (rule) with its keywords found
        # Each pattern group (`Evidence.patterns`, `Evidence.negatives`) with its patterns that
        # can match, in the order written: the others' anchors are not in the text.
        self.runnable = runnable
        self.source = source  # the subject and new text as written, for the entities
        self.active = active  # owners with a keyword found or a pattern that could match
        self._framing = framing
        self._cues = cue_regexes  # the framing cues whose anchors the text holds (clauses.cues)

    @property
    def framing(self) -> tuple[bool, bool]:
        """(A denial word, a fraud frame word) somewhere: else matches need no framing. Looked
        for only when a rule matched, which many messages never get to."""
        if self._framing is None:
            self._framing = cues(self.text, self._cues)
        return self._framing


class Evidence:
    """One rule's patterns and negative patterns; its keywords live in the shared KeywordIndex.

    A pattern whose anchors are known runs only when the text contains one of them; one whose
    anchors are unknown always runs.
    """

    def __init__(self, owner: str, patterns: list[str], negatives: list[str]):
        self.owner = owner
        self.patterns = _compile(patterns)
        self.negatives = _compile(negatives)
        # The keys of this rule's two groups in `Prepared.runnable`.
        self.pattern_group, self.negative_group = object(), object()

    def negated(self, text: Prepared) -> re.Match | None:
        body = text.text
        for regex in text.runnable.get(self.negative_group, _NOTHING):
            match = regex.search(body)
            if match:
                return match
        return None

    def hits(
        self, text: Prepared, *, fraud: bool = False, others: bool = True
    ) -> tuple[list[str], list[str]]:
        """The rules that fired as evidence, and those whose every match the customer framed away
        (denied; for fraud also a hypothetical, someone else's loss, a scam avoided)."""
        body = text.text
        keywords = text.keywords.get(self.owner, ())
        runnable = text.runnable.get(self.pattern_group, _NOTHING)
        found = [f"kw:{k}" for k in keywords] if keywords else []
        for regex in runnable:
            match = regex.search(body)
            if match:
                found.append(f"re:{clip(match.group(0))}")
        if not found:
            return found, []
        denial, framed = text.framing
        if not (denial or (fraud and framed)):  # nothing in the message can frame a match away
            return found, []
        found = []
        dropped: list[str] = []
        for keyword in keywords:
            reason = _framed(body, spans(body, keyword), fraud, others)
            if reason:
                dropped.append(f"{reason}:{keyword}")
            else:
                found.append(f"kw:{keyword}")
        for regex in runnable:
            matches = list(itertools.islice(regex.finditer(body), 3))
            if matches:
                reason = _framed(body, [m.span() for m in matches], fraud, others)
                if reason:
                    dropped.append(f"{reason}:{clip(matches[0].group(0))}")
                else:
                    found.append(f"re:{clip(matches[0].group(0))}")
        return found, dropped

    def fires(self, text: Prepared, *, scoped: bool = False, others: bool = True) -> bool:
        """`scoped`: only evidence the customer did not frame away counts (the fraud rules and
        the raising urgency rules); `others`: someone else's loss is framed away too."""
        if self.owner not in text.active:
            return False
        if self.owner not in text.keywords:
            body = text.text
            runnable = text.runnable.get(self.pattern_group, _NOTHING)
            if not any(regex.search(body) for regex in runnable):
                return False
        if self.negated(text) is not None:
            return False
        return not scoped or bool(self.hits(text, fraud=True, others=others)[0])


def _framed(
    body: str, where: list[tuple[int, int]], fraud: bool, others: bool = True
) -> str | None:
    """Why none of these matches counts (the first match's reason), or None if one does."""
    reason = None
    for start, end in where:
        why = frame(body, start, end, fraud=fraud, others=others)
        if why is None:
            return None
        reason = reason or why
    return reason


class EvidenceIndex:
    """Every rule's keywords and patterns, and what of them a prepared message can fire."""

    def __init__(self) -> None:
        self.keywords = KeywordIndex()
        self._every: list[Evidence] = []
        self._anchors: AnchorIndex | None = None
        # Each pattern's number: its group, regex and owner.
        self._slots: dict[int, tuple[object, re.Pattern, str]] = {}
        self._ungated: frozenset[int] = frozenset()  # patterns without anchors: always run
        self._numbers: frozenset[int] = frozenset()  # patterns with anchors
        self._needs: dict[int, frozenset[tuple[int, int]]] = {}
        self._cue_regexes = frozenset(CUE_ANCHORS)
        # False: every pattern runs and every match is framed (`every_pattern`), what a test
        # compares the gated path with.
        self.gated = True

    def add(
        self, owner: str, keywords: list[str], patterns: list[str], negatives: list[str]
    ) -> Evidence:
        self.keywords.add(owner, keywords)
        evidence = Evidence(owner, patterns, negatives)
        self._every.append(evidence)
        for group, compiled in (
            (evidence.pattern_group, evidence.patterns),
            (evidence.negative_group, evidence.negatives),
        ):
            for p in compiled:
                self._slots[p.number] = (group, p.regex, owner)
        self._anchors = None
        return evidence

    def _index(self) -> AnchorIndex:
        if self._anchors is None:
            gated: list[tuple[frozenset[str] | None, object]] = [
                (p.anchors, p.number) for p in self._patterns() if p.anchors
            ]
            # A pattern that needs a word of several lists runs only when the text holds one of
            # each: its first list's anchors say it may, the keys (number, k) of the others must
            # all be found too.
            self._needs = {}
            for p in self._patterns():
                if p.anchors and p.also:
                    keys = [(p.number, k) for k in range(len(p.also))]
                    gated += zip(p.also, keys, strict=True)
                    self._needs[p.number] = frozenset(keys)
            self._numbers = frozenset(p.number for p in self._patterns() if p.anchors)
            # The framing cues' anchors ride along: one pass over the text finds both.
            gated += [(found, regex) for regex, found in CUE_ANCHORS.items() if found]
            self._anchors = AnchorIndex(gated)
            self._ungated = frozenset(p.number for p in self._patterns() if not p.anchors)
        return self._anchors

    def _patterns(self) -> Iterable[Pattern]:
        for e in self._every:
            yield from e.patterns
            yield from e.negatives

    def prepare(self, text: str, source: str) -> Prepared:
        """`text` normalized (textprep.prepare); `source` as written."""
        if not self.gated:
            return self.every_pattern(text, source)
        keywords = self.keywords.find(text)
        anchored = self._index().live(text)
        cue_regexes = anchored & self._cue_regexes
        numbers = anchored & self._numbers
        if self._ungated:
            numbers = numbers | self._ungated
        runnable: dict[object, list[re.Pattern]] = {}
        owners = set(keywords)
        slots, needs = self._slots, self._needs
        for number in sorted(numbers):
            need = needs.get(number)
            if need is not None and not need <= anchored:
                continue  # a word of another list it needs is not in the text
            group, regex, owner = slots[number]
            found = runnable.get(group)
            if found is None:
                runnable[group] = [regex]
                owners.add(owner)
            else:
                found.append(regex)
        return Prepared(text, keywords, runnable, source, frozenset(owners), None, cue_regexes)

    def every_pattern(self, text: str, source: str) -> Prepared:
        """`prepare` without the anchor gate, every match framed: what a test compares it with."""
        keywords = self.keywords.find(text)
        runnable: dict[object, list[re.Pattern]] = {}
        for number in sorted(self._slots):
            group, regex, _ = self._slots[number]
            runnable.setdefault(group, []).append(regex)
        owners = {owner for _, _, owner in self._slots.values()}.union(keywords)
        return Prepared(text, keywords, runnable, source, frozenset(owners), (True, True))
