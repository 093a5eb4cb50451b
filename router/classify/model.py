"""The statistical half of the classifier: character n-grams and a logistic regression.

Trained at start-up from the example messages in config/classifier.yaml. Character n-grams
need no Chinese tokenizer and survive typos, slang and speech-to-text; word n-grams add the
English phrases. scikit-learn fits the model; scoring one message is done here with the fitted
vocabulary, idf and coefficients (the same arithmetic as TfidfVectorizer + predict_proba),
because scikit-learn's per-call checks cost more than the sums themselves.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from router.classify import model_cache
from router.classify.textprep import CJK

_TOKEN = re.compile(r"[^\W\d_]+|\d+|[^\w\s]", re.U)
_WORD = re.compile(r"[a-z][a-z']*")
_CHUNK_CACHE_SIZE = 200_000
_ROW_CACHE_SIZE = 20_000  # rows kept as Python floats: about 4 MB


def chunk_features(chunk: str) -> list[str]:
    """The n-grams of one whitespace-separated chunk: characters, and its English words."""
    padded = f" {chunk} "
    size = len(padded)
    if CJK.search(chunk):
        # Chinese: single characters carry meaning; pairs and triples carry words.
        out = [padded[i] for i in range(1, size - 1)]
        out += [padded[i : i + 2] for i in range(size - 1)]
        out += [padded[i : i + 3] for i in range(size - 2)]
    else:
        out = []
        for n in (3, 4, 5):
            if size < n:
                break
            out += [padded[i : i + n] for i in range(size - n + 1)]
    out += ["w:" + w for w in _WORD.findall(chunk)]
    return out


def features(text: str) -> list[str]:
    """The n-grams of one normalized message (see textprep.prepare and textprep.for_model)."""
    out: list[str] = []
    for chunk in text.split():
        out += chunk_features(chunk)
    words = _WORD.findall(text)
    out += ["b:" + a + " " + b for a, b in zip(words, words[1:], strict=False)]
    return out


class NgramModel:
    """A multinomial logistic regression over tf-idf weighted n-grams."""

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        c: float = 8.0,
        weights: Sequence[float] | None = None,
        cache: Path | None = model_cache.DIRECTORY,
    ):
        """Fitted from the examples, or loaded from `cache` when the same fit is kept there
        (router/classify/model_cache.py); None: always fitted."""
        if len(set(labels)) < 2:
            raise ValueError("the model needs examples of at least two categories")
        self._training: model_cache.Training = (texts, labels, c, weights)
        self._sklearn: tuple | None = None
        fitted = (
            self._fit()
            if cache is None
            else model_cache.load_or_fit(self._training, self._fit, cache)
        )
        self.classes: list[str] = fitted.classes
        self._vocabulary: dict[str, int] = {f: row for row, f in enumerate(fitted.features)}
        self._table = fitted.table
        self._intercepts: list[float] = fitted.intercepts
        # Chunks (words, or whole Chinese phrases) recur from message to message: their n-grams'
        # rows are remembered, up to a bound, so a common word is looked up once. Frozensets:
        # a message's rows are then one union of sets that already hold their hashes.
        self._chunk_rows = _ChunkRows(self._vocabulary)
        self._row_values: dict[int, list[float]] = {}
        # The word pairs' rows, by the pair: no "b:a b" string to build per pair.
        self._pairs: dict[tuple[str, str], int] = {}
        for feature, row in self._vocabulary.items():
            if feature.startswith("b:") and " " in feature:
                first, second = feature[2:].split(" ", 1)
                self._pairs[first, second] = row

    def _fit(self) -> model_cache.Fitted:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        texts, labels, c, weights = self._training
        # Binary term frequency: in a message of a few lines a repeated n-gram adds little,
        # and scoring then needs only the set of n-grams present.
        vectorizer = TfidfVectorizer(analyzer=features, binary=True, dtype=np.float64)
        matrix = vectorizer.fit_transform(texts)
        # newton-cg converges in a handful of steps here, where lbfgs needs dozens of slow ones.
        model = LogisticRegression(C=c, max_iter=300, solver="newton-cg")
        model.fit(matrix, labels, sample_weight=_balanced(labels, weights))
        self._sklearn = (vectorizer, model)
        idf = vectorizer.idf_.astype(np.float64)
        # Rows renumbered, the commonest n-grams (lowest idf) first: the rows most messages read
        # sit together in a few hundred kilobytes, which stay in the processor's cache.
        order = np.argsort(idf, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        by_row = [""] * len(order)
        for feature, column in vectorizer.vocabulary_.items():
            by_row[int(position[column])] = feature
        coef, intercept = model.coef_, model.intercept_
        if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        # One row per n-gram: its weight for each class pre-multiplied by its idf, then its idf
        # squared. A message's scores and its l2 norm are then one gather and one sum.
        table = np.ascontiguousarray(np.hstack([(coef * idf).T, (idf * idf)[:, None]])[order])
        return model_cache.Fitted(
            [str(c) for c in model.classes_],
            by_row,
            table,
            intercept.astype(np.float64).tolist(),
        )

    def _rows(self, text: str) -> set[int]:
        """The rows of the n-grams in the text: the same set `features` would look up."""
        # Both lookups run as `map` in C: no Python step per chunk or per word pair.
        present: set[int | None] = set().union(*map(self._chunk_rows.__getitem__, text.split()))
        words = _WORD.findall(text)
        if len(words) > 1:
            present.update(map(self._pairs.get, zip(words, words[1:], strict=False)))
            present.discard(None)  # the pairs the model does not know
        return present  # type: ignore[return-value]  # None is gone

    def log_probabilities(self, text: str) -> dict[str, float]:
        """The natural log of each class's probability (what the classifier adds rules to)."""
        present = self._rows(text)
        if present:
            summed = self._summed(present)
            # Python floats: the same IEEE arithmetic as numpy's on eight numbers, minus its calls.
            norm = math.sqrt(summed.pop())
            scores = [s / norm + b for s, b in zip(summed, self._intercepts, strict=True)]
        else:
            scores = list(self._intercepts)
        top = max(scores)
        normalizer = top + math.log(sum([math.exp(s - top) for s in scores]))
        return dict(zip(self.classes, [s - normalizer for s in scores], strict=True))

    def _summed(self, rows: set[int]) -> list[float]:
        """The table's rows added up, one after another in the set's order: the sums numpy's
        `take` and `add.reduce` gave, bit for bit, without numpy, which let go of the GIL twice
        a message. In the gateway, beside the intake journal's thread, each of those handed the
        GIL over and back (docs/performance.md, "Sixteenth round"). Each row read is kept as
        Python floats, up to a bound.

        Each column is added by `sum` in C, which on Python 3.11 adds floats in order into one
        double (the same IEEE sums as a loop, without a float object for each step; from 3.12
        on it compensates, which is closer to the exact sum than numpy is)."""
        known = self._row_values
        if len(known) > _ROW_CACHE_SIZE:
            known.clear()
        values: list[list[float]] = []
        for row in rows:
            kept = known.get(row)
            if kept is None:
                kept = known[row] = self._table[row].tolist()
            values.append(kept)
        if not values:
            return []
        return [sum(column, -0.0) for column in zip(*values, strict=True)]

    def probabilities(self, text: str) -> dict[str, float]:
        return {name: math.exp(value) for name, value in self.log_probabilities(text).items()}

    def sklearn_probabilities(self, text: str) -> dict[str, float]:
        """The same through scikit-learn: slow, kept so a test can prove the fast path (and a
        model loaded from the cache) equal to a fit."""
        if self._sklearn is None:  # loaded from the cache: fitted now, for this comparison
            self._fit()
        assert self._sklearn is not None
        vectorizer, model = self._sklearn
        row = model.predict_proba(vectorizer.transform([text]))[0]
        return dict(zip(self.classes, row.tolist(), strict=True))


class _ChunkRows(dict[str, frozenset[int]]):
    """Each chunk's rows in the vocabulary, worked out on first sight and remembered (up to a
    bound: a stream of novel chunks does not grow the process without end)."""

    def __init__(self, vocabulary: dict[str, int]):
        super().__init__()
        self._vocabulary = vocabulary

    def __missing__(self, chunk: str) -> frozenset[int]:
        get = self._vocabulary.get
        rows = frozenset(r for r in map(get, chunk_features(chunk)) if r is not None)
        if len(self) < _CHUNK_CACHE_SIZE:
            self[chunk] = rows
        return rows


def _balanced(labels: Sequence[str], weights: Sequence[float] | None) -> np.ndarray:
    """Each example's weight, scaled so every class weighs the same in total (as scikit-learn's
    class_weight="balanced" does with counts): a class with thousands of borrowed questions does
    not drown one taught by a few dozen of our own."""
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    names = np.asarray(labels)
    totals = {name: w[names == name].sum() for name in set(labels)}
    per_class = w.sum() / len(totals)
    return w * np.array([per_class / totals[name] for name in labels])


@functools.lru_cache(maxsize=4)
def trained(
    texts: tuple[str, ...],
    labels: tuple[str, ...],
    c: float,
    weights: tuple[float, ...] | None = None,
) -> NgramModel:
    """The model for these examples, trained once per process: a hot reload that changes only
    keywords, patterns or urgency rules, or a second router in the same process, reuses it."""
    return NgramModel(texts, labels, c=c, weights=weights)
