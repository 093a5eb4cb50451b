"""How the classifier may do on messages nobody on the team has seen: k-fold over config examples.

The example messages of config/classifier.yaml are split into k folds per category and language.
For each fold the model is trained on the other folds and scores the held-out one; the keywords,
patterns and urgency rules stay as they are. The rules were written with every example in view,
so this is still optimistic, but far less than scoring the examples the model was trained on.

`--shipped` folds the shipped labelled set instead (BANKING77, `model.extra_examples`): the
model learns from all of the config's examples and the other folds of that set, and scores the
held-out fold. Other people's wording of the same problems: the nearest thing here to a public
question set nobody on the team has.

    .venv/bin/python bench/classifier_crossval.py [--folds 4] [--seed 7] [--config config] [--json]
    .venv/bin/python bench/classifier_crossval.py --shipped
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from options import whole  # noqa: E402

from router.classify import examples  # noqa: E402
from router.classify.classifier import Classifier  # noqa: E402
from router.classify.redact import redact  # noqa: E402
from router.classify.textprep import for_model, prepare  # noqa: E402
from router.cli.evaluate import Report, format_json, format_text  # noqa: E402
from router.operator_files.config import load_config  # noqa: E402
from router.operator_files.schemas.classifier import Bilingual, ClassifierConfig  # noqa: E402


def folds_of(config: ClassifierConfig, k: int, seed: int) -> list[dict[tuple[str, str], list[str]]]:
    """For each fold, the held-out examples by (category, language)."""
    rng = random.Random(seed)
    held: list[dict[tuple[str, str], list[str]]] = [{} for _ in range(k)]
    for name, category in config.categories.items():
        for language in ("zh", "en"):
            examples = list(getattr(category.examples, language))
            rng.shuffle(examples)
            for i, text in enumerate(examples):
                held[i % k].setdefault((name, language), []).append(text)
    return held


def without(config: ClassifierConfig, held: dict[tuple[str, str], list[str]]) -> ClassifierConfig:
    categories = {}
    for name, category in config.categories.items():
        kept = {
            language: [
                t
                for t in getattr(category.examples, language)
                if t not in held.get((name, language), ())
            ]
            for language in ("zh", "en")
        }
        categories[name] = category.model_copy(update={"examples": Bilingual(**kept)})
    return config.model_copy(update={"categories": categories})


def config_folds(
    config: ClassifierConfig, k: int, seed: int
) -> Iterator[tuple[Classifier, list[tuple[str, str]]]]:
    """For each fold of the config's examples: a classifier trained without it, and its rows."""
    for held in folds_of(config, k, seed):
        rows = [(text, category) for (category, _), texts in held.items() for text in texts]
        yield Classifier(without(config, held)), rows


def shipped_folds(
    config: ClassifierConfig, k: int, seed: int
) -> Iterator[tuple[Classifier, list[tuple[str, str]]]]:
    """For each fold of the shipped set: a classifier whose model never saw it, and its rows
    (text as written, category). The model learns from the other folds through
    `examples.shipped`, which the classifier's training set reads, prepared the same way."""
    name = config.model.extra_examples
    if name is None:
        raise SystemExit("this config ships no labelled set (model.extra_examples)")
    rows = examples.shipped_rows(name)
    random.Random(seed).shuffle(rows)
    whole_set = examples.shipped
    try:
        for fold in range(k):
            kept = tuple(
                (for_model(prepare(text)), category)
                for i, (text, category) in enumerate(rows)
                if i % k != fold
            )
            examples.shipped = lambda _name, kept=kept: kept  # type: ignore[assignment]
            yield Classifier(config), rows[fold::k]
    finally:
        examples.shipped = whole_set


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", type=whole(2, 100), default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=ROOT / "config")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--shipped", action="store_true", help="fold the shipped labelled set (BANKING77) instead"
    )
    args = parser.parse_args()
    if args.folds < 2:
        parser.error("--folds must be at least 2")

    config = load_config(args.config).classifier
    gold: list[str] = []
    predicted: list[str] = []
    started = time.perf_counter()
    for classifier, held_rows in (
        shipped_folds(config, args.folds, args.seed)
        if args.shipped
        else config_folds(config, args.folds, args.seed)
    ):
        for text, category in held_rows:
            gold.append(category)
            predicted.append(classifier.classify(redact(text).text).category)
    report = Report(
        rows=len(gold),
        seconds=time.perf_counter() - started,
        gold=gold,
        predicted=predicted,
        gold_urgency=[None] * len(gold),
        predicted_urgency=["normal"] * len(gold),
        has_urgency=False,
    )
    print(format_json(report) if args.json else format_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
