"""The figures `supportrouter eval` prints: per category, the fraud and critical figures, and the
same summary for every file, language, channel and phenomenon (a slice of the rows)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from router.core.envelope import Urgency
from router.operator_files.schemas.common import CATEGORIES

FRAUD = "unauthorized_transaction"


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
    # What each row is, for the breakdowns: its file, language, channel and phenomenon tags.
    files: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    phenomena: list[tuple[str, ...]] = field(default_factory=list)

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

    def subset(self, indices: list[int]) -> Report:
        def pick(values: list) -> list:
            return [values[i] for i in indices] if values else []

        return Report(
            rows=len(indices),
            seconds=0.0,
            gold=pick(self.gold),
            predicted=pick(self.predicted),
            gold_urgency=pick(self.gold_urgency),
            predicted_urgency=pick(self.predicted_urgency),
            has_urgency=self.has_urgency,
        )

    def summary(self) -> dict:
        """The figures a slice is compared by."""
        return {
            "rows": self.rows,
            "macro_f1": self.macro_f1,
            "unauthorized_recall": self.unauthorized_recall,
            "unauthorized_precision": self.unauthorized_precision,
            "critical_recall": self.critical_recall,
        }

    def by(self, labels: list[str] | list[tuple[str, ...]]) -> dict[str, Report]:
        """One report per value of `labels` (a row with several tags is in each of them)."""
        groups: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            for tag in (label,) if isinstance(label, str) else label:
                groups.setdefault(tag, []).append(i)
        return {tag: self.subset(groups[tag]) for tag in sorted(groups)}

    def breakdowns(self) -> dict[str, dict[str, Report]]:
        found = {
            "by_file": self.by(self.files) if len(set(self.files)) > 1 else {},
            "by_language": self.by(self.languages),
            "by_channel": self.by(self.channels),
            "by_phenomenon": self.by(self.phenomena),
        }
        return found

    def to_json(self) -> dict:
        out = {
            "rows": self.rows,
            "macro_f1": self.macro_f1,
            "per_category": self.per_category,
            "unauthorized_recall": self.unauthorized_recall,
            "unauthorized_precision": self.unauthorized_precision,
            "critical_recall": self.critical_recall,
            "seconds": round(self.seconds, 3),
        }
        for name, slices in self.breakdowns().items():
            out[name] = {tag: report.summary() for tag, report in slices.items()}
        return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_slices(title: str, slices: dict[str, Report]) -> list[str]:
    if not slices:
        return []
    width = max(26, *(len(tag) + 2 for tag in slices))
    lines = [
        f"{title:<{width}}{'rows':>6}{'macro-F1':>10}{'fraud R':>9}{'fraud P':>9}{'crit R':>8}"
    ]
    for tag, report in slices.items():
        lines.append(
            f"{tag:<{width}}{report.rows:>6}{report.macro_f1:>10.3f}"
            f"{_fmt(report.unauthorized_recall):>9}{_fmt(report.unauthorized_precision):>9}"
            f"{_fmt(report.critical_recall):>8}"
        )
    return [*lines, ""]


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
    if report.has_urgency:
        lines.append(f"critical-urgency recall             {_fmt(report.critical_recall)}")
    else:
        lines.append("critical-urgency recall             n/a (no urgency column)")
    titles = {
        "by_file": "file",
        "by_language": "language",
        "by_channel": "channel",
        "by_phenomenon": "phenomenon",
    }
    breakdowns = report.breakdowns()
    if any(breakdowns.values()):
        lines.append("")
    for name, slices in breakdowns.items():
        lines += format_slices(titles[name], slices)
    return "\n".join(lines).rstrip("\n")


def format_json(report: Report) -> str:
    return json.dumps(report.to_json(), ensure_ascii=False)
