"""The next shift a dispatcher's chunk quotes to customers when nobody is available
(`Snapshot.next_shift`): kept between messages while that shift is still ahead, and always the
same as reading every agent's calendar again (`Availability.next_shift`)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from router.policy.rules import Rules
from router.services.assignment.availability import Availability, Snapshot
from tests.conftest import CONFIG_DIR


@pytest.fixture(scope="module")
def assigner() -> Availability:
    return Availability(cast(Any, None), Rules(CONFIG_DIR), clock=None)  # calendars only: no store


def test_a_chunk_quotes_the_same_next_shift_as_the_calendars_at_every_moment(assigner):
    snapshot = Snapshot(assigner, set(), {}, Counter())  # nobody available
    start = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)  # Friday 04:00 in Shanghai
    asked = [("payments", "en", "sms"), ("fraud", "zh", "chat"), ("payments", "zh", "email")]
    quoted = set()
    for step in range(3 * 24 * 60 // 7):  # three days, the weekend's later start among them
        at = start + timedelta(minutes=7 * step)
        for queue, language, channel in asked:
            expected = assigner.next_shift(queue, language, channel, at)
            assert snapshot.next_shift(queue, language, channel, at) == expected, (at, queue)
            quoted.add(expected)
    # The quote moved on as each shift began: not one value kept throughout.
    assert len({shift for shift in quoted if shift is not None}) >= 3, quoted


def test_a_clock_that_steps_back_is_answered_from_the_calendars(assigner):
    snapshot = Snapshot(assigner, set(), {}, Counter())
    friday_night = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)  # Friday 22:00 in Shanghai
    friday_morning = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)  # Friday 07:00
    later = snapshot.next_shift("payments", "en", "sms", friday_night)
    earlier = snapshot.next_shift("payments", "en", "sms", friday_morning)
    assert later is not None and earlier is not None and earlier[0] < later[0]
    assert earlier == assigner.next_shift("payments", "en", "sms", friday_morning)
