"""What the model learns from: the config's own examples, and a shipped labelled set beside them.

The config's examples are few (about a thousand) and were written by the team; a public set
such as BANKING77 (English banking questions, CC BY 4.0, router/classify/data/) shows the model
how other people word fees, cards, top-ups and transfers. Each borrowed row counts
`model.extra_examples_weight` of one of ours, so it widens the model without outvoting us.
"""

from __future__ import annotations

import csv
import functools

from router.classify.textprep import for_model, prepare
from router.operator_files.schemas.classifier import EXTRA_EXAMPLES_DIR, ClassifierConfig


def shipped_rows(name: str) -> list[tuple[str, str]]:
    """(text as written, category) rows of a shipped CSV."""
    with (EXTRA_EXAMPLES_DIR / name).open(encoding="utf-8-sig", newline="") as f:
        return [
            (row["text"], row["category"])
            for row in csv.DictReader(f)
            if row.get("text") and row.get("category")
        ]


@functools.lru_cache(maxsize=4)
def shipped(name: str) -> tuple[tuple[str, str], ...]:
    """(prepared text, category) rows of a shipped CSV, read and prepared once per process."""
    return tuple((for_model(prepare(text)), category) for text, category in shipped_rows(name))


def training_set(
    config: ClassifierConfig,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[float, ...] | None]:
    """Texts, labels and weights (None: all equal) for the model."""
    texts, labels = [], []
    for name, rules in config.categories.items():
        for example in rules.examples.all():
            texts.append(for_model(prepare(example)))
            labels.append(name)
    settings = config.model
    if not settings.extra_examples or settings.extra_examples_weight <= 0:
        return tuple(texts), tuple(labels), None
    weights = [1.0] * len(texts)
    for text, category in shipped(settings.extra_examples):
        if category in config.categories:  # a category the operators removed is not taught
            texts.append(text)
            labels.append(category)
            weights.append(settings.extra_examples_weight)
    return tuple(texts), tuple(labels), tuple(weights)
