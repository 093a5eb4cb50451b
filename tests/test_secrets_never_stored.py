"""A secret a customer sends reaches no log line, no Kafka record and no database row.

Each kind of secret goes through the running router the way a customer sends it (the live chat
websocket); then the router's whole log output, every record of every topic and every row of
every table are searched for it. The acknowledgement tells the customer, in their language,
never to send such things.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re

import aiohttp
import pytest
import sqlalchemy as sa
import structlog

from router.app import Router
from router.bus.reader import read_to_end
from router.observability.logs import configure_logging
from tests.chat_helpers import chat_ws_url
from tests.conftest import make_settings

# kind -> (what the customer writes, the secrets in it, words the acknowledgement must carry)
SECRETS = {
    "one_time_code": (
        "我刚收到的验证码是 482913，有人打电话问我要，是你们吗",
        ["482913"],
        "请不要向任何人",
    ),
    "one_time_code_en": (
        "the code is 771204 and a caller wants it, is that you?",
        ["771204"],
        "Never send",
    ),
    "password": (
        "my password is Tr0ub4dor&3x and it stopped working",
        ["Tr0ub4dor&3x"],
        "Never send",
    ),
    "card_number": (
        "my card 4111 1111 1111 1111 was charged twice for one taxi",
        ["4111 1111 1111 1111", "4111111111111111"],
        "Never send",
    ),
    "cvv": (
        "卡号 5555555555554444 安全码 8642，这张卡能绑定吗",
        ["5555555555554444", "8642"],
        "请不要向任何人",
    ),
    "resident_id": (
        "实名认证一直失败，我的身份证号是 11010519491231002X",
        ["11010519491231002X"],
        "请不要向任何人",
    ),
}


def _needle(secret: str) -> re.Pattern:
    # Not inside a longer run of letters or digits: a 4-digit CVV may occur inside a hex trace id
    # or a timestamp by chance, which is not a leak.
    return re.compile(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])")


NEEDLES = {secret: _needle(secret) for _, secrets, _ in SECRETS.values() for secret in secrets}


def _leaks(where: str, text: str) -> list[str]:
    return [f"{secret!r} in {where}" for secret, needle in NEEDLES.items() if needle.search(text)]


@pytest.fixture
def captured_logs():
    """The router's structlog output (and the libraries' standard logging) into one buffer."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("json", "debug", stream=buffer)
    handler = logging.StreamHandler(buffer)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


async def _every_record(bootstrap: str, topics: list[str]) -> dict[str, list[bytes]]:
    """Every record of every topic, from the first offset to the last, outside any group."""
    found: dict[str, list[bytes]] = {t: [] for t in topics}
    for r in await read_to_end(bootstrap, topics):
        found[r.topic].append((r.key or b"") + b" " + (r.value or b""))
    return found


async def _every_row(engine) -> dict[str, list[str]]:
    """Every row of every table the store has, as text."""
    async with engine.connect() as conn:
        metadata = sa.MetaData()
        await conn.run_sync(metadata.reflect)
        dump = {}
        for table in metadata.sorted_tables:
            rows = (await conn.execute(sa.select(table))).all()
            dump[table.name] = [" ".join(str(value) for value in row) for row in rows]
        return dump


async def _ack(ws: aiohttp.ClientWebSocketResponse) -> dict:
    async with asyncio.timeout(30):
        while True:
            frame = await ws.receive_json()
            if frame.get("type") == "message" and frame.get("kind") == "acknowledgement":
                return frame


async def test_no_secret_reaches_the_logs_kafka_or_the_database(database_url, captured_logs):
    settings = make_settings(database_url, channels=["chat"], log_format="json", log_level="debug")
    async with Router(settings) as router, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{router.gateway.port}"
        acknowledgements = {}
        for kind, (text, _, _) in SECRETS.items():
            async with http.post(base + "/chat/sessions", json={"name": kind}) as r:
                token = (await r.json())["session"]
            async with http.ws_connect(await chat_ws_url(http, base, token)) as ws:
                await ws.send_json({"type": "message", "text": text, "id": kind})
                acknowledgements[kind] = await _ack(ws)
        records = await _every_record(router.bus.bootstrap_servers, router.bus.all_topics())
        rows = await _every_row(router.store.engine)

    leaks = _leaks("the logs", captured_logs.getvalue())
    for topic, values in records.items():
        leaks += _leaks(f"Kafka topic {topic}", b"\n".join(values).decode(errors="replace"))
    for table, lines in rows.items():
        leaks += _leaks(f"table {table}", "\n".join(lines))
    assert not leaks, leaks
    assert "message.received" in captured_logs.getvalue(), "the log capture saw the router's lines"

    inbound = [
        r
        for topic in ("support.inbound.urgent", "support.inbound.standard")
        for r in records[topic]
    ]
    assert len(inbound) == len(SECRETS)
    recorded_kinds = set(re.findall(rb'"redactions":\[([^\]]*)\]', b" ".join(inbound)))
    for kind in ("one_time_code", "password", "card_number", "cvv", "resident_id"):
        assert any(kind.encode() in kinds for kinds in recorded_kinds), (
            f"{kind} not recorded on any envelope"
        )
    assert any(rows["messages"]), "the store holds the (redacted) messages"

    for kind, (_, _, warning) in SECRETS.items():
        assert warning in acknowledgements[kind]["text"], (
            f"{kind}: {acknowledgements[kind]['text']}"
        )
