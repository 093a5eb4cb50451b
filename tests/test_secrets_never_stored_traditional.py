"""A secret written in Traditional Chinese, or in Cantonese phrasing, is stored nowhere either.

Every kind of secret, written the way a customer in Hong Kong or Taiwan writes it, goes through
the running router on every channel (web chat, SMS, WhatsApp, a call's speech, email body and
subject, Telegram); then the router's whole log output, every record of every topic and every
row of every table are searched for it, as in tests/test_secrets_never_stored.py.
"""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
from twilio.request_validator import RequestValidator

import tests.test_secrets_never_stored as never_stored
from channels.telegram.inbound import SECRET_HEADER, WEBHOOK_PATH
from router.app import Router
from tests import telegram_standin as tg
from tests.chat_helpers import chat_ws_url
from tests.conftest import make_settings
from tests.email_helpers import SUPPORT, customer_mail, send_smtp, smtp_port
from tests.twilio_standin import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, TwilioStandIn

captured_logs = never_stored.captured_logs

_CARD = never_stored._card("400005665566555")
_CVV_CARD = never_stored._card("520082828282821")
# kind -> (what the customer writes, the secret in it)
SECRETS = {
    "one_time_code": ("我嘅驗證碼係 603918，有人打電話嚟問我攞", "603918"),
    "dynamic_code": ("動態碼：715204 唔係我申請嘅", "715204"),
    "check_code": ("校驗碼 448027 係咪你哋發嘅", "448027"),
    "payment_password": ("支付密碼是 qz81kw55，可唔可以幫我改", "qz81kw55"),
    "trading_password": ("我嘅交易密碼係 hk7788zz", "hk7788zz"),
    "pin": ("提款卡 PIN碼係 7390", "7390"),
    "card_number": (f"卡號 {never_stored._grouped(_CARD, ' ')} 俾人盜刷咗", _CARD),
    "cvv": (f"信用卡 {_CVV_CARD}，卡背面三個數字係 815", "815"),
    "resident_id": ("身分證號碼 11010519491231002X 認證唔到", "11010519491231002X"),
}
# One message per channel carrying every kind, so each channel is tried with each.
ALL_KINDS = "；".join(text for text, _ in SECRETS.values())
# A call's transcript: no punctuation, a space between words.
SPOKEN = " ".join(text.replace("，", " ").replace("：", " ") for text, _ in SECRETS.values())
# Not inside a longer run, nor a group of a UUID or the fraction of a timestamp: a 4-digit PIN
# is a trace id's group ("…-7390-…") one time in 65,536, which is not a leak. Every secret above
# is written between spaces or Chinese punctuation.
NEEDLES = {
    secret: re.compile(rf"(?<![0-9A-Za-z.:-]){re.escape(secret)}(?![0-9A-Za-z.:-])")
    for secret in [secret for _, secret in SECRETS.values()] + [_CVV_CARD]
}


def _leaks(where: str, values) -> list[str]:
    text = "\n".join(never_stored._texts(values))
    return [
        f"{secret!r} in {where}: ...{text[max(0, m.start() - 40) : m.end() + 20]}..."
        for secret, needle in NEEDLES.items()
        for m in needle.finditer(text)
    ]


def _signed(path: str, params: dict[str, str]) -> dict[str, str]:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + path, params)
    return {"X-Twilio-Signature": signature}


def _twilio_message(sender: str, body: str) -> dict[str, str]:
    return {
        "MessageSid": "SM" + sender[-6:].rjust(32, "0"),
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "To": "whatsapp:+15005550006" if sender.startswith("whatsapp:") else "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }


async def test_traditional_chinese_secrets_of_every_kind_on_every_channel_are_stored_nowhere(
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
        channels=["chat", "sms", "whatsapp", "voice", "email", "telegram"],
        public_url=PUBLIC_URL,
        smtp_port=0,
        log_format="json",
        log_level="debug",
    )
    try:
        async with Router(settings) as router, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{router.gateway.port}"
            async with http.post(base + "/chat/sessions", json={"name": "陳小姐"}) as r:
                token = (await r.json())["session"]
            async with http.ws_connect(await chat_ws_url(http, base, token)) as ws:
                await ws.send_json({"type": "message", "text": ALL_KINDS, "id": "hant"})
                async with asyncio.timeout(30):
                    while (await ws.receive_json())["type"] != "accepted":
                        pass
            for sender in ("+85291234567", "whatsapp:+886912345678"):
                path = "/webhooks/twilio/messaging"
                params = _twilio_message(sender, ALL_KINDS)
                async with http.post(base + path, data=params, headers=_signed(path, params)) as r:
                    assert r.status == 200, await r.text()
            path = "/webhooks/twilio/voice/gather?lang=zh&step=menu"
            params = {
                "CallSid": "CA" + "7" * 32,
                "AccountSid": ACCOUNT_SID,
                "From": "+85291234568",
                "To": "+15005550006",
                "CallStatus": "in-progress",
                "Direction": "inbound",
                "SpeechResult": SPOKEN,
                "Confidence": "0.9",
            }
            async with http.post(base + path, data=params, headers=_signed(path, params)) as r:
                assert r.status == 200, await r.text()
            mail = customer_mail(ALL_KINDS, subject=SECRETS["one_time_code"][0])
            await send_smtp(smtp_port(router), mail)
            update = tg.text_update(ALL_KINDS, tg.user(user_id=6262, first_name="志明"))
            async with http.post(
                base + WEBHOOK_PATH,
                json=update,
                headers={SECRET_HEADER: env["TELEGRAM_SECRET_TOKEN"]},
            ) as r:
                assert r.status == 200, await r.text()

            expected = 6
            async with asyncio.timeout(60):
                while await never_stored._stored_inbound(router.store.engine) < expected:
                    await asyncio.sleep(0.05)
            records = await never_stored._every_record(
                router.bus.bootstrap_servers, router.bus.all_topics()
            )
            rows = await never_stored._every_raw_row(router.store.engine)
    finally:
        await twilio.stop()
        await telegram_api.close()

    leaks = _leaks("the logs", captured_logs.getvalue().splitlines())
    for topic, values in records.items():
        leaks += _leaks(f"Kafka topic {topic}", values)
    for table, table_rows in rows.items():
        leaks += _leaks(f"table {table}", table_rows)
    assert not leaks, leaks
    inbound = [
        json.loads(v.split(b" ", 1)[1])
        for topic in ("support.inbound.urgent", "support.inbound.standard")
        for v in records[topic]
    ]
    assert {e["channel"] for e in inbound} == {
        "chat",
        "sms",
        "whatsapp",
        "voice",
        "email",
        "telegram",
    }, "every channel published its message"
    for envelope in inbound:
        assert set(envelope["redactions"]) >= {
            "one_time_code",
            "password",
            "card_number",
            "cvv",
            "resident_id",
        }, envelope["channel"]
    # Outside the masks the customer's own script is kept.
    assert any("驗證碼" in e["text"] for e in inbound)
    assert rows["conversations"], "the scan saw the stored rows"
