"""One log format: the libraries' standard-library records come out as the project's do."""

from __future__ import annotations

import io
import json
import logging

import structlog

from router.observability.logs import configure_logging


def _lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_library_records_are_json_lines_like_ours():
    buffer = io.StringIO()
    configure_logging("json", "info", stream=buffer)
    structlog.get_logger().info("router.event", trace_id="t1")
    logging.getLogger("aiokafka.consumer").warning("Heartbeat failed for group %s", "g1")
    logging.getLogger("aiokafka.consumer").info("below warning: dropped")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    ours, library, failure = _lines(buffer)
    assert ours["event"] == "router.event" and ours["trace_id"] == "t1"
    assert library["event"] == "Heartbeat failed for group g1"
    assert library["logger"] == "aiokafka.consumer"
    assert library["level"] == "warning"
    assert set(ours) - {"trace_id"} <= set(library)  # event, level, timestamp
    assert failure["level"] == "error" and "ValueError: boom" in failure["exception"]


def test_configuring_twice_keeps_one_handler():
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", stream=first)
    configure_logging("json", "info", stream=second)
    logging.getLogger("asyncio").warning("once")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["once"]
