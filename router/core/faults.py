"""Which failures mean "a service we depend on is away" rather than "this record is bad".

A consumer that meets one of these does not count it against the record: it keeps the record,
waits and tries again (the partition seeks back), so a database or broker restart sends nothing
to the dead-letter queue. Anything else is the record's fault after a few tries.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy.exc as sa_exc
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError

_SQLITE_PASSING = ("locked", "busy", "unable to open", "disk i/o")


def is_outage(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says a database or broker could not be reached."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _away(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _away(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.OperationalError) and isinstance(exc.orig, sqlite3.Error):
        # SQLite says OperationalError for a missing table too: only these are passing.
        return any(word in str(exc.orig).lower() for word in _SQLITE_PASSING)
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True  # connection refused or lost, server shutting down, pool exhausted
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return True  # a socket error: refused, reset, unreachable
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError)):
        return True
    if isinstance(exc, KafkaError) and exc.retriable:
        return True  # Kafka says try again (a leader moving), or our bus gave up waiting
    # asyncpg's errors, unwrapped: the server went away or is starting or stopping.
    return type(exc).__name__ in {
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "AdminShutdownError",
        "CrashShutdownError",
        "ConnectionFailureError",
        "TooManyConnectionsError",
        "InterfaceError",
    }
