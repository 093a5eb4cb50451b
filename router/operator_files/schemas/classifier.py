"""classifier.yaml: each category's keywords, patterns and examples; the urgency rules; how the
model trained from the examples and the rules are weighed together."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from router.core.envelope import Urgency
from router.operator_files.schemas.common import Category, Strict

# Labelled questions shipped with the package (router/classify/data/), named by file.
EXTRA_EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "classify" / "data"


class Bilingual(Strict):
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.zh, *self.en]


def _compile_all(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
    return patterns


class CategoryRules(Strict):
    description: str = ""
    urgency: Urgency
    keywords: Bilingual = Bilingual()
    patterns: list[str] = Field(default_factory=list)
    negative_patterns: list[str] = Field(default_factory=list)
    examples: Bilingual = Bilingual()

    _check_patterns = field_validator("patterns", "negative_patterns")(_compile_all)


class UrgencyRule(Strict):
    """Sets the urgency of the listed categories when its keywords or patterns match.

    A rule raises by default; `lowers: true` lets it set a lower urgency than the category's
    own (never for unauthorized_transaction). `urgent_lane: true` makes it part of the gateway's
    pre-screen, whatever the category turns out to be.
    """

    name: str
    categories: list[Category]
    urgency: Urgency
    lowers: bool = False
    urgent_lane: bool = False
    keywords: Bilingual = Bilingual()
    patterns: list[str] = Field(default_factory=list)
    negative_patterns: list[str] = Field(default_factory=list)

    _check_patterns = field_validator("patterns", "negative_patterns")(_compile_all)

    @model_validator(mode="after")
    def _fraud_never_lowered(self) -> UrgencyRule:
        if self.lowers and "unauthorized_transaction" in self.categories:
            raise ValueError("a rule may not lower the urgency of unauthorized_transaction")
        return self


class ModelSettings(Strict):
    """How the model trained from the examples and the rules are weighed together."""

    regularization: float = Field(
        default=8.0, gt=0
    )  # LogisticRegression C: higher fits the examples closer
    rule_weight: float = Field(
        default=1.5, ge=0
    )  # log-odds each rule that fired adds to its category
    fraud_rule_weight: float | None = Field(
        default=None, ge=0
    )  # the same for unauthorized_transaction (default: rule_weight)
    max_rule_hits: int = Field(default=3, ge=1)
    fraud_floor: float = Field(
        default=0.35, gt=0, le=1
    )  # model probability that alone makes it fraud
    possible_fraud_below: float = Field(
        default=0.0, ge=0, le=1
    )  # fraud from the model alone, no rule evidence, below this: triage, "possible fraud", high
    extra_examples: str | None = None  # a CSV (text, category) in router/classify/data/
    extra_examples_weight: float = Field(
        default=0.25, ge=0, le=1
    )  # each of its rows counts this much beside one of the config's own examples

    @field_validator("extra_examples")
    @classmethod
    def _shipped(cls, name: str | None) -> str | None:
        if (
            name is not None
            and not (EXTRA_EXAMPLES_DIR / name).is_file()
            or (name is not None and ("/" in name or "\\" in name or name.startswith(".")))
        ):
            shipped = sorted(p.name for p in EXTRA_EXAMPLES_DIR.glob("*.csv"))
            raise ValueError(f"extra_examples {name!r} is not one of the shipped files {shipped}")
        return name


class ClassifierConfig(Strict):
    version: int
    fallback_category: Category = "general"
    triage_below_confidence: float = Field(default=0.5, ge=0, le=1)
    triage_queue: str | None = "triage"
    model: ModelSettings = ModelSettings()
    categories: dict[Category, CategoryRules]
    urgency_rules: list[UrgencyRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _enough_to_learn_from(self) -> ClassifierConfig:
        taught = [name for name, rules in self.categories.items() if rules.examples.all()]
        if len(taught) < 2:
            raise ValueError("examples are needed for at least two categories to train the model")
        if self.fallback_category not in self.categories:
            raise ValueError(
                f"fallback_category {self.fallback_category!r} is not among the categories"
            )
        return self
