"""`supportrouter eval`: how well the classifier in force labels a CSV of messages.

Each row goes through what the gateway and the classifier do to a live message: redaction,
then classification. The CSV needs columns `text` and `category`; `urgency` and `channel` are
optional. Bad files are refused with the line and the reason.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from router.classify.redact import redact
from router.core.envelope import Channel, Urgency
from router.core.settings import Settings
from router.operator_files.schemas.common import CATEGORIES
from router.policy.rules import Rules

FRAUD = "unauthorized_transaction"
_CHANNELS = {c.value for c in Channel}
_URGENCIES = {u.value for u in Urgency}


class EvalFileError(Exception):
    """The CSV cannot be evaluated; the message names the line and the reason."""


@dataclass(frozen=True)
class Row:
    line: int
    text: str
    category: str
    urgency: str | None = None
    channel: str | None = None


@dataclass
class Report:
    rows: int
    seconds: float
    gold: list[str]
    predicted: list[str]
    gold_urgency: list[str | None]
    predicted_urgency: list[str]
    has_urgency: bool
    per_category: dict[str, dict[str, float | int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        present = [c for c in CATEGORIES if c in set(self.gold)]
        pairs = Counter(zip(self.gold, self.predicted, strict=True))
        predicted_count = Counter(self.predicted)
        for category in present:
            tp = pairs[(category, category)]
            support = sum(1 for g in self.gold if g == category)
            precision = tp / predicted_count[category] if predicted_count[category] else 0.0
            recall = tp / support
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            self.per_category[category] = {
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "f1": round(f1, 4),
                "support": support,
            }

    @property
    def macro_f1(self) -> float:
        scores = [float(m["f1"]) for m in self.per_category.values()]
        return round(sum(scores) / len(scores), 4) if scores else 0.0

    def _fraud(self) -> tuple[float | None, float | None]:
        support = sum(1 for g in self.gold if g == FRAUD)
        flagged = sum(1 for p in self.predicted if p == FRAUD)
        hits = sum(1 for g, p in zip(self.gold, self.predicted, strict=True) if g == p == FRAUD)
        recall = round(hits / support, 4) if support else None
        precision = round(hits / flagged, 4) if flagged else (0.0 if support else None)
        return recall, precision

    @property
    def unauthorized_recall(self) -> float | None:
        return self._fraud()[0]

    @property
    def unauthorized_precision(self) -> float | None:
        return self._fraud()[1]

    @property
    def critical_recall(self) -> float | None:
        if not self.has_urgency:
            return None
        critical = [
            p
            for g, p in zip(self.gold_urgency, self.predicted_urgency, strict=True)
            if g == Urgency.CRITICAL
        ]
        if not critical:
            return None
        return round(sum(1 for p in critical if p == Urgency.CRITICAL) / len(critical), 4)

    def confusion(self) -> tuple[list[str], dict[tuple[str, str], int]]:
        labels = [c for c in CATEGORIES if c in set(self.gold) | set(self.predicted)]
        return labels, Counter(zip(self.gold, self.predicted, strict=True))

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "macro_f1": self.macro_f1,
            "per_category": self.per_category,
            "unauthorized_recall": self.unauthorized_recall,
            "unauthorized_precision": self.unauthorized_precision,
            "critical_recall": self.critical_recall,
            "seconds": round(self.seconds, 3),
        }


def read_rows(path: Path | str) -> list[Row]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvalFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EvalFileError(f"{path}: not valid UTF-8 (byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(content, newline=""))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in ("text", "category") if c not in columns]
    if missing:
        raise EvalFileError(
            f"{path}:1: missing column(s) {', '.join(missing)}; found {columns or 'none'}"
        )
    reader.fieldnames = columns
    rows: list[Row] = []
    problems: list[str] = []
    line = reader.line_num + 1  # where the next record starts (a quoted text may span lines)
    for record in reader:
        next_line = reader.line_num + 1
        if None in record:
            problems.append(f"{path}:{line}: more fields than columns")
            line = next_line
            continue
        text = (record.get("text") or "").strip()
        category = (record.get("category") or "").strip()
        urgency = (record.get("urgency") or "").strip() or None
        channel = (record.get("channel") or "").strip() or None
        if not text:
            problems.append(f"{path}:{line}: empty text")
        if category not in CATEGORIES:
            problems.append(
                f"{path}:{line}: unknown category {category!r}; one of {', '.join(CATEGORIES)}"
            )
        if "urgency" in columns and urgency is not None and urgency not in _URGENCIES:
            problems.append(
                f"{path}:{line}: unknown urgency {urgency!r}; one of {', '.join(sorted(_URGENCIES))}"
            )
        if channel is not None and channel not in _CHANNELS:
            problems.append(
                f"{path}:{line}: unknown channel {channel!r}; one of {', '.join(sorted(_CHANNELS))}"
            )
        rows.append(Row(line, text, category, urgency, channel))
        line = next_line
    if problems:
        shown = problems[:20] + (
            [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        )
        raise EvalFileError("\n".join(shown))
    if not rows:
        raise EvalFileError(f"{path}: no rows to evaluate")
    return rows


def evaluate(rules: Rules, rows: list[Row]) -> Report:
    predicted, predicted_urgency = [], []
    started = time.perf_counter()
    for row in rows:
        clean = redact(row.text)
        c = rules.classify(clean.text, channel=row.channel)
        predicted.append(c.category)
        predicted_urgency.append(c.urgency.value)
    seconds = time.perf_counter() - started
    return Report(
        rows=len(rows),
        seconds=seconds,
        gold=[r.category for r in rows],
        predicted=predicted,
        gold_urgency=[r.urgency for r in rows],
        predicted_urgency=predicted_urgency,
        has_urgency=any(r.urgency for r in rows),
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_text(report: Report) -> str:
    lines = [f"{report.rows} rows classified in {report.seconds:.2f} s", ""]
    lines.append(f"{'category':<26}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for category, m in report.per_category.items():
        lines.append(
            f"{category:<26}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>9}"
        )
    lines.append(f"{'macro-F1 (categories present)':<56}{report.macro_f1:>10.3f}")
    lines.append("")
    labels, counts = report.confusion()
    short = {label: label[:8] for label in labels}
    lines.append("confusion matrix (rows: expected, columns: predicted)")
    lines.append(f"{'':<26}" + "".join(f"{short[label]:>10}" for label in labels))
    for gold in labels:
        if gold not in report.per_category:
            continue
        lines.append(f"{gold:<26}" + "".join(f"{counts[(gold, p)]:>10}" for p in labels))
    lines.append("")
    lines.append(f"unauthorized_transaction recall     {_fmt(report.unauthorized_recall)}")
    lines.append(f"unauthorized_transaction precision  {_fmt(report.unauthorized_precision)}")
    critical = report.critical_recall
    if report.has_urgency:
        lines.append(f"critical-urgency recall             {_fmt(critical)}")
    else:
        lines.append("critical-urgency recall             n/a (no urgency column)")
    return "\n".join(lines)


def format_json(report: Report) -> str:
    return json.dumps(report.to_json(), ensure_ascii=False)


def command(args: argparse.Namespace) -> int:
    try:
        rows = read_rows(args.file)
    except EvalFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    rules = Rules(Path(args.config or Settings().config_dir))
    report = evaluate(rules, rows)
    print(format_json(report) if args.json else format_text(report))
    return 0
