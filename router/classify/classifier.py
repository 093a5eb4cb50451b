"""The bilingual classifier: operators' rules and a model trained from their examples, combined.

Rules are evidence: each keyword or pattern that fires for a category adds `rule_weight`
log-odds to the model's probability for it. Safety is asymmetric: a fraud rule that fires
makes the urgency critical whatever the category ends up being, the model alone can lift a
message to fraud but never take one away from the fraud rules, and nothing lowers the urgency
of a fraud report. Every decision carries its confidence and the rules that fired.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from router.classify.entities import extract_entities
from router.classify.evidence import Evidence, EvidenceIndex, Prepared, clip
from router.classify.examples import training_set
from router.classify.model import trained
from router.classify.textprep import detect_language, for_model, prepare_with_source
from router.core.envelope import Classification, Urgency
from router.operator_files.schemas.classifier import ClassifierConfig

FRAUD = "unauthorized_transaction"
_LOG_FLOOR = math.log(
    1e-6
)  # a category the model gives nothing still has a sliver for rules to lift

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


@dataclass(frozen=True)
class _UrgencyRule:
    name: str
    categories: frozenset[str]
    urgency: Urgency
    lowers: bool
    urgent_lane: bool
    evidence: Evidence
    first: str  # the category listed first: an urgent-lane rule that fires is evidence for it
    rank: int  # the urgency's rank, compared for every message


class Classifier:
    def __init__(self, config: ClassifierConfig, version: str = ""):
        self._config = config
        self._version = version
        self._settings = config.model
        self._index = EvidenceIndex()
        self._categories: dict[str, Evidence] = {}
        for name, rules in config.categories.items():
            self._categories[name] = self._index.add(
                name, rules.keywords.all(), rules.patterns, rules.negative_patterns
            )
        self._defaults = {name: rules.urgency for name, rules in config.categories.items()}
        fraud_weight = self._settings.fraud_rule_weight
        self._weights = {
            name: fraud_weight
            if name == FRAUD and fraud_weight is not None
            else self._settings.rule_weight
            for name in self._categories
        }
        self._weight_items = list(self._weights.items())
        self._urgency_rules = []
        for rule in config.urgency_rules:
            evidence = self._index.add(
                f"urgency:{rule.name}",
                rule.keywords.all(),
                rule.patterns,
                rule.negative_patterns,
            )
            self._urgency_rules.append(
                _UrgencyRule(
                    rule.name,
                    frozenset(rule.categories),
                    rule.urgency,
                    rule.lowers,
                    rule.urgent_lane,
                    evidence,
                    rule.categories[0],
                    rule.urgency.rank,
                )
            )
        self._lane_rules = [rule for rule in self._urgency_rules if rule.urgent_lane]
        self._rules_for = {
            name: [r for r in self._urgency_rules if name in r.categories]
            for name in self._categories
        }
        texts, labels, weights = training_set(config)
        self.model = trained(texts, labels, self._settings.regularization, weights)

    @property
    def categories(self) -> list[str]:
        return list(self._categories)

    def prescreen(self, text: str, subject: str | None = None) -> bool:
        """The fast rules only: may this message be fraud, a takeover or otherwise critical?"""
        return self._urgent(self._text(text, subject))

    def screen(
        self, text: str, channel: str | None = None, subject: str | None = None
    ) -> tuple[bool, Classification]:
        """The pre-screen and the classification of one message, its text prepared once."""
        prepared = self._text(text, subject)
        return self._urgent(prepared), self._classified(prepared, channel)

    def _urgent(self, prepared: Prepared) -> bool:
        fraud = self._categories.get(FRAUD)
        if fraud is not None and fraud.fires(prepared, scoped=True):
            return True
        return any(
            rule.evidence.fires(prepared, scoped=True, others=False) for rule in self._lane_rules
        )

    def classify(
        self, text: str, channel: str | None = None, subject: str | None = None
    ) -> Classification:
        return self._classified(self._text(text, subject), channel)

    def _classified(self, prepared: Prepared, channel: str | None) -> Classification:
        fired: list[str] = []
        focus = _MAIN_POINT.search(prepared.text, _MAIN_POINT_AFTER)
        if (
            focus
            and len(prepared.text) - focus.end() >= _MAIN_POINT_REST
            and not self._urgent(prepared)
        ):
            # Read from the point the customer marked; entities still come from the whole text.
            # Never when the part before it reports fraud or an intruder: that always counts.
            fired.append(f"focus:{clip(focus.group(0))}")
            tail, _ = prepare_with_source(prepared.text[focus.start() :])
            prepared = self._index.prepare(tail, prepared.source)
        hits: dict[str, int] = {}
        negated: set[str] = set()
        active = prepared.active
        for name, evidence in self._categories.items():
            if name not in active:  # no keyword found, no pattern that could match
                continue
            negation = evidence.negated(prepared) if evidence.negatives else None
            if negation:
                # "This is not fraud": the category's rules are off, and the statement itself
                # counts against it as much as one rule would count for it.
                negated.add(name)
                hits[name] = -1
                fired.append(f"{name}:negated:{clip(negation.group(0))}")
                continue
            found, dropped = evidence.hits(prepared, fraud=name == FRAUD)
            if dropped:
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
                and rule.evidence.owner in active
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

    def _text(self, text: str, subject: str | None) -> Prepared:
        prepared, source = prepare_with_source(text, subject)
        return self._index.prepare(prepared, source)

    def _combine(
        self, log_probabilities: dict[str, float], hits: dict[str, int]
    ) -> dict[str, float]:
        lp, hit = log_probabilities.get, hits.get
        logits = []
        for name, weight in self._weight_items:
            value = lp(name, _LOG_FLOOR)
            logits.append((value if value > _LOG_FLOOR else _LOG_FLOOR) + weight * hit(name, 0))
        top = max(logits)
        exp = [math.exp(value - top) for value in logits]
        total = sum(exp)
        return {name: value / total for name, value in zip(self._weights, exp, strict=True)}

    def _urgency(self, category: str, prepared: Prepared, fired: list[str]) -> Urgency:
        urgency = self._defaults.get(category, Urgency.LOW)
        if category == FRAUD:
            return Urgency.CRITICAL
        applicable = self._rules_for.get(category, ())
        rank = urgency.rank
        # Lowering rules first, then raising ones: a sign of harm always wins over a sign of calm.
        for rule in applicable:
            if rule.lowers and rule.rank < rank and rule.evidence.fires(prepared):
                urgency, rank = rule.urgency, rule.rank
                fired.append(f"urgency:{rule.name}")
                break
        for rule in applicable:
            if (
                not rule.lowers
                and rule.rank > rank
                and rule.evidence.fires(prepared, scoped=True, others=False)
            ):
                urgency, rank = rule.urgency, rule.rank
                fired.append(f"urgency:{rule.name}")
        return urgency
