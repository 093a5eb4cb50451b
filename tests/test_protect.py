"""The protective action: a critical fraud report makes the router ask the wallet's backend (an
in-process stand-in, over HTTP) to hold the wallet: signed, one request per case whatever the
retries, every step in the case's audit trail, the customer told; an agent confirms or lifts.
The signature scheme itself is checked with the verifier the docs give backends."""

from __future__ import annotations

import time

import pytest

from router.core.signature import HEADER, SignatureError, signature_header, verify
from tests.case_helpers import case_router
from tests.test_cases import FRAUD_SMS
from tests.twilio_standin import CUSTOMER

HELD_EN = "we have asked for your wallet to be held"


async def test_a_critical_fraud_report_sends_one_signed_freeze_request_even_after_a_failed_attempt(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    async with case_router(
        database_url, broker_kind, request, monkeypatch, tmp_path, fail_first=1
    ) as r:
        await r.twilio.sms(FRAUD_SMS)
        freeze = await r.wallet.wait_for("freeze")

        assert [x.status for x in r.wallet.received] == [503, 200]
        assert all(x.refused is None for x in r.wallet.received)  # both correctly signed
        assert {x.headers["Idempotency-Key"] for x in r.wallet.received} == {
            freeze.headers["Idempotency-Key"]
        }
        body = freeze.json
        assert body["action"] == "freeze" and body["attempt"] == 2
        assert body["customer"]["phone"] == CUSTOMER
        assert {"channel": "sms", "address": CUSTOMER} in body["customer"]["identities"]
        assert body["transaction_ids"] == ["TXN20261201001"]
        assert body["amounts"] == ["¥500"]
        assert body["idempotency_key"] == freeze.headers["Idempotency-Key"]
        [conversation] = await r.twilio.wait_for_queue("fraud", lambda c: len(c) == 1)
        assert body["case_id"] == conversation["case_id"]


async def test_a_replayed_or_altered_freeze_request_is_refused_by_the_signature_check(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    async with case_router(database_url, broker_kind, request, monkeypatch, tmp_path) as r:
        await r.twilio.sms(FRAUD_SMS)
        freeze = await r.wallet.wait_for("freeze")
        headers = {
            HEADER: freeze.headers[HEADER],
            "Idempotency-Key": freeze.headers["Idempotency-Key"],
        }
        altered = freeze.body.replace(b"TXN20261201001", b"TXN20261201002")
        assert altered != freeze.body
        for body in (freeze.body, altered):
            async with r.http.post(r.wallet.url, data=body, headers=headers) as resp:
                assert resp.status == 401
        assert [x.refused for x in r.wallet.received[-2:]] == [
            "request already seen (replay)",
            "signature does not match the body",
        ]
        assert len(r.wallet.accepted()) == 1


async def test_the_audit_trail_lists_each_step_and_the_customer_is_told_on_their_channel(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    async with case_router(
        database_url, broker_kind, request, monkeypatch, tmp_path, fail_first=1
    ) as r:
        await r.twilio.sms(FRAUD_SMS)
        [conversation] = await r.twilio.wait_for_queue("fraud", lambda c: len(c) == 1)
        case_id = conversation["case_id"]
        case = await r.case_until(
            case_id, lambda c: any(e["kind"] == "protect.customer_told" for e in c["events"])
        )
        assert [(e["kind"], e["by"]) for e in case["events"]] == [
            ("case.opened", "supportrouter"),
            ("protect.requested", "supportrouter"),
            ("protect.retrying", "supportrouter"),
            ("protect.answered", "backend"),
            ("protect.customer_told", "supportrouter"),
        ]
        assert case["events"][3]["detail"]["answer"]["decision"] == "held"
        assert case["protection"]["state"] == "answered"
        told = await r.twilio.standin.wait_for("messages", 2)
        assert any(HELD_EN in m["body"] and m["to"] == CUSTOMER for m in told)

        # An agent confirms the hold, then lifts it: each goes to the backend once, signed.
        status, answer = await r.post(f"/api/cases/{case_id}/protect/confirm")
        assert status == 202, answer
        confirm = await r.wallet.wait_for("confirm")
        assert confirm.json["requested_by"] == "admin"
        status, answer = await r.post(f"/api/cases/{case_id}/protect/confirm")
        assert status == 409 and "already" in answer["error"]
        status, answer = await r.post(f"/api/cases/{case_id}/protect/lift")
        assert status == 202, answer
        await r.wallet.wait_for("lift")
        case = await r.case_until(
            case_id,
            lambda c: sum(e["kind"] == "protect.customer_told" for e in c["events"]) == 3,
        )
        steps = [(e["kind"], e["by"], e["detail"].get("action")) for e in case["events"]]
        assert ("protect.confirmed", "admin", "confirm") in steps
        assert ("protect.lifted", "admin", "lift") in steps
        assert [s for s in steps if s[0] == "protect.answered"] == [
            ("protect.answered", "backend", "freeze"),
            ("protect.answered", "backend", "confirm"),
            ("protect.answered", "backend", "lift"),
        ]
        assert all(e["at"] for e in case["events"])


async def test_confirming_before_the_backend_answered_is_refused(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    async with case_router(
        database_url, broker_kind, request, monkeypatch, tmp_path, fail_first=1000
    ) as r:
        await r.twilio.sms(FRAUD_SMS)
        [conversation] = await r.twilio.wait_for_queue("fraud", lambda c: len(c) == 1)
        case_id = conversation["case_id"]
        await r.case_until(case_id, lambda c: c["protection"]["state"] == "pending")
        for action in ("confirm", "lift"):
            status, answer = await r.post(f"/api/cases/{case_id}/protect/{action}")
            assert status == 409 and "not answered" in answer["error"]


# --- the signature scheme, as a backend checks it ---------------------------------------------

SECRET = "whsec-test"
BODY = b'{"action":"freeze","case_id":"c1"}'


def test_a_signed_body_verifies_and_returns_its_timestamp():
    at = int(time.time())
    assert verify(SECRET, signature_header(SECRET, BODY, at), BODY) == at


# Headers are signed when the test runs, not when it is collected: a suite runs for longer than
# the signature's tolerance.
@pytest.mark.parametrize(
    ("header", "body", "reason"),
    [
        (lambda: signature_header(SECRET, BODY), BODY + b" ", "does not match"),
        (lambda: signature_header("another-secret", BODY), BODY, "does not match"),
        (lambda: signature_header(SECRET, BODY, int(time.time()) - 3600), BODY, "tolerance"),
        (lambda: "v1=abc", BODY, "t=<unix seconds>"),
        (lambda: "garbage", BODY, "malformed"),
    ],
    ids=["altered", "other-secret", "stale", "no-timestamp", "malformed"],
)
def test_a_bad_signature_is_refused_with_the_reason(header, body, reason):
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, header(), body)


def test_a_request_seen_before_is_refused_as_a_replay():
    seen: set[str] = set()
    header = signature_header(SECRET, BODY)
    verify(SECRET, header, BODY, seen=seen)
    with pytest.raises(SignatureError, match="replay"):
        verify(SECRET, header, BODY, seen=seen)


async def test_a_freeze_request_not_yet_answered_is_sent_after_a_restart(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    async with case_router(
        database_url, broker_kind, request, monkeypatch, first, fail_first=1000
    ) as r:
        await r.twilio.sms(FRAUD_SMS)
        [conversation] = await r.twilio.wait_for_queue("fraud", lambda c: len(c) == 1)
        case_id = conversation["case_id"]
        await r.case_until(
            case_id, lambda c: any(e["kind"] == "protect.retrying" for e in c["events"])
        )
        key = r.wallet.received[0].headers["Idempotency-Key"]
        assert r.wallet.accepted() == []
    # The backend is back; so is the router, on the same database.
    async with case_router(database_url, broker_kind, request, monkeypatch, second) as r:
        freeze = await r.wallet.wait_for("freeze")
        assert freeze.headers["Idempotency-Key"] == key and freeze.json["case_id"] == case_id
        case = await r.case_until(
            case_id, lambda c: any(e["kind"] == "protect.customer_told" for e in c["events"])
        )
        assert case["protection"]["state"] == "answered"
        assert len(r.wallet.accepted()) == 1
