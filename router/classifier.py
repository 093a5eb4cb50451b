"""Rule classifier: category, urgency, rules fired, language and entities from config/."""

from __future__ import annotations

import re
from dataclasses import dataclass

from router.config import ClassifierConfig
from router.envelope import Classification, Urgency

FRAUD = "unauthorized_transaction"
_CJK = re.compile(r"[\u4e00-\u9fff]")
_ENTITIES = {
    "transaction_ids": re.compile(r"\b(?:TX|TXN|T)\d{6,}\b", re.I),
    "error_codes": re.compile(r"\b[A-Z]{1,3}\d{3,5}\b"),
    "amounts": re.compile(r"(?:[¥$€£]|RMB|CNY|USD)\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:元|块|yuan|dollars?)", re.I),
}


def detect_language(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


@dataclass(frozen=True)
class _CompiledCategory:
    name: str
    urgency: Urgency
    keywords: tuple[str, ...]
    patterns: tuple[re.Pattern, ...]
    negatives: tuple[re.Pattern, ...]


class RuleClassifier:
    def __init__(self, config: ClassifierConfig, version: str = ""):
        self._config = config
        self._version = version
        self._categories = [
            _CompiledCategory(
                name=name,
                urgency=rules.urgency,
                keywords=tuple(k.lower() for k in rules.keywords.all()),
                patterns=tuple(re.compile(p, re.I) for p in rules.patterns),
                negatives=tuple(re.compile(p, re.I) for p in rules.negative_patterns),
            )
            for name, rules in config.categories.items()
        ]

    def _score(self, category: _CompiledCategory, lowered: str, text: str) -> tuple[int, list[str]]:
        if any(n.search(text) for n in category.negatives):
            return 0, []
        fired = [f"{category.name}:kw:{k}" for k in category.keywords if k in lowered]
        fired += [f"{category.name}:re:{p.pattern}" for p in category.patterns if p.search(text)]
        return len(fired), fired

    def prescreen(self, text: str) -> bool:
        """The fast rules only: may this message be an unauthorized transaction?"""
        lowered = text.lower()
        fraud = next(c for c in self._categories if c.name == FRAUD)
        return self._score(fraud, lowered, text)[0] > 0

    def classify(self, text: str) -> Classification:
        lowered = text.lower()
        best, best_score, fired_all = None, 0, []
        for category in self._categories:
            score, fired = self._score(category, lowered, text)
            fired_all += fired
            # Fraud wins ties: a report of a payment never made must never be read as something milder.
            if score > best_score or (score and score == best_score and category.name == FRAUD):
                best, best_score = category, score
        if best is None:
            name = self._config.fallback_category
            urgency = self._config.categories[name].urgency if name in self._config.categories else Urgency.LOW
            confidence = 0.2
        else:
            name, urgency = best.name, best.urgency
            confidence = min(0.5 + 0.15 * best_score, 0.99)
            if best.name != FRAUD and self._score_named(FRAUD, lowered, text):
                # Anything pointing at fraud goes up, never down.
                name, urgency = FRAUD, Urgency.CRITICAL
        for rule in self._config.urgency_rules:
            if name in rule.categories and rule.urgency.rank > urgency.rank:
                if any(k.lower() in lowered for k in rule.keywords.all()) or any(
                    re.search(p, text, re.I) for p in rule.patterns
                ):
                    urgency = rule.urgency
                    fired_all.append(f"urgency:{rule.name}")
        return Classification(
            category=name,
            urgency=urgency,
            confidence=round(confidence, 2),
            rules=fired_all,
            language=detect_language(text),
            entities=extract_entities(text),
            rules_version=self._version,
        )

    def _score_named(self, name: str, lowered: str, text: str) -> int:
        category = next((c for c in self._categories if c.name == name), None)
        return self._score(category, lowered, text)[0] if category else 0


def extract_entities(text: str) -> dict[str, list[str]]:
    found = {kind: sorted(set(p.findall(text))) for kind, p in _ENTITIES.items()}
    return {kind: values for kind, values in found.items() if values}
