"""Message-id accounting of the fault tests: printed, and appended to var/fault-accounting.jsonl
so a whole `make test` leaves the figures for the README's table."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def record(**figures: object) -> None:
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\n{line}")
    path = ROOT / "var" / "fault-accounting.jsonl"
    path.parent.mkdir(exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(figures) + "\n")
