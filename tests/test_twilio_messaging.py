"""SMS and WhatsApp through the Twilio Messaging webhook, signed with twilio's own RequestValidator,
over real HTTP to a running router; replies reach the stand-in for Twilio's REST API."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from structlog.testing import capture_logs

from router.core.envelope import Urgency
from tests.twilio_standin import (
    CUSTOMER,
    OUR_NUMBER,
    PUBLIC_URL,
    message_sid,
    twilio_router,
)

PATH = "/webhooks/twilio/messaging"
FAILED_TRANSFER = "my transfer failed with error E1023, money gone from my balance"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/store.db"


def assert_empty_twiml(text: str) -> None:
    root = ET.fromstring(text)
    assert root.tag == "Response"
    assert list(root) == [] and not (root.text or "").strip()


# --- the journey (both databases) ---------------------------------------------------------------


async def test_signed_sms_about_a_failed_transfer_lands_in_payments_high_with_the_error_code(
    database_url, monkeypatch
):
    async with twilio_router(database_url, monkeypatch) as t:
        status, body = await t.sms(FAILED_TRANSFER)
        assert status == 200, body
        assert_empty_twiml(body)

        [conversation] = await t.wait_for_queue("payments", lambda c: len(c) == 1)
        assert conversation["category"] == "transaction_failed"
        assert conversation["urgency"] == Urgency.HIGH
        assert conversation["channel"] == "sms"
        assert conversation["customer_address"] == CUSTOMER
        message = (await t.conversation(conversation["id"]))["messages"][0]
        assert "E1023" in message["meta"]["classification"]["entities"]["error_codes"]


async def test_agent_reply_reaches_twilio_addressed_to_the_customer_from_the_number_they_texted(
    database_url, monkeypatch
):
    async with twilio_router(database_url, monkeypatch) as t:
        other_number = "+15005550010"  # a second number of ours: the reply must leave from this one
        await t.sms(FAILED_TRANSFER, to=other_number)
        [conversation] = await t.wait_for_queue("payments", lambda c: len(c) == 1)

        reply_id = await t.reply(conversation["id"], "We are checking transfer E1023 now.")
        sent = await t.wait_for_delivery(conversation["id"], reply_id, "sent")

        reply = next(
            m for m in t.standin.messages if m["body"] == "We are checking transfer E1023 now."
        )
        assert reply["to"] == CUSTOMER and reply["from"] == other_number
        assert sent["provider_message_id"] == reply["sid"]
        # The acknowledgement went the same way, before the agent's reply.
        assert all(m["to"] == CUSTOMER and m["from"] == other_number for m in t.standin.messages)
        assert reply["status_callback"].startswith(
            f"{PUBLIC_URL}/webhooks/twilio/status?message_id="
        )


async def test_the_same_message_sid_three_times_makes_one_message(database_url, monkeypatch):
    async with twilio_router(database_url, monkeypatch) as t:
        sid = message_sid()
        for _ in range(3):
            status, _ = await t.sms(FAILED_TRANSFER, sid=sid)
            assert status == 200
        await t.sms(
            "and what is the fee for a withdrawal?"
        )  # later message: the three are handled by then
        [conversation] = await t.wait_for_queue(
            "payments", lambda c: len(c) == 1 and c[0]["preview"].startswith("and what")
        )
        inbound = [
            m
            for m in (await t.conversation(conversation["id"]))["messages"]
            if m["direction"] == "in"
        ]
        assert [m["channel_message_id"] for m in inbound].count(sid) == 1
        assert len(inbound) == 2


# --- signatures ------------------------------------------------------------------------------------


async def test_a_forged_signature_gets_403_and_nothing_reaches_kafka(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        forged_sid, genuine_sid = message_sid(), message_sid()
        params = {
            "MessageSid": forged_sid,
            "From": CUSTOMER,
            "To": OUR_NUMBER,
            "Body": "freeze my account",
        }
        forged = t.validator.compute_signature(
            PUBLIC_URL + PATH, {**params, "Body": "something else"}
        )
        status, body = await t.post(PATH, params, signature=forged)
        assert status == 403 and "signature" in body.lower()

        # A genuine message after it: once it is on Kafka, anything before it would be too.
        assert (await t.sms("hello", sid=genuine_sid))[0] == 200
        seen = [e.channel_message_id for e in await t.inbound_records()]
        assert seen == [genuine_sid]


async def test_an_accepted_webhook_is_logged_once_as_its_message_and_a_refused_one_as_a_request(
    sqlite_url, monkeypatch
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        with capture_logs() as logs:
            accepted = await t.sms("what is the fee for a withdrawal")
            refused = await t.post(
                PATH,
                {"MessageSid": message_sid(), "From": CUSTOMER, "To": OUR_NUMBER, "Body": "hi"},
                signed=False,
            )
            # Another webhook, accepted: its handler logs no message, so it keeps its line.
            status = await t.post(
                "/webhooks/twilio/status", {"MessageSid": message_sid(), "MessageStatus": "sent"}
            )
            async with t.http.get(t.url("/healthz")) as health:
                assert health.status == 200
    assert (accepted[0], refused[0], status[0]) == (200, 403, 204)
    assert [e["event"] for e in logs].count("message.received") == 1
    requests = [(e["url"], e["status"]) for e in logs if e["event"] == "http.request"]
    assert requests == [(PATH, 403), ("/webhooks/twilio/status", 204), ("/healthz", 200)]


async def test_a_missing_signature_gets_403(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        status, _ = await t.post(
            PATH,
            {"MessageSid": message_sid(), "From": CUSTOMER, "To": OUR_NUMBER, "Body": "hi"},
            signed=False,
        )
        assert status == 403
        assert await t.inbound_records() == []


async def test_the_signature_is_checked_against_the_public_url_not_the_address_the_router_sees(
    sqlite_url, monkeypatch
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        params = {"MessageSid": message_sid(), "From": CUSTOMER, "To": OUR_NUMBER, "Body": "hi"}
        signed_for_local = t.validator.compute_signature(t.url(PATH), params)
        assert (await t.post(PATH, params, signature=signed_for_local))[0] == 403
        assert (await t.post(PATH, params))[0] == 200  # signed for the public URL


async def test_signatures_of_the_public_url_with_and_without_its_port_both_pass_in_any_order(
    sqlite_url, monkeypatch
):
    # Twilio signs the URL with its port or without it (twilio's `validate` takes either); the
    # router tries the form signed last first, so each switch takes the other path.
    async with twilio_router(sqlite_url, monkeypatch) as t:
        with_port, without_port = "https://support.example.test:443" + PATH, PUBLIC_URL + PATH
        statuses, sids = [], []
        for url in [with_port, without_port, without_port, with_port, with_port, without_port]:
            params = {"MessageSid": message_sid(), "From": CUSTOMER, "To": OUR_NUMBER, "Body": "hi"}
            signature = t.validator.compute_signature(url, params)
            statuses.append((await t.post(PATH, params, signature=signature))[0])
            sids.append(params["MessageSid"])
        assert statuses == [200] * 6

        params = {"MessageSid": message_sid(), "From": CUSTOMER, "To": OUR_NUMBER, "Body": "hi"}
        for url in [
            "https://support.example.test:8443" + PATH,
            "http://support.example.test" + PATH,
        ]:
            signature = t.validator.compute_signature(url, params)
            assert (await t.post(PATH, params, signature=signature))[0] == 403
        sha256 = t.validator.compute_signature(without_port, params, "HMAC_SHA256")
        assert (await t.post(PATH, params, signature=sha256))[0] == 403  # not the one it says
        assert [e.channel_message_id for e in await t.inbound_records()] == sids


async def test_without_an_auth_token_webhooks_are_refused(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch, env={"TWILIO_AUTH_TOKEN": None}) as t:
        status, body = await t.sms("hello")
        assert status == 403 and "TWILIO_AUTH_TOKEN" in body
        assert await t.inbound_records() == []


async def test_the_insecure_dev_opt_in_accepts_unsigned_webhooks_when_no_token_is_set(
    sqlite_url, monkeypatch
):
    env = {"TWILIO_AUTH_TOKEN": None, "SUPPORTROUTER_TWILIO_INSECURE_DEV": "1"}
    async with twilio_router(sqlite_url, monkeypatch, env=env) as t:
        sid = message_sid()
        status, _ = await t.post(
            PATH,
            {"MessageSid": sid, "From": CUSTOMER, "To": OUR_NUMBER, "Body": "hi"},
            signed=False,
        )
        assert status == 200
        assert [e.channel_message_id for e in await t.inbound_records()] == [sid]


async def test_every_twilio_channel_warns_at_start_that_the_insecure_dev_opt_in_checks_no_signature(
    sqlite_url, monkeypatch
):
    env = {"TWILIO_AUTH_TOKEN": None, "SUPPORTROUTER_TWILIO_INSECURE_DEV": "1"}
    with capture_logs() as logs:
        async with twilio_router(sqlite_url, monkeypatch, env=env):
            pass
    warnings = [e for e in logs if e["event"] == "twilio.webhooks_unsigned"]
    assert sorted(e["channel"] for e in warnings) == ["sms", "voice", "whatsapp"]
    assert {e["log_level"] for e in warnings} == {"warning"}


async def test_the_insecure_dev_opt_in_does_not_lift_the_check_when_a_token_is_set(
    sqlite_url, monkeypatch
):
    async with twilio_router(
        sqlite_url, monkeypatch, env={"SUPPORTROUTER_TWILIO_INSECURE_DEV": "1"}
    ) as t:
        status, _ = await t.post(
            PATH,
            {"MessageSid": message_sid(), "From": CUSTOMER, "To": OUR_NUMBER, "Body": "hi"},
            signed=False,
        )
        assert status == 403


# --- what arrives ----------------------------------------------------------------------------------


async def test_whatsapp_stays_whatsapp_in_and_out(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        customer, ours = f"whatsapp:{CUSTOMER}", "whatsapp:+14155238886"
        assert (await t.sms(FAILED_TRANSFER, sender=customer, to=ours, ProfileName="Li Wei"))[
            0
        ] == 200
        [conversation] = await t.wait_for_queue("payments", lambda c: len(c) == 1)
        assert conversation["channel"] == "whatsapp"
        assert (
            conversation["customer_address"] == customer
            and conversation["customer_name"] == "Li Wei"
        )

        await t.reply(conversation["id"], "Checking it now.")
        await t.standin.wait_for("messages", 2)
        assert {(m["to"], m["from"]) for m in t.standin.messages} == {(customer, ours)}


async def test_mms_media_is_recorded_as_attachment_metadata(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        media = f"https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME{'a' * 32}"
        status, _ = await t.sms(
            FAILED_TRANSFER, NumMedia="1", MediaUrl0=media, MediaContentType0="image/jpeg"
        )
        assert status == 200
        [conversation] = await t.wait_for_queue("payments", lambda c: len(c) == 1)
        message = (await t.conversation(conversation["id"]))["messages"][0]
        assert message["meta"]["attachments"] == [
            {"name": media, "content_type": "image/jpeg", "size": 0}
        ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"MessageSid": ""}, "MessageSid is required"),
        ({"MessageSid": "not-a-sid"}, "MessageSid is not in the expected format"),
        ({"From": ""}, "From is required"),
        ({"To": "two words"}, "To is not an address"),
        ({"NumMedia": "lots"}, "NumMedia must be a number"),
        ({"NumMedia": "1"}, "MediaUrl0 is required"),
        ({"Body": "x" * 10_001}, "Body is longer than"),
        ({"From": "messenger:12345"}, "unsupported address type"),
    ],
)
async def test_a_malformed_form_gets_400_with_the_reason_and_nothing_reaches_kafka(
    sqlite_url, monkeypatch, change, reason
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        params = {
            "MessageSid": message_sid(),
            "From": CUSTOMER,
            "To": OUR_NUMBER,
            "Body": "hi",
            **change,
        }
        status, body = await t.post(PATH, params)
        assert status == 400 and reason in body
        assert await t.inbound_records() == []


@pytest.mark.parametrize(
    "body", [b"MessageSid=\xff\xfe", b"MessageSid=%FF%FE"], ids=["raw bytes", "escaped bytes"]
)
async def test_a_signed_body_that_is_not_utf8_gets_400(sqlite_url, monkeypatch, body):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        # The signature is checked first, on the form as UTF-8 with U+FFFD for what is not.
        signature = t.validator.compute_signature(PUBLIC_URL + PATH, {"MessageSid": "\ufffd\ufffd"})
        async with t.http.post(
            t.url(PATH),
            data=body,
            headers={
                "X-Twilio-Signature": signature,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        ) as resp:
            assert resp.status == 400
            assert "UTF-8" in await resp.text()
        assert await t.inbound_records() == []


async def test_when_kafka_does_not_acknowledge_twilio_gets_503_and_its_retry_lands_once(
    sqlite_url, monkeypatch
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        sid = message_sid()
        broker = t.router.broker
        await broker.stop()
        try:
            status, _ = await t.sms(FAILED_TRANSFER, sid=sid)
            assert status == 503
        finally:
            await broker.start()
        for _ in range(100):  # Twilio retries until the router takes it
            status, body = await t.sms(FAILED_TRANSFER, sid=sid)
            if status == 200:
                break
        assert status == 200
        assert_empty_twiml(body)
        # the consumers rebuild on the broker that came back empty: give them time
        [conversation] = await t.wait_for_queue("payments", lambda c: len(c) == 1, timeout=90)
        inbound = [
            m
            for m in (await t.conversation(conversation["id"]))["messages"]
            if m["direction"] == "in"
        ]
        assert [m["channel_message_id"] for m in inbound] == [sid]


async def test_an_sms_is_refused_when_only_whatsapp_runs(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch, channels=["whatsapp"]) as t:
        status, body = await t.sms("hello")
        assert status == 403 and "sms is not enabled" in body
