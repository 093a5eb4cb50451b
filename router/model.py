"""The statistical half of the classifier: character n-grams and a logistic regression.

Trained at start-up from the example messages in config/classifier.yaml. Character n-grams
need no Chinese tokenizer and survive typos, slang and speech-to-text; word n-grams add the
English phrases. scikit-learn fits the model; scoring one message is done here with the fitted
vocabulary, idf and coefficients (the same arithmetic as TfidfVectorizer + predict_proba),
because scikit-learn's per-call checks cost more than the sums themselves.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_TOKEN = re.compile(r"[^\W\d_]+|\d+|[^\w\s]", re.U)
_WORD = re.compile(r"[a-z][a-z']*")


def features(text: str) -> list[str]:
    """The n-grams of one normalized message (see textprep.prepare and textprep.for_model)."""
    out: list[str] = []
    append = out.append
    for chunk in text.split():
        if _CJK.search(chunk):
            padded = f" {chunk} "
            size = len(padded)
            for n in (1, 2, 3):
                for i in range(size - n + 1):
                    gram = padded[i:i + n]
                    if gram != " ":
                        append(gram)
        else:
            padded = f" {chunk} "
            size = len(padded)
            for n in (3, 4, 5):
                if size < n:
                    break
                for i in range(size - n + 1):
                    append(padded[i:i + n])
    words = _WORD.findall(text)
    for i, word in enumerate(words):
        append("w:" + word)
        if i:
            append("b:" + words[i - 1] + " " + word)
    return out


class NgramModel:
    """A multinomial logistic regression over tf-idf weighted n-grams."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str], *, c: float = 8.0):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if len(set(labels)) < 2:
            raise ValueError("the model needs examples of at least two categories")
        vectorizer = TfidfVectorizer(analyzer=features, sublinear_tf=True, dtype=np.float64)
        matrix = vectorizer.fit_transform(texts)
        model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
        model.fit(matrix, labels)
        self.classes: list[str] = [str(c) for c in model.classes_]
        self._vocabulary: dict[str, int] = dict(vectorizer.vocabulary_)
        self._idf = vectorizer.idf_.astype(np.float64)
        coef = model.coef_
        intercept = model.intercept_
        if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        # Rows per feature, pre-multiplied by idf: a message's scores are one gather and one sum.
        self._weights = np.ascontiguousarray((coef * self._idf).T)
        self._intercept = intercept.astype(np.float64)
        self._sklearn = (vectorizer, model)

    def probabilities(self, text: str) -> dict[str, float]:
        counts = Counter(features(text))
        vocabulary = self._vocabulary
        rows, values = [], []
        for gram, count in counts.items():
            row = vocabulary.get(gram)
            if row is not None:
                rows.append(row)
                values.append(1.0 + math.log(count))
        if rows:
            idf = self._idf[rows]
            tf = np.asarray(values)
            norm = math.sqrt(float(np.dot(tf * idf, tf * idf)))
            scores = (tf / norm) @ self._weights[rows] + self._intercept
        else:
            scores = self._intercept.copy()
        scores -= scores.max()
        exp = np.exp(scores)
        exp /= exp.sum()
        return dict(zip(self.classes, exp.tolist(), strict=True))

    def sklearn_probabilities(self, text: str) -> dict[str, float]:
        """The same through scikit-learn: slow, kept so a test can prove the fast path equal."""
        vectorizer, model = self._sklearn
        row = model.predict_proba(vectorizer.transform([text]))[0]
        return dict(zip(self.classes, row.tolist(), strict=True))
