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

from router.config import ClassifierConfig
from router.entities import extract_entities
from router.envelope import Classification, Urgency
from router.model import NgramModel
from router.textprep import for_model, new_text, normalize, prepare, subject_text

FRAUD = "unauthorized_transaction"
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> str:
    """zh when Chinese carries the message (a Chinese character says about as much as a word)."""
    cjk = len(_CJK.findall(text))
    if not cjk:
        return "en"
    return "zh" if cjk * 4 >= len(_LATIN.findall(text)) else "en"


def _keyword_regex(keywords: list[str]) -> re.Pattern | None:
    words = sorted({normalize(k) for k in keywords if normalize(k)}, key=len, reverse=True)
    if not words:
        return None
    # Latin keywords match whole words ("pin" is not "spinning"); Chinese ones anywhere.
    parts = [re.escape(w) if _CJK.search(w) else rf"(?<![a-z]){re.escape(w)}(?![a-z])" for w in words]
    return re.compile("|".join(parts))


def _compile(patterns: list[str]) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p, re.I) for p in patterns)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class _Evidence:
    """What one set of keywords, patterns and negative patterns found in a text."""

    keywords: re.Pattern | None
    patterns: tuple[re.Pattern, ...]
    negatives: tuple[re.Pattern, ...]

    @classmethod
    def build(cls, keywords: list[str], patterns: list[str], negatives: list[str]) -> _Evidence:
        return cls(_keyword_regex(keywords), _compile(patterns), _compile(negatives))

    def negated(self, text: str) -> re.Match | None:
        for negative in self.negatives:
            match = negative.search(text)
            if match:
                return match
        return None

    def hits(self, text: str) -> list[str]:
        found: list[str] = []
        if self.keywords is not None:
            for match in self.keywords.finditer(text):
                label = f"kw:{match.group(0)}"
                if label not in found:
                    found.append(label)
        for pattern in self.patterns:
            match = pattern.search(text)
            if match:
                found.append(f"re:{_clip(match.group(0))}")
        return found

    def fires(self, text: str) -> bool:
        if self.keywords is not None and self.keywords.search(text):
            return not self.negated(text)
        return any(p.search(text) for p in self.patterns) and not self.negated(text)


@dataclass(frozen=True)
class _UrgencyRule:
    name: str
    categories: frozenset[str]
    urgency: Urgency
    lowers: bool
    urgent_lane: bool
    evidence: _Evidence


class Classifier:
    def __init__(self, config: ClassifierConfig, version: str = ""):
        self._config = config
        self._version = version
        self._settings = config.model
        self._categories = {
            name: _Evidence.build(rules.keywords.all(), rules.patterns, rules.negative_patterns)
            for name, rules in config.categories.items()
        }
        self._defaults = {name: rules.urgency for name, rules in config.categories.items()}
        self._urgency_rules = [
            _UrgencyRule(
                rule.name, frozenset(rule.categories), rule.urgency, rule.lowers, rule.urgent_lane,
                _Evidence.build(rule.keywords.all(), rule.patterns, rule.negative_patterns),
            )
            for rule in config.urgency_rules
        ]
        self._lane_rules = [rule for rule in self._urgency_rules if rule.urgent_lane]
        texts, labels = [], []
        for name, rules in config.categories.items():
            for example in rules.examples.all():
                texts.append(for_model(prepare(example)))
                labels.append(name)
        self.model = NgramModel(texts, labels, c=self._settings.regularization)

    @property
    def categories(self) -> list[str]:
        return list(self._categories)

    def prescreen(self, text: str, subject: str | None = None) -> bool:
        """The fast rules only: may this message be fraud, a takeover or otherwise critical?"""
        prepared = prepare(text, subject)
        fraud = self._categories.get(FRAUD)
        if fraud is not None and fraud.fires(prepared):
            return True
        return any(rule.evidence.fires(prepared) for rule in self._lane_rules)

    def classify(self, text: str, channel: str | None = None, subject: str | None = None) -> Classification:
        prepared = prepare(text, subject)
        fired: list[str] = []
        hits: dict[str, int] = {}
        for name, evidence in self._categories.items():
            found = evidence.hits(prepared)
            if not found:
                continue
            negation = evidence.negated(prepared)
            if negation:
                fired.append(f"{name}:negated:{_clip(negation.group(0))}")
                continue
            hits[name] = min(len(found), self._settings.max_rule_hits)
            fired += [f"{name}:{label}" for label in found]

        probabilities = self.model.probabilities(for_model(prepared))
        model_best = max(probabilities, key=probabilities.__getitem__)
        fired.append(f"model:{model_best}={probabilities[model_best]:.2f}")
        posterior = self._combine(probabilities, hits)
        category = max(posterior, key=posterior.__getitem__)
        confidence = posterior[category]

        fraud_rule = FRAUD in hits
        if category != FRAUD and probabilities.get(FRAUD, 0.0) >= self._settings.fraud_floor:
            # The model alone may lift a message to fraud: a missed fraud report costs the most.
            fired.append(f"safety:model_fraud={probabilities[FRAUD]:.2f}")
            category, confidence = FRAUD, max(posterior[FRAUD], probabilities[FRAUD])

        urgency = self._urgency(category, prepared, fired)
        if fraud_rule and urgency is not Urgency.CRITICAL:
            fired.append("safety:fraud_rule_keeps_critical")
            urgency = Urgency.CRITICAL
        return Classification(
            category=category,
            urgency=urgency,
            confidence=round(confidence, 3),
            rules=fired,
            language=detect_language(text),
            entities=extract_entities(f"{subject_text(subject)}\n{new_text(text)}"),
            rules_version=self._version,
        )

    def _combine(self, probabilities: dict[str, float], hits: dict[str, int]) -> dict[str, float]:
        weight = self._settings.rule_weight
        logits = {
            name: math.log(max(probabilities.get(name, 0.0), 1e-6)) + weight * hits.get(name, 0)
            for name in self._categories
        }
        top = max(logits.values())
        exp = {name: math.exp(value - top) for name, value in logits.items()}
        total = sum(exp.values())
        return {name: value / total for name, value in exp.items()}

    def _urgency(self, category: str, prepared: str, fired: list[str]) -> Urgency:
        urgency = self._defaults.get(category, Urgency.LOW)
        if category == FRAUD:
            return Urgency.CRITICAL
        applicable = [r for r in self._urgency_rules if category in r.categories]
        # Lowering rules first, then raising ones: a sign of harm always wins over a sign of calm.
        for rule in applicable:
            if rule.lowers and rule.urgency.rank < urgency.rank and rule.evidence.fires(prepared):
                urgency = rule.urgency
                fired.append(f"urgency:{rule.name}")
                break
        for rule in applicable:
            if not rule.lowers and rule.urgency.rank > urgency.rank and rule.evidence.fires(prepared):
                urgency = rule.urgency
                fired.append(f"urgency:{rule.name}")
        return urgency
