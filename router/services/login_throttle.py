"""How many wrong passwords a username, and a client address, may try: a few free, then each
further failure doubles the wait before the next try (up to a cap). Kept in this process's memory:
a restart forgets it, and several gateways each count their own."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

# Beyond this many remembered keys, those neither waiting nor recent are dropped.
MAX_KEYS = 10_000


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        free: int,
        free_per_address: int,
        max_wait_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._free = {"username": free, "address": free_per_address}
        self._max_wait, self._clock = max_wait_seconds, clock
        self._failures: dict[tuple[str, str], _Failures] = {}

    def retry_after(self, username: str, address: str) -> tuple[int, str | None]:
        """(seconds to wait, "username" or "address"), or (0, None) when a try is allowed now."""
        at = self._clock()
        for by, key in (("username", username), ("address", address)):
            failures = self._failures.get((by, key))
            if failures is not None and failures.blocked_until > at:
                return max(1, math.ceil(failures.blocked_until - at)), by
        return 0, None

    def failed(self, username: str, address: str) -> None:
        at = self._clock()
        if len(self._failures) >= MAX_KEYS:
            self._forget_old(at)
        for by, key in (("username", username), ("address", address)):
            failures = self._failures.setdefault((by, key), _Failures())
            if at - failures.last > self._max_wait and failures.blocked_until <= at:
                failures.count = 0  # quiet for longer than the longest wait: start afresh
            failures.count += 1
            failures.last = at
            beyond = failures.count - self._free[by]
            if beyond >= 0:
                failures.blocked_until = at + min(2.0**beyond, self._max_wait)

    def succeeded(self, username: str) -> None:
        """The address keeps its count: one good password does not buy guesses at others."""
        self._failures.pop(("username", username), None)

    def _forget_old(self, at: float) -> None:
        for key, failures in list(self._failures.items()):
            if failures.blocked_until <= at and at - failures.last > self._max_wait:
                del self._failures[key]
