"""structlog setup: JSON lines when not on a terminal, readable lines on one.

The project's records and the libraries' (aiokafka, aiohttp, asyncio, which log through the
standard library) go through the same processors and renderer, so every line has one format:
`event`, `level`, `timestamp`, and `logger` for a library's record.

Every message passing through writes an info line in each process it crosses (received,
queued, sent): in a burst, with the log level at warning, the router used 3 to 8% less CPU a
message. So an info line without positional arguments, bound context variables, exception or
stack, while the chain configured here is in place, goes the short way (`_JsonLines.info`): the
same dictionary in the same order, the same timestamp and renderer, the same single write,
without the processor chain's calls (8.5 → 5.6 µs a line in a loop,
docs/performance.md, "Twenty-second round").
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor

_HANDLER_NAME = "supportrouter"


def json_line(event: dict[str, Any], default: Callable[[Any], Any]) -> str:
    """A line's JSON. orjson's: a few lines for every message in every process, and the standard
    encoder took 10 µs a line where orjson takes 1.4. Text stays UTF-8 as it is, as with
    `ensure_ascii=False` before; a value it cannot write goes to structlog's `default` (its
    repr). What orjson refuses (a lone surrogate in a customer's text, an integer past 64 bits)
    the standard encoder writes, as before."""
    try:
        return orjson.dumps(event, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(event, default=default, ensure_ascii=False)


class IsoStamp:
    """A processor: `timestamp` as structlog's `TimeStamper(fmt="iso", utc=True)` writes it
    (ISO 8601, UTC, microseconds unless there are none, "Z"), the date and time of day formatted
    once a second instead of for every line."""

    def __init__(self) -> None:
        # One attribute, replaced whole: a library's record may be stamped on another thread.
        self._second: tuple[int, str] = (-1, "")

    def now(self) -> str:
        second, micros = divmod(round(time.time() * 1_000_000), 1_000_000)
        cached, prefix = self._second
        if second != cached:
            whole = datetime.datetime.fromtimestamp(second, datetime.UTC)
            prefix = whole.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, prefix)
        return f"{prefix}.{micros:06d}Z" if micros else f"{prefix}Z"

    def __call__(self, _logger: Any, _name: str, event: EventDict) -> EventDict:
        event["timestamp"] = self.now()
        return event


def _json_lines(level_no: int, stamp: IsoStamp, renderer: Processor) -> type:
    """The filtering bound logger for `level_no`, its info lines made the short way."""
    base: Any = structlog.make_filtering_bound_logger(level_no)
    if level_no > logging.INFO:
        return base  # info lines are dropped: nothing to shorten

    class _JsonLines(base):
        def info(self, event: str, *args: Any, **kw: Any) -> Any:
            # What the chain would do with this line (merge_contextvars, add_log_level, the
            # stamp, format_exc_info, the renderer), in the same order, where it would do only
            # that: the chain is still the one configured here (structlog's `capture_logs`
            # swaps it for its own in place), no positional arguments to format, no exception
            # or stack to render, no context variables bound (the router binds none).
            if (
                self._processors[-1] is not renderer
                or args
                or "exc_info" in kw
                or "stack_info" in kw
                or _bound_contextvars()
            ):
                return base.info(self, event, *args, **kw)
            line = {**self._context, **kw} if self._context else kw
            line["event"] = event
            line["level"] = "info"
            line["timestamp"] = stamp.now()
            return self._logger.info(renderer(self._logger, "info", line))

    return _JsonLines


def _bound_contextvars() -> bool:
    return bool(structlog.contextvars.get_contextvars())


def configure_logging(
    fmt: str = "auto", level: str = "info", stream=None, *, once: bool = False
) -> None:
    """`once`: this process configures logging once and for all (the router's processes), so
    each module's logger is built on its first line and kept, not built again for every line."""
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=json_line)
        if as_json
        else structlog.dev.ConsoleRenderer()
    )
    level_no = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    stamp = IsoStamp()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        stamp,
    ]
    exceptions: Processor = (
        structlog.processors.format_exc_info
        if as_json
        else structlog.processors.StackInfoRenderer()
    )
    structlog.configure(
        processors=[*shared, exceptions, renderer],
        wrapper_class=(
            _json_lines(level_no, stamp, renderer)
            if as_json
            else structlog.make_filtering_bound_logger(level_no)
        ),
        # One write() a line, newline included: the workers share the supervisor's stderr, and
        # print()'s two writes (the line, then its newline) let two processes' lines meet.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=once,
    )
    # The standard library's records (libraries' warnings) through the same chain and renderer.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exceptions,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries are chatty below warning (aiokafka logs every fetch at debug): keep their warnings.
    root.setLevel(logging.WARNING)
