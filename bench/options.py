"""The bench scripts' option types for argparse: a number out of range is refused with the
option's name before anything starts, not found by a crash deep in a run."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole(low: int, high: int) -> Callable[[str], int]:
    """argparse's `type` for an option's one whole number from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low:,} to {high:,}, not {text!r}"
            )
        return number

    return parse


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
