"""One log format: the libraries' standard-library records come out as the project's do."""

from __future__ import annotations

import datetime
import io
import json
import logging

import pytest
import structlog
import structlog.testing

from router.observability.logs import IsoStamp, configure_logging


@pytest.fixture(autouse=True)
def _structlog_restored():
    """Each test configures structlog for itself; the next module gets it back as it was (a
    level of warning left behind would drop the info lines other tests capture)."""
    before = structlog.get_config()
    yield
    structlog.configure(**before)


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


def test_any_value_makes_one_json_line_with_its_text_as_it_is():
    buffer = io.StringIO()
    configure_logging("json", "info", stream=buffer)
    log = structlog.get_logger()
    log.info("router.text", text="我忘记登录密码了", count=3, ratio=0.5, flags={"a": [1, None]})
    log.info("router.surrogate", text="broken \udcff byte")  # orjson refuses it
    log.info("router.big", value=2**70, keys={1: "one"})
    log.info("router.object", value=object())  # no JSON for it: its repr
    text, surrogate, big, other = _lines(buffer)
    assert "我忘记登录密码了" in buffer.getvalue().splitlines()[0]  # not \u escapes
    assert (text["text"], text["count"], text["ratio"]) == ("我忘记登录密码了", 3, 0.5)
    assert text["flags"] == {"a": [1, None]}
    assert surrogate["text"] == "broken \udcff byte"
    assert big["value"] == 2**70 and big["keys"] == {"1": "one"}
    assert other["value"].startswith("<object object at")


def test_configuring_twice_keeps_one_handler():
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", stream=first)
    configure_logging("json", "info", stream=second)
    logging.getLogger("asyncio").warning("once")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["once"]


class _Writes(io.StringIO):
    """A stream that remembers each write() it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_each_line_is_one_write_with_its_newline_so_processes_sharing_stderr_never_mix_lines():
    stream = _Writes()
    configure_logging("json", "info", stream=stream)
    for n in range(3):
        structlog.get_logger().info("router.event", n=n)
    logging.getLogger("aiokafka.consumer").warning("Heartbeat failed")
    assert len(stream.writes) == 4
    for text in stream.writes:
        assert text.endswith("\n") and text.count("\n") == 1, text
        json.loads(text)


def _chain_and_short(**fields) -> tuple[dict, dict, list[str]]:
    """The same info line twice: the short way, and through the processor chain (an
    `exc_info=False` sends it there and, being false, adds nothing to the line)."""
    buffer = io.StringIO()
    configure_logging("json", "info", stream=buffer)
    log = structlog.get_logger().bind(process="dispatcher")
    log.info("conversation.queued", **fields)
    log.info("conversation.queued", exc_info=False, **fields)
    short, chained = _lines(buffer)
    return short, chained, buffer.getvalue().splitlines()


def test_an_info_line_the_short_way_is_the_line_the_processor_chain_writes():
    short, chained, raw = _chain_and_short(queue="fraud", rank=1, tags=["a"], at=object())
    assert list(short) == list(chained)  # the same keys in the same order
    assert list(short) == ["process", "queue", "rank", "tags", "at", "event", "level", "timestamp"]
    assert {k: v for k, v in short.items() if k not in ("timestamp", "at")} == {
        k: v for k, v in chained.items() if k not in ("timestamp", "at")
    }
    assert short["at"].startswith("<object object at")  # the renderer's fallback, the same way
    assert short["level"] == "info"
    for line in raw:  # structlog's ISO format: UTC, "Z"
        stamp = json.loads(line)["timestamp"]
        assert stamp.endswith("Z") and stamp[10] == "T", stamp


def test_lines_the_short_way_cannot_write_go_through_the_chain():
    buffer = io.StringIO()
    configure_logging("json", "info", stream=buffer)
    log = structlog.get_logger()
    log.info("router.%s", "formatted")  # positional arguments: %-formatted by the chain
    try:
        raise ValueError("boom")
    except ValueError:
        log.info("router.failed", exc_info=True)
    with structlog.contextvars.bound_contextvars(request_id="r1"):
        log.info("router.bound", n=1)
    formatted, failed, bound = _lines(buffer)
    assert formatted["event"] == "router.formatted"
    assert "ValueError: boom" in failed["exception"]
    assert bound["request_id"] == "r1" and bound["n"] == 1


def test_captured_logs_get_the_info_lines_too():
    # structlog.testing.capture_logs swaps the configured chain for its own, in place: a line
    # the short way would skip it (the tests that read the router's lines through it).
    buffer = io.StringIO()
    configure_logging("json", "info", stream=buffer)
    with structlog.testing.capture_logs() as captured:
        structlog.get_logger().info("agent.login_failed", username_sha="abc")
    assert captured == [{"event": "agent.login_failed", "username_sha": "abc", "log_level": "info"}]
    assert buffer.getvalue() == ""
    structlog.get_logger().info("router.after", n=1)  # the chain put back: the short way again
    assert [line["event"] for line in _lines(buffer)] == ["router.after"]


def test_info_lines_are_dropped_at_warning_level():
    buffer = io.StringIO()
    configure_logging("json", "warning", stream=buffer)
    structlog.get_logger().info("router.quiet", n=1)
    structlog.get_logger().warning("router.loud", n=2)
    assert [line["event"] for line in _lines(buffer)] == ["router.loud"]


def test_the_timestamp_is_the_one_structlog_writes(monkeypatch):
    stamp = IsoStamp()
    for at in (1796480000.0, 1796480000.25, 1796480061.000001):
        monkeypatch.setattr("router.observability.logs.time.time", lambda at=at: at)
        expected = (
            datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat().replace("+00:00", "Z")
        )
        assert stamp.now() == expected
