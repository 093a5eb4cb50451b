"""`supportrouter eval`: how well the classifier in force labels CSVs of messages.

Each row goes through what the gateway and the classifier do to a live message: redaction,
then classification. A CSV needs columns `text` and `category`; `urgency`, `channel`, `language`
and `id` are optional. Several files are scored one by one and together, broken down by
language, channel and (given a phenomena file: id, space-separated tags) phenomenon. Bad files
are refused with the file, the line and the reason.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from router.classify.redact import redact
from router.classify.textprep import has_traditional
from router.cli.eval_report import FRAUD, Report, format_json, format_text
from router.core.envelope import Channel, Urgency
from router.core.settings import Settings
from router.operator_files.schemas.common import CATEGORIES
from router.policy.rules import Rules

__all__ = ["FRAUD", "EvalFileError", "Report", "Row", "evaluate", "format_json", "format_text"]

_CHANNELS = {c.value for c in Channel}
_URGENCIES = {u.value for u in Urgency}
_MAX_PROBLEMS = 20


class EvalFileError(Exception):
    """A file cannot be evaluated; the message names the file, the line and the reason."""


@dataclass(frozen=True)
class Row:
    line: int
    text: str
    category: str
    urgency: str | None = None
    channel: str | None = None
    language: str | None = None
    id: str | None = None
    file: str = ""


def _read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict]]]:
    """The columns and the records of a UTF-8 CSV, each with the line it starts on."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvalFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise EvalFileError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(content, newline=""), strict=True)
    records: list[tuple[int, dict]] = []
    line = 1
    try:
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in columns]
        if missing:
            raise EvalFileError(
                f"{path}:1: missing column(s) {', '.join(missing)}; found {columns or 'none'}"
            )
        reader.fieldnames = columns
        line = reader.line_num + 1  # where the next record starts (a quoted text may span lines)
        for record in reader:
            records.append((line, record))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise EvalFileError(f"{path}:{line}: malformed CSV ({exc})") from exc
    return columns, records


def _refuse(problems: list[str]) -> None:
    if problems:
        more = len(problems) - _MAX_PROBLEMS
        shown = problems[:_MAX_PROBLEMS] + ([f"... and {more} more"] if more > 0 else [])
        raise EvalFileError("\n".join(shown))


def read_rows(path: Path | str) -> list[Row]:
    path = Path(path)
    columns, records = _read_csv(path, ("text", "category"))
    rows: list[Row] = []
    problems: list[str] = []
    for line, record in records:
        if None in record:
            problems.append(f"{path}:{line}: more fields than columns")
            continue
        values = {k: (v or "").strip() for k, v in record.items()}
        text, category = values.get("text", ""), values.get("category", "")
        urgency = values.get("urgency") or None
        channel = values.get("channel") or None
        if not text:
            problems.append(f"{path}:{line}: empty text")
        if category not in CATEGORIES:
            problems.append(
                f"{path}:{line}: unknown category {category!r}; one of {', '.join(CATEGORIES)}"
            )
        if urgency is not None and urgency not in _URGENCIES:
            problems.append(
                f"{path}:{line}: unknown urgency {urgency!r}; one of {', '.join(sorted(_URGENCIES))}"
            )
        if channel is not None and channel not in _CHANNELS:
            problems.append(
                f"{path}:{line}: unknown channel {channel!r}; one of {', '.join(sorted(_CHANNELS))}"
            )
        language = values.get("language") or None
        rows.append(
            Row(line, text, category, urgency, channel, language, values.get("id"), str(path))
        )
    _refuse(problems)
    if not rows:
        raise EvalFileError(f"{path}: no rows to evaluate")
    return rows


def read_phenomena(path: Path | str) -> dict[str, tuple[str, ...]]:
    """Row id -> its phenomenon tags, from a CSV with columns `id` and `phenomena`."""
    path = Path(path)
    _, records = _read_csv(path, ("id", "phenomena"))
    tags: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    for line, record in records:
        row_id = (record.get("id") or "").strip()
        if None in record:
            problems.append(f"{path}:{line}: more fields than columns")
        elif not row_id:
            problems.append(f"{path}:{line}: empty id")
        elif row_id in tags:
            problems.append(f"{path}:{line}: id {row_id!r} listed twice")
        else:
            tags[row_id] = tuple((record.get("phenomena") or "").split())
    _refuse(problems)
    return tags


class Progress:
    """A bar on a terminal: where the run is, file by file, redrawn every 1% of the rows."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream, self.total, self.done = stream, total, 0
        self._step = max(1, total // 100)

    def advance(self, file: str) -> None:
        self.done += 1
        if self.done % self._step and self.done != self.total:
            return
        filled = 30 * self.done // self.total
        bar = "#" * filled + "." * (30 - filled)
        self.stream.write(f"\r{Path(file).name[:30]} [{bar}] {self.done}/{self.total}")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def _language(row: Row, detected: str) -> str:
    if row.language:
        return row.language
    return "zh-Hant" if detected == "zh" and has_traditional(row.text) else detected


def evaluate(
    rules: Rules,
    rows: list[Row],
    phenomena: dict[str, tuple[str, ...]] | None = None,
    on_row: Callable[[str], None] | None = None,
) -> Report:
    predicted, predicted_urgency, languages = [], [], []
    started = time.perf_counter()
    for row in rows:
        clean = redact(row.text)
        c = rules.classify(clean.text, channel=row.channel)
        predicted.append(c.category)
        predicted_urgency.append(c.urgency.value)
        languages.append(_language(row, c.language))
        if on_row is not None:
            on_row(row.file)
    seconds = time.perf_counter() - started
    return Report(
        rows=len(rows),
        seconds=seconds,
        gold=[r.category for r in rows],
        predicted=predicted,
        gold_urgency=[r.urgency for r in rows],
        predicted_urgency=predicted_urgency,
        has_urgency=any(r.urgency for r in rows),
        files=[r.file for r in rows],
        languages=languages,
        channels=[r.channel or "(none)" for r in rows],
        phenomena=[(phenomena or {}).get(r.id or "", ()) for r in rows] if phenomena else [],
    )


def command(args: argparse.Namespace) -> int:
    try:
        rows = [row for file in args.files for row in read_rows(file)]
        phenomena = read_phenomena(args.phenomena) if args.phenomena else None
    except EvalFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    if phenomena is not None and not any(row.id in phenomena for row in rows):
        print(
            f"{args.phenomena}: no id matches a row's id column in {', '.join(args.files)}",
            file=sys.stderr,
        )
        return 2
    rules = Rules(Path(args.config or Settings().config_dir))
    progress = Progress(sys.stderr, len(rows)) if args.progress or sys.stderr.isatty() else None
    report = evaluate(rules, rows, phenomena, progress.advance if progress else None)
    print(format_json(report) if args.json else format_text(report))
    return 0
