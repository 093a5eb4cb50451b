"""A secret a customer sends reaches no log line, no Kafka record and no database row.

Each kind of secret goes through the running router the way a customer sends it (the live chat
websocket); then the router's whole log output, every record of every topic and every row of
every table are searched for it. The acknowledgement tells the customer, in their language,
never to send such things.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import unicodedata

import aiohttp
import pytest
import sqlalchemy as sa
import structlog
from twilio.request_validator import RequestValidator

from channels.telegram.inbound import SECRET_HEADER, WEBHOOK_PATH
from router.app import Router
from router.bus.reader import read_to_end
from router.observability.logs import configure_logging
from router.store.schema import messages
from tests import telegram_standin as tg
from tests.chat_helpers import chat_ws_url
from tests.conftest import make_settings
from tests.email_helpers import CUSTOMER, SUPPORT, customer_mail, send_smtp, smtp_port
from tests.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, TwilioStandIn

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


# --- every field a customer controls, on every channel ------------------------------------------


def _card(prefix: str) -> str:
    """`prefix` completed with its Luhn check digit: a number the redactor must take for a card."""
    total = 0
    for i, ch in enumerate(reversed(prefix + "0")):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return prefix + str((10 - total % 10) % 10)


def _grouped(digits: str, separator: str) -> str:
    return separator.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) - 0x30 + 0xFF10) if c.isdigit() else c for c in text)


# field -> (how the customer writes it, the digits the planted secret is made of)
_CARDS = {
    field: _card(prefix)
    for field, prefix in {
        "chat_session_name": "400005665566555",
        "chat_dots": "401288888888188",
        "chat_slashes": "510510510510510",
        "chat_underscores": "601111111111111",
        "chat_line_breaks": "353011133330000",
        "whatsapp_profile_name": "356600202036050",
        "whatsapp_media_url": "620000000000000",
        "email_display_name": "491761000000000",
        "email_subject": "520082828282821",
        "email_attachment_name": "455673758689985",
        "email_body_full_width": "471610899716531",
        "telegram_first_name": "453914880343646",
        "telegram_last_name": "402400715384521",
        "telegram_username": "491620390201000",
        "telegram_document_name": "448508000000000",
        "telegram_caption": "516865000000000",
    }.items()
}
_ID_15 = "440301720615513"  # area 440301, born 1972-06-15
_ID_18_FULL_WIDTH = _full_width("11010519491231002X")
WRITTEN = {
    "chat_session_name": f"Li {_grouped(_CARDS['chat_session_name'], ' ')}",
    "chat_dots": _grouped(_CARDS["chat_dots"], "."),
    "chat_slashes": _grouped(_CARDS["chat_slashes"], "/"),
    "chat_underscores": _grouped(_CARDS["chat_underscores"], "_"),
    "chat_line_breaks": _grouped(_CARDS["chat_line_breaks"], "\n"),
    "whatsapp_profile_name": f"Wang {_grouped(_CARDS['whatsapp_profile_name'], '-')}",
    "whatsapp_media_url": f"https://media.example.test/{_CARDS['whatsapp_media_url']}.jpg",
    "email_display_name": f"Zhang {_CARDS['email_display_name']}",
    "email_subject": f"card {_grouped(_CARDS['email_subject'], ' ')} blocked",
    "email_attachment_name": f"visa_{_CARDS['email_attachment_name']}.png",
    "email_body_full_width": _full_width(_grouped(_CARDS["email_body_full_width"], " ")),
    "telegram_first_name": f"Mei {_CARDS['telegram_first_name']}",
    "telegram_last_name": _grouped(_CARDS["telegram_last_name"], " "),
    "telegram_username": f"card_{_grouped(_CARDS['telegram_username'], '_')}",
    "telegram_document_name": f"card {_CARDS['telegram_document_name']}.pdf",
    "telegram_caption": f"my card {_grouped(_CARDS['telegram_caption'], '.')} was charged",
}
PLANTED = [*_CARDS.values(), _ID_15, "11010519491231002X"] + [
    WRITTEN[f] for f in ("chat_dots", "chat_slashes", "chat_underscores", "telegram_username")
]
PLANTED_NEEDLES = {secret: _needle(secret) for secret in PLANTED}


def _texts(value) -> list[str]:
    """Every string in a value as a customer could read it back: JSON decoded (so an escaped
    line break or a \\uFF11 is seen as what it stands for), full width folded (NFKC)."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _texts(v)]
    if not isinstance(value, str):
        return [str(value)]
    found = [unicodedata.normalize("NFKC", value)]
    if value[:1] in "{[":
        try:
            found += _texts(json.loads(value))
        except ValueError:
            pass
    # Separators and line breaks removed too: a card spelled across lines is still a card.
    found.append(re.sub(r"[\s._/-]+", "", found[0]))
    return found


def _planted_leaks(where: str, values) -> list[str]:
    text = "\n".join(_texts(values))
    return [f"{s!r} in {where}" for s, needle in PLANTED_NEEDLES.items() if needle.search(text)]


def _signed_whatsapp(params: dict[str, str]) -> dict[str, str]:
    path = "/webhooks/twilio/messaging"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + path, params)
    return {"X-Twilio-Signature": signature}


async def _stored_inbound(engine) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(sa.func.count()).select_from(messages).where(messages.c.direction == "in")
            )
        ).scalar_one()


async def test_no_secret_in_any_customer_field_of_any_channel_reaches_logs_kafka_or_the_database(
    database_url, monkeypatch, captured_logs
):
    telegram_api = tg.BotApiStandIn()
    await telegram_api.start()
    twilio = TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN)
    await twilio.start()
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SUPPORTROUTER_TWILIO_API_BASE_URL": twilio.url,
        "TELEGRAM_BOT_TOKEN": telegram_api.token,
        "TELEGRAM_SECRET_TOKEN": "s3cret-Token_for-webhooks",
        "SUPPORTROUTER_TELEGRAM_API_BASE_URL": telegram_api.base_url,
        "SUPPORTROUTER_SUPPORT_ADDRESS": SUPPORT,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = make_settings(
        database_url,
        channels=["chat", "email", "whatsapp", "telegram"],
        public_url=PUBLIC_URL,
        smtp_port=0,
        log_format="json",
        log_level="debug",
    )
    try:
        async with Router(settings) as router, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{router.gateway.port}"
            # Web chat: the session's name, and card numbers and IDs written every other way.
            async with http.post(
                base + "/chat/sessions", json={"name": WRITTEN["chat_session_name"]}
            ) as r:
                token = (await r.json())["session"]
            chat_texts = [
                f"卡号 {WRITTEN[f]} 被盗刷了"
                for f in ("chat_dots", "chat_slashes", "chat_underscores", "chat_line_breaks")
            ] + [f"身份证 {_ID_15} 认证失败", f"我的身份证号是{_ID_18_FULL_WIDTH}"]
            async with http.ws_connect(await chat_ws_url(http, base, token)) as ws:
                for n, text in enumerate(chat_texts):
                    await ws.send_json({"type": "message", "text": text, "id": f"m{n}"})
                    async with asyncio.timeout(30):
                        while (await ws.receive_json())["type"] != "accepted":
                            pass
            # WhatsApp: the profile name and the media URL.
            params = {
                "MessageSid": "SM" + "ab" * 16,
                "AccountSid": ACCOUNT_SID,
                "From": "whatsapp:+8613800138000",
                "To": "whatsapp:+15005550006",
                "Body": "my transfer failed",
                "ProfileName": WRITTEN["whatsapp_profile_name"],
                "NumMedia": "1",
                "MediaUrl0": WRITTEN["whatsapp_media_url"],
                "MediaContentType0": "image/jpeg",
            }
            async with http.post(
                base + "/webhooks/twilio/messaging", data=params, headers=_signed_whatsapp(params)
            ) as r:
                assert r.status == 200, await r.text()
            # Email: the display name, the subject, an attachment's file name, a full-width body.
            mail = customer_mail(
                f"the card {WRITTEN['email_body_full_width']} was charged twice",
                subject=WRITTEN["email_subject"],
            )
            mail.replace_header("From", f'"{WRITTEN["email_display_name"]}" <{CUSTOMER}>')
            mail.add_attachment(
                b"%PDF-1.4",
                maintype="image",
                subtype="png",
                filename=WRITTEN["email_attachment_name"],
            )
            await send_smtp(smtp_port(router), mail)
            # Telegram: first, last and user name, a document's name and its caption.
            sender = tg.user(
                user_id=5151,
                first_name=WRITTEN["telegram_first_name"],
                last_name=WRITTEN["telegram_last_name"],
                username=WRITTEN["telegram_username"],
            )
            update = tg.document_update(
                WRITTEN["telegram_document_name"],
                "application/pdf",
                1234,
                caption=WRITTEN["telegram_caption"],
                sender=sender,
            )
            telegram_api.delivering(update)
            async with http.post(
                base + WEBHOOK_PATH,
                json=update,
                headers={SECRET_HEADER: env["TELEGRAM_SECRET_TOKEN"]},
            ) as r:
                assert r.status == 200, await r.text()

            expected = len(chat_texts) + 3
            async with asyncio.timeout(30):
                while await _stored_inbound(router.store.engine) < expected:
                    await asyncio.sleep(0.05)
            records = await _every_record(router.bus.bootstrap_servers, router.bus.all_topics())
            rows = await _every_raw_row(router.store.engine)
    finally:
        await twilio.stop()
        await telegram_api.close()

    leaks = _planted_leaks("the logs", captured_logs.getvalue().splitlines())
    for topic, values in records.items():
        leaks += _planted_leaks(f"Kafka topic {topic}", values)
    for table, table_rows in rows.items():
        leaks += _planted_leaks(f"table {table}", table_rows)
    assert not leaks, leaks
    inbound = [
        json.loads(v.split(b" ", 1)[1])
        for topic in ("support.inbound.urgent", "support.inbound.standard")
        for v in records[topic]
    ]
    assert len(inbound) == expected, "every message was published"
    assert rows["chat_sessions"] and rows["conversations"], "the scan saw the stored rows"
    assert "email.accepted" in captured_logs.getvalue(), "the log capture saw the router's lines"


async def _every_raw_row(engine) -> dict[str, list[list]]:
    """Every value of every row of every table, as the database holds it."""
    async with engine.connect() as conn:
        metadata = sa.MetaData()
        await conn.run_sync(metadata.reflect)
        return {
            table.name: [list(row) for row in (await conn.execute(sa.select(table))).all()]
            for table in metadata.sorted_tables
        }
