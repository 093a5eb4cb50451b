"""The bilingual classifier: operators' rules and a model trained from their examples, combined.

Rules are evidence: each keyword or pattern that fires for a category adds `rule_weight`
log-odds to the model's probability for it. Safety is asymmetric: a fraud rule that fires
makes the urgency critical whatever the category ends up being, the model alone can lift a
message to fraud but never take one away from the fraud rules, and nothing lowers the urgency
of a fraud report. Every decision carries its confidence and the rules that fired.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

from router.classify.clauses import cues, frame, spans
from router.classify.entities import extract_entities
from router.classify.examples import training_set
from router.classify.fastre import AnchorIndex, anchors, compile_fast
from router.classify.keywords import KeywordIndex
from router.classify.model import trained
from router.classify.textprep import detect_language, for_model, prepare_with_source
from router.core.envelope import Classification, Urgency
from router.operator_files.schemas.classifier import ClassifierConfig

FRAUD = "unauthorized_transaction"
_LOG_FLOOR = math.log(
    1e-6
)  # a category the model gives nothing still has a sliver for rules to lift
_numbers = itertools.count()  # pattern numbers, unique in the process
_UPPER_IN_PATTERN = re.compile(r"(?<!\\)[A-Z]")


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern
    anchors: (
        frozenset[str] | None
    )  # one of these is in any text it matches (None: unknown, always runs)
    number: int  # its key in the AnchorIndex; numbers rise in the order patterns are written


def _compile(patterns: list[str]) -> tuple[_Pattern, ...]:
    """The text is already lower case, and ignoring case costs the regex engine twice the time,
    so only a pattern that spells an upper-case letter gets it."""
    out = []
    for p in patterns:
        flags = re.I if _UPPER_IN_PATTERN.search(p) else 0
        out.append(_Pattern(compile_fast(p, flags), anchors(p, flags), next(_numbers)))
    return tuple(out)


class _Gated:
    """Some patterns, in the order written; `runnable` gives those that can match a text: the ones
    whose anchors it contains, and the ones without anchors, which always run."""

    def __init__(self, patterns: tuple[_Pattern, ...]):
        self._regex = {p.number: p.regex for p in patterns}
        self._gated = frozenset(p.number for p in patterns if p.anchors)
        self._always = frozenset(p.number for p in patterns if not p.anchors)

    def runnable(self, live: frozenset[int]) -> list[re.Pattern]:
        numbers = live & self._gated  # a set operation in C: most texts leave few or none
        if self._always:
            numbers |= self._always
        return [self._regex[n] for n in sorted(numbers)] if numbers else []


# "The actual reason I'm writing: …", "最主要是这件事：…": in a long message the customer says which
# part matters; the rules and the model read from there on. Written on the normalized text.
_MAIN_POINT = re.compile(
    r"\b(?:the\s+(?:actual|real|main)\s+reason\s+(?:i'm|i\s+am|i'?ve\s+been)\s+(?:actually\s+)?"
    r"(?:writing|contacting|emailing|messaging|getting in touch)|the\s+reason\s+i'm\s+actually\s+"
    r"(?:writing|contacting)|and\s+mainly|but\s+mainly|most\s+importantly|more\s+importantly|"
    r"the\s+(?:main|real|big|important)\s+(?:thing|issue|problem|question)\s+is|"
    r"what\s+i\s+(?:really|actually)\s+need)\b"
    r"|(?:最主要|最重要|最要紧|最紧要|主要的?问题|真正的问题|重点是|最关键)"
)
_MAIN_POINT_AFTER = 40  # characters: a cue at the very start is the whole message anyway
_MAIN_POINT_REST = 20  # and the part it points to must say something


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Text:
    """A prepared message and what every rule asks of it, computed once."""

    __slots__ = ("text", "keywords", "live", "source", "active", "_framing")

    def __init__(
        self,
        text: str,
        keywords: dict[str, list[str]],
        live: frozenset[int],
        source: str,
        active: frozenset[str],
        framing: tuple[bool, bool] | None = None,
    ):
        self.text = text
        self.keywords = keywords
        # Numbers of the patterns one of whose anchors it contains: the others cannot match.
        self.live = live
        self.source = source  # the subject and new text as written, for the entities
        self.active = active  # owners (rules) with a keyword found or a pattern that could match
        self._framing = framing

    @property
    def framing(self) -> tuple[bool, bool]:
        """(A denial word, a fraud frame word) somewhere: else matches need no framing. Looked
        for only when a rule matched, which many messages never get to."""
        if self._framing is None:
            self._framing = cues(self.text)
        return self._framing


class _Evidence:
    """One rule's patterns and negative patterns; its keywords live in the shared KeywordIndex.

    A pattern whose anchors are known runs only when the text contains one of them (`_Text.live`);
    one whose anchors are unknown always runs.
    """

    def __init__(self, owner: str, patterns: list[str], negatives: list[str]):
        self.owner = owner
        self.patterns = _compile(patterns)
        self.negatives = _compile(negatives)
        self._patterns = _Gated(self.patterns)
        self._negatives = _Gated(self.negatives)
        self.always = any(not p.anchors for p in (*self.patterns, *self.negatives))

    def negated(self, text: _Text) -> re.Match | None:
        body = text.text
        for regex in self._negatives.runnable(text.live):
            match = regex.search(body)
            if match:
                return match
        return None

    def hits(
        self, text: _Text, *, fraud: bool = False, others: bool = True
    ) -> tuple[list[str], list[str]]:
        """The rules that fired as evidence, and those whose every match the customer framed away
        (denied; for fraud also a hypothetical, someone else's loss, a scam avoided)."""
        body = text.text
        keywords = text.keywords.get(self.owner, ())
        runnable = self._patterns.runnable(text.live)
        found = [f"kw:{k}" for k in keywords]
        for regex in runnable:
            match = regex.search(body)
            if match:
                found.append(f"re:{_clip(match.group(0))}")
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
                    dropped.append(f"{reason}:{_clip(matches[0].group(0))}")
                else:
                    found.append(f"re:{_clip(matches[0].group(0))}")
        return found, dropped

    def fires(self, text: _Text, *, scoped: bool = False, others: bool = True) -> bool:
        """`scoped`: only evidence the customer did not frame away counts (the fraud rules and
        the raising urgency rules); `others`: someone else's loss is framed away too."""
        if self.owner not in text.active:
            return False
        if self.owner not in text.keywords:
            body = text.text
            if not any(regex.search(body) for regex in self._patterns.runnable(text.live)):
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


@dataclass(frozen=True)
class _UrgencyRule:
    name: str
    categories: frozenset[str]
    urgency: Urgency
    lowers: bool
    urgent_lane: bool
    evidence: _Evidence
    first: str  # the category listed first: an urgent-lane rule that fires is evidence for it


class Classifier:
    def __init__(self, config: ClassifierConfig, version: str = ""):
        self._config = config
        self._version = version
        self._settings = config.model
        self._keywords = KeywordIndex()
        self._categories: dict[str, _Evidence] = {}
        for name, rules in config.categories.items():
            self._keywords.add(name, rules.keywords.all())
            self._categories[name] = _Evidence(name, rules.patterns, rules.negative_patterns)
        self._defaults = {name: rules.urgency for name, rules in config.categories.items()}
        fraud_weight = self._settings.fraud_rule_weight
        self._weights = {
            name: fraud_weight
            if name == FRAUD and fraud_weight is not None
            else self._settings.rule_weight
            for name in self._categories
        }
        self._urgency_rules = []
        for rule in config.urgency_rules:
            owner = f"urgency:{rule.name}"
            self._keywords.add(owner, rule.keywords.all())
            evidence = _Evidence(owner, rule.patterns, rule.negative_patterns)
            self._urgency_rules.append(
                _UrgencyRule(
                    rule.name,
                    frozenset(rule.categories),
                    rule.urgency,
                    rule.lowers,
                    rule.urgent_lane,
                    evidence,
                    rule.categories[0],
                )
            )
        self._lane_rules = [rule for rule in self._urgency_rules if rule.urgent_lane]
        self._rules_for = {
            name: [r for r in self._urgency_rules if name in r.categories]
            for name in self._categories
        }
        every = [*self._categories.values(), *(rule.evidence for rule in self._urgency_rules)]
        self._anchors = AnchorIndex(
            (p.anchors, p.number) for e in every for p in (*e.patterns, *e.negatives)
        )
        self._owner_of = {p.number: e.owner for e in every for p in (*e.patterns, *e.negatives)}
        self._always_active = frozenset(e.owner for e in every if e.always)
        texts, labels, weights = training_set(config)
        self.model = trained(texts, labels, self._settings.regularization, weights)

    @property
    def categories(self) -> list[str]:
        return list(self._categories)

    def prescreen(self, text: str, subject: str | None = None) -> bool:
        """The fast rules only: may this message be fraud, a takeover or otherwise critical?"""
        return self._urgent(self._text(text, subject))

    def _urgent(self, prepared: _Text) -> bool:
        fraud = self._categories.get(FRAUD)
        if fraud is not None and fraud.fires(prepared, scoped=True):
            return True
        return any(
            rule.evidence.fires(prepared, scoped=True, others=False) for rule in self._lane_rules
        )

    def classify(
        self, text: str, channel: str | None = None, subject: str | None = None
    ) -> Classification:
        prepared = self._text(text, subject)
        fired: list[str] = []
        focus = _MAIN_POINT.search(prepared.text, _MAIN_POINT_AFTER)
        if (
            focus
            and len(prepared.text) - focus.end() >= _MAIN_POINT_REST
            and not self._urgent(prepared)
        ):
            # Read from the point the customer marked; entities still come from the whole text.
            # Never when the part before it reports fraud or an intruder: that always counts.
            fired.append(f"focus:{_clip(focus.group(0))}")
            tail = self._text(prepared.text[focus.start() :], None)
            tail.source = prepared.source
            prepared = tail
        hits: dict[str, int] = {}
        negated: set[str] = set()
        active = prepared.active
        for name, evidence in self._categories.items():
            if name not in active:  # no keyword found, no pattern that could match
                continue
            negation = evidence.negated(prepared)
            if negation:
                # "This is not fraud": the category's rules are off, and the statement itself
                # counts against it as much as one rule would count for it.
                negated.add(name)
                hits[name] = -1
                fired.append(f"{name}:negated:{_clip(negation.group(0))}")
                continue
            found, dropped = evidence.hits(prepared, fraud=name == FRAUD)
            fired += [f"{name}:{label}" for label in dropped]
            if not found:
                if dropped:
                    # "Not a failed payment", "my colleague was scammed": said, and ruled out.
                    hits[name] = -1
                    if name == FRAUD:
                        negated.add(name)
                continue
            hits[name] = min(len(found), self._settings.max_rule_hits)
            fired += [f"{name}:{label}" for label in found]

        for rule in self._lane_rules if hits.get(FRAUD, 0) <= 0 else ():
            # Someone in the account now, a change that was not the customer, a phone stolen
            # unlocked: the event names its category (the rule's first), beside the words that
            # name the device or the password ("设备列表", "change password"). Not when money
            # moved: then it is how the fraud happened.
            first = rule.first
            if (
                first in self._weights
                and first not in negated
                and f"urgency:{rule.name}" in active
                and rule.evidence.fires(prepared, scoped=True, others=False)
            ):
                hits[first] = min(max(hits.get(first, 0), 0) + 1, self._settings.max_rule_hits)
                fired.append(f"{first}:event:{rule.name}")

        log_probabilities = self.model.log_probabilities(for_model(prepared.text))
        model_best = max(log_probabilities, key=log_probabilities.__getitem__)
        fired.append(f"model:{model_best}={math.exp(log_probabilities[model_best]):.2f}")
        posterior = self._combine(log_probabilities, hits)
        category = max(posterior, key=posterior.__getitem__)
        confidence = posterior[category]

        fraud_rule = hits.get(FRAUD, 0) > 0
        if (
            category != FRAUD
            and FRAUD not in negated
            and posterior.get(FRAUD, 0.0) >= self._settings.fraud_floor
        ):
            # Fraud wins below an even chance (a missed fraud report costs the most), unless the
            # customer said in so many words that nothing was taken.
            fired.append(f"safety:fraud_floor={posterior[FRAUD]:.2f}")
            category, confidence = FRAUD, posterior[FRAUD]

        possible_fraud = (
            category == FRAUD
            and not fraud_rule
            and confidence < self._settings.possible_fraud_below
        )
        if possible_fraud:
            # Unfamiliar text drifts to the biggest class: no fraud rule fired, so a person reads
            # it first (triage, high) instead of the fraud desk at critical.
            fired.append(f"triage:possible_fraud={confidence:.2f}")
            category = max((name for name in posterior if name != FRAUD), key=posterior.__getitem__)
            confidence = self._doubtful(posterior[category])

        urgency = self._urgency(category, prepared, fired)
        if possible_fraud and urgency.rank < Urgency.HIGH.rank:
            urgency = Urgency.HIGH
        if fraud_rule and urgency is not Urgency.CRITICAL:
            fired.append("safety:fraud_rule_keeps_critical")
            urgency = Urgency.CRITICAL
        # Validated: pydantic's compiled validation costs less than model_construct's Python loop.
        return Classification(
            category=category,
            urgency=urgency,
            confidence=round(confidence, 3),
            rules=fired,
            language=detect_language(prepared.source),
            entities=extract_entities(prepared.source),
            rules_version=self._version,
        )

    def _doubtful(self, confidence: float) -> float:
        """A confidence the dispatcher's triage test sends to a person (when triage is on)."""
        if not self._config.triage_queue:
            return confidence
        return min(confidence, self._config.triage_below_confidence - 0.001)

    def _text(self, text: str, subject: str | None) -> _Text:
        prepared, source = prepare_with_source(text, subject)
        keywords, live = self._keywords.find(prepared), self._anchors.live(prepared)
        owner_of = self._owner_of
        active = frozenset({owner_of[n] for n in live}.union(keywords, self._always_active))
        return _Text(prepared, keywords, live, source, active)

    def _combine(
        self, log_probabilities: dict[str, float], hits: dict[str, int]
    ) -> dict[str, float]:
        logits = {}
        for name, weight in self._weights.items():
            value = log_probabilities.get(name, _LOG_FLOOR)
            logits[name] = (value if value > _LOG_FLOOR else _LOG_FLOOR) + weight * hits.get(
                name, 0
            )
        top = max(logits.values())
        exp = {name: math.exp(value - top) for name, value in logits.items()}
        total = sum(exp.values())
        return {name: value / total for name, value in exp.items()}

    def _urgency(self, category: str, prepared: _Text, fired: list[str]) -> Urgency:
        urgency = self._defaults.get(category, Urgency.LOW)
        if category == FRAUD:
            return Urgency.CRITICAL
        applicable = self._rules_for.get(category, ())
        # Lowering rules first, then raising ones: a sign of harm always wins over a sign of calm.
        for rule in applicable:
            if rule.lowers and rule.urgency.rank < urgency.rank and rule.evidence.fires(prepared):
                urgency = rule.urgency
                fired.append(f"urgency:{rule.name}")
                break
        for rule in applicable:
            if (
                not rule.lowers
                and rule.urgency.rank > urgency.rank
                and rule.evidence.fires(prepared, scoped=True, others=False)
            ):
                urgency = rule.urgency
                fired.append(f"urgency:{rule.name}")
        return urgency
