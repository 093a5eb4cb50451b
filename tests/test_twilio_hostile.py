"""Twilio's webhooks judge the signature first: a forged or unsigned request gets 403 whatever
its headers and bytes; a signed one that is not a UTF-8 form gets a 4xx with a reason."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.twilio_standin import CUSTOMER, OUR_NUMBER, message_sid, twilio_router

PATHS = ["/webhooks/twilio/messaging", "/webhooks/twilio/voice", "/webhooks/twilio/status"]
HOSTILE_TYPES = [
    "application/json; charset=x-bogus",
    "application/x-www-form-urlencoded; charset=x-bogus",
    "application/x-www-form-urlencoded; charset=utf-16",
    "text/plain; charset=",
    "multipart/form-data; boundary=x",
]


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/store.db"


def form() -> dict[str, str]:
    return {"MessageSid": message_sid(), "From": CUSTOMER, "To": OUR_NUMBER, "Body": "hi"}


async def test_forged_or_unsigned_requests_get_403_whatever_their_charset(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        for path in PATHS:
            for content_type in HOSTILE_TYPES:
                for signature in (None, "forged", t.sign(path, {})):
                    headers = {"Content-Type": content_type}
                    if signature is not None:
                        headers["X-Twilio-Signature"] = signature
                    body = urlencode(form()).encode() + b"&x=\xff"
                    async with t.http.post(t.url(path), data=body, headers=headers) as resp:
                        assert resp.status == 403, (path, content_type, signature)
                        assert "error" in await resp.json()
        assert await t.inbound_records() == []


async def test_unsigned_requests_get_403_when_no_auth_token_is_set(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch, env={"TWILIO_AUTH_TOKEN": None}) as t:
        headers = {"Content-Type": HOSTILE_TYPES[0]}
        async with t.http.post(t.url(PATHS[0]), data=b"\xff" * 10, headers=headers) as resp:
            assert resp.status == 403


@pytest.mark.parametrize(
    ("content_type", "status", "reason"),
    [
        ("application/x-www-form-urlencoded; charset=x-bogus", 415, "UTF-8"),
        ("application/x-www-form-urlencoded; charset=utf-16", 415, "UTF-8"),
        ("application/json", 415, "x-www-form-urlencoded"),
        ("application/x-www-form-urlencoded; charset=UTF-8", 200, None),
    ],
)
async def test_a_signed_request_that_is_not_a_utf8_form_gets_415(
    sqlite_url, monkeypatch, content_type, status, reason
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        path, params = PATHS[0], form()
        headers = {"Content-Type": content_type, "X-Twilio-Signature": t.sign(path, params)}
        async with t.http.post(t.url(path), data=urlencode(params), headers=headers) as resp:
            assert resp.status == status, await resp.text()
            if reason is not None:
                assert reason in (await resp.json())["error"]


async def test_a_body_past_the_size_limit_gets_413(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        path, params = PATHS[0], {**form(), "Body": "x" * 100_000}
        headers = {"X-Twilio-Signature": t.sign(path, params)}
        async with t.http.post(t.url(path), data=params, headers=headers) as resp:
            assert resp.status == 413
