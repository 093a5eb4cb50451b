"""The bench scripts' option types for argparse: a number out of range is refused with the
option's name before anything starts, not found by a crash deep in a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The router's own, so that the bench scripts and `supportrouter` refuse a number alike.
from router.cli.main import whole_number as whole  # noqa: E402, F401


def number_list(text: str, low: int, high: int, what: str, example: str) -> list[int]:
    """An option's comma-separated whole numbers, each from `low` to `high` (argparse's `type`)."""
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if not numbers or not all(low <= n <= high for n in numbers):
        raise argparse.ArgumentTypeError(
            f"expected {what} from {low} to {high:,} like {example}, not {text!r}"
        )
    return numbers
