"""Rule 6: the evaluation sets are for measuring only. No config string may copy or closely
paraphrase one of their rows (ground for a hand check, not a licence to tune against them)."""

from __future__ import annotations

import csv
import difflib
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONFIG_DIR

EVAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval"
THRESHOLD = 0.8  # SequenceMatcher ratio on normalized text
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _normal(text: str) -> str:
    return re.sub(r"[^\w\u4e00-\u9fff]+", " ", text.lower()).strip()


def _config_strings() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def walk(node, where: str) -> None:
        # Sentences, not vocabulary: a keyword of a few words ("transfer failed") is bound to
        # occur in real messages; an example sentence must be the team's own.
        if isinstance(node, str) and (len(node.split()) >= 6 or len(_CJK.findall(node)) >= 8):
            found.append((where, node))
        elif isinstance(node, list):
            for item in node:
                walk(item, where)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value, where)

    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)
    return found


def _eval_rows() -> list[str]:
    rows: list[str] = []
    for path in sorted(EVAL_DIR.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if "text" in (reader.fieldnames or []):  # dev2_phenomena.csv holds only tags
                rows += [row["text"] for row in reader]
    return rows


def test_no_config_string_copies_or_closely_paraphrases_an_evaluation_row():
    rows = _eval_rows()
    if not rows:
        pytest.skip(f"no evaluation sets at {EVAL_DIR}")
    normal_rows = [_normal(r) for r in rows]
    close = []
    for where, text in _config_strings():
        mine = _normal(text)
        matcher = difflib.SequenceMatcher(None, "", mine, autojunk=False)
        for row in normal_rows:
            if abs(len(row) - len(mine)) > 0.4 * max(len(row), len(mine)):
                continue
            matcher.set_seq1(row)
            if (
                matcher.real_quick_ratio() >= THRESHOLD
                and matcher.quick_ratio() >= THRESHOLD
                and matcher.ratio() >= THRESHOLD
            ):
                close.append(f"{where}: {text!r} ~ {row!r} ({matcher.ratio():.2f})")
                break
    assert not close, "config strings too close to evaluation rows:\n" + "\n".join(close)
