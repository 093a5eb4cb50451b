"""The fitted n-gram model kept on disk, so a start (or each worker of `supportrouter run`) loads
it in a fraction of a second instead of importing scikit-learn and fitting it again.

An entry is found only by a digest of everything the fit depends on: the training texts, labels
and weights, the regularization, the source of `model.py` (its n-gram features) and the versions
of numpy and scikit-learn. Another config, another feature or another library is another entry,
so a stale model is never loaded. An entry is two files written whole and then renamed into
place (a crash leaves none half written): the scoring table as `.npy` (read without pickle) and
the classes, intercepts and vocabulary as JSON. Anything unreadable is treated as absent, and a
cache that cannot be written (a read-only home) only means fitting at every start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import structlog

from router.classify.native import digest

log = structlog.get_logger("router.classify.model_cache")
DIRECTORY = Path.home() / ".cache" / "supportrouter" / "models"
_KEEP = 8  # entries kept; the oldest go when a new one is written (tests fit many configs)
_MODEL_SOURCE = Path(__file__).with_name("model.py")


@dataclass(frozen=True)
class Fitted:
    """What scoring needs: the classes, each n-gram's row, the table of rows, the intercepts."""

    classes: list[str]
    features: list[str]  # the n-gram of each row of `table`, in row order
    table: np.ndarray
    intercepts: list[float]


Training = tuple[Sequence[str], Sequence[str], float, Sequence[float] | None]


def load_or_fit(training: Training, fit: Callable[[], Fitted], directory: Path) -> Fitted:
    """The entry kept for this training when there is a readable one; else `fit()`, kept."""
    entry = key(*training)
    if entry is None:
        return fit()
    fitted = load(entry, directory)
    if fitted is None:
        fitted = fit()
        save(entry, fitted, directory)
    return fitted


def key(
    texts: Sequence[str], labels: Sequence[str], c: float, weights: Sequence[float] | None
) -> str | None:
    """The entry for this fit; None when `model.py`'s source cannot be read (an installation
    without sources), since then a changed feature could not be told from the kept one."""
    try:
        source = digest(_MODEL_SOURCE)
    except OSError:
        return None
    summed = hashlib.sha256()
    for part in (
        source.encode(),
        np.__version__.encode(),
        _version("scikit-learn").encode(),
        repr(c).encode(),
        json.dumps(
            [list(texts), list(labels), None if weights is None else list(weights)]
        ).encode(),
    ):
        summed.update(hashlib.sha256(part).digest())
    return summed.hexdigest()


def load(entry: str, directory: Path) -> Fitted | None:
    try:
        meta = json.loads((directory / f"{entry}.json").read_text(encoding="utf-8"))
        table = np.load(directory / f"{entry}.npy", allow_pickle=False)
        fitted = Fitted(
            [str(c) for c in meta["classes"]],
            [str(f) for f in meta["features"]],
            table,
            [float(b) for b in meta["intercepts"]],
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("model_cache.unreadable", entry=entry, error=repr(exc)[:200])
        return None
    shape = (len(fitted.features), len(fitted.classes) + 1)
    if table.shape != shape or len(fitted.intercepts) != len(fitted.classes):
        log.warning("model_cache.unreadable", entry=entry, error=f"shape {table.shape}")
        return None
    return fitted


def save(entry: str, fitted: Fitted, directory: Path) -> None:
    meta = {
        "classes": fitted.classes,
        "intercepts": fitted.intercepts,
        "features": fitted.features,
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # The table first: an entry counts as present once its JSON is there.
        _write(directory / f"{entry}.npy", lambda f: np.save(f, fitted.table, allow_pickle=False))
        _write(
            directory / f"{entry}.json",
            lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode()),
        )
        _prune(directory)
    except OSError as exc:
        log.info("model_cache.not_written", directory=str(directory), error=repr(exc)[:200])


def _write(path: Path, write) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _prune(directory: Path) -> None:
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[_KEEP:]:
        for path in (old, old.with_suffix(".npy")):
            with contextlib.suppress(OSError):
                path.unlink()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"
