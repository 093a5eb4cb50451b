"""The fitted model kept on disk (router/classify/model_cache.py): the same fit is loaded, not
fitted again, and scores exactly as the fit did; anything else is fitted."""

from __future__ import annotations

import pytest

from router.classify import model_cache
from router.classify.model import NgramModel

TEXTS = [
    "my transfer failed",
    "the transfer did not arrive",
    "money sent but never received",
    "reset my password",
    "I forgot my password",
    "cannot log in, password wrong",
    "转账失败了",
    "忘记密码了",
]
LABELS = ["transfer"] * 3 + ["password"] * 3 + ["transfer", "password"]
PROBES = ["transfer failed again", "password reset please", "转账", "密码", "", "?!"]


def _scores(model: NgramModel) -> list[dict[str, float]]:
    return [model.log_probabilities(text) for text in PROBES]


def test_the_same_fit_is_loaded_from_the_cache_and_scores_the_same(tmp_path):
    fitted = NgramModel(TEXTS, LABELS, c=4.0, cache=tmp_path)
    assert fitted._sklearn is not None  # fitted: there was nothing to load
    assert len(list(tmp_path.glob("*.json"))) == len(list(tmp_path.glob("*.npy"))) == 1
    loaded = NgramModel(TEXTS, LABELS, c=4.0, cache=tmp_path)
    assert loaded._sklearn is None  # loaded: scikit-learn was not asked
    assert loaded.classes == fitted.classes
    assert _scores(loaded) == _scores(fitted)  # exactly: the same table, read back
    # and the loaded model still agrees with scikit-learn's own arithmetic
    for text in PROBES:
        assert loaded.probabilities(text) == pytest.approx(
            loaded.sklearn_probabilities(text), abs=1e-9
        )


@pytest.mark.parametrize(
    "change",
    [
        {"texts": [*TEXTS[:-1], "密码忘了"]},
        {"labels": ["transfer"] * 4 + ["password"] * 4},
        {"c": 2.0},
        {"weights": [1.0] * 7 + [3.0]},
    ],
    ids=["texts", "labels", "regularization", "weights"],
)
def test_any_change_to_the_fit_is_another_entry(tmp_path, change):
    NgramModel(TEXTS, LABELS, c=4.0, cache=tmp_path)
    args = {"texts": TEXTS, "labels": LABELS, "c": 4.0, "weights": None} | change
    other = NgramModel(
        args["texts"], args["labels"], c=args["c"], weights=args["weights"], cache=tmp_path
    )
    assert other._sklearn is not None  # fitted, not the first one's model
    assert len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize("damage", ["truncated json", "wrong table", "not a table"])
def test_a_damaged_entry_is_fitted_again_and_rewritten(tmp_path, damage):
    first = NgramModel(TEXTS, LABELS, c=4.0, cache=tmp_path)
    [meta] = tmp_path.glob("*.json")
    table = meta.with_suffix(".npy")
    if damage == "truncated json":
        meta.write_text(meta.read_text()[:50])
    elif damage == "wrong table":
        import numpy as np

        np.save(table, np.zeros((3, 3)))
    else:
        table.write_bytes(b"\x93NUMPY but nothing after")
    again = NgramModel(TEXTS, LABELS, c=4.0, cache=tmp_path)
    assert again._sklearn is not None and _scores(again) == _scores(first)
    assert NgramModel(TEXTS, LABELS, c=4.0, cache=tmp_path)._sklearn is None  # repaired


def test_a_cache_that_cannot_be_written_only_means_fitting(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the directory would be")
    model = NgramModel(TEXTS, LABELS, c=4.0, cache=blocked / "models")
    again = NgramModel(TEXTS, LABELS, c=4.0, cache=blocked / "models")
    assert model._sklearn is not None and again._sklearn is not None
    assert _scores(again) == _scores(model)


def test_the_cache_keeps_the_newest_entries_only(tmp_path):
    for c in range(1, model_cache._KEEP + 3):
        NgramModel(TEXTS, LABELS, c=float(c), cache=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == model_cache._KEEP
    assert len(list(tmp_path.glob("*.npy"))) == model_cache._KEEP
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_without_the_model_source_nothing_is_kept(tmp_path, monkeypatch):
    """An installation without model.py cannot tell a changed feature from the kept one."""
    monkeypatch.setattr(model_cache, "_MODEL_SOURCE", tmp_path / "absent" / "model.py")
    model = NgramModel(TEXTS, LABELS, c=4.0, cache=tmp_path)
    assert model._sklearn is not None and not list(tmp_path.glob("*.json"))
