"""One case per incident: the same customer's reports on SMS, WhatsApp and a phone call join one
case owned by one agent; agents link and unlink by hand. Through the whole router, on each broker
and each database, with signed Twilio webhooks over real HTTP."""

from __future__ import annotations

from tests.case_helpers import case_router
from tests.twilio_standin import CUSTOMER, OUR_NUMBER, call_sid

FRAUD_SMS = (
    "someone made a payment from my wallet that I did not make, transaction TXN20261201001 for ¥500"
)
FRAUD_WHATSAPP = "I did not make payment TXN20261201001 of ¥500, someone stole money from my wallet"
STOLEN = "someone stole money from my wallet"
GATHER = "/webhooks/twilio/voice/gather?lang=en&step=menu"
OTHER_CUSTOMER = "+8613900139000"


async def report_three_ways(t) -> None:
    """SMS and WhatsApp naming the transaction, then a call saying money was stolen."""
    status, _ = await t.sms(FRAUD_SMS)
    assert status == 200
    status, _ = await t.sms(
        FRAUD_WHATSAPP, sender=f"whatsapp:{CUSTOMER}", to=f"whatsapp:{OUR_NUMBER}"
    )
    assert status == 200
    status, _ = await t.call(
        GATHER, call_sid(), caller=CUSTOMER, SpeechResult=STOLEN, Confidence="0.92"
    )
    assert status == 200


async def test_the_same_theft_by_sms_whatsapp_and_a_call_from_one_number_is_one_case_with_one_agent(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    async with case_router(database_url, broker_kind, request, monkeypatch, tmp_path) as r:
        await r.agents_available("li.na", "wei")
        await report_three_ways(r.twilio)

        conversations = await r.twilio.wait_for_queue(
            "fraud", lambda c: len(c) == 3 and all(x["assignee"] for x in c)
        )
        assert {c["channel"] for c in conversations} == {"sms", "whatsapp", "voice"}
        assert len({c["case_id"] for c in conversations}) == 1
        assert len({c["assignee"] for c in conversations}) == 1
        case = await r.case(conversations[0]["case_id"])
        assert case["customer_phone"] == CUSTOMER
        assert case["owner"] == conversations[0]["assignee"]
        assert sorted(c["id"] for c in case["conversations"]) == sorted(
            c["id"] for c in conversations
        )
        assert case["transaction_ids"] == ["TXN20261201001"]
        inbound = [m for m in case["messages"] if m["direction"] == "in"]
        assert [m["channel"] for m in inbound] == ["sms", "whatsapp", "voice"]
        assert [m["created_at"] for m in case["messages"]] == sorted(
            m["created_at"] for m in case["messages"]
        )
        joined = [e for e in case["events"] if e["kind"] == "case.joined"]
        assert sorted(e["detail"]["reason"] for e in joined) == [
            "same_transaction",
            "unauthorized_window",
        ]
        # Three critical reports, one case: one freeze request.
        await r.wallet.wait_for("freeze")
        assert len(r.wallet.accepted("freeze")) == 1


async def test_every_conversation_carries_its_case_and_another_customers_report_is_another_case(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    async with case_router(
        database_url, broker_kind, request, monkeypatch, tmp_path, protect=False
    ) as r:
        await r.twilio.sms(FRAUD_SMS)
        await r.twilio.sms(FRAUD_SMS, sender=OTHER_CUSTOMER)
        conversations = await r.twilio.wait_for_queue("fraud", lambda c: len(c) == 2)
        assert all(c["case_id"] for c in conversations)
        assert conversations[0]["case_id"] != conversations[1]["case_id"]
        detail = await r.twilio.conversation(conversations[0]["id"])
        assert detail["case_id"] == conversations[0]["case_id"]
        # Unset SUPPORTROUTER_PROTECT_URL: no request, and the case says so.
        case = await r.case_until(
            conversations[0]["case_id"], lambda c: c["protection"]["state"] is not None
        )
        assert case["protection"] == {
            "configured": False,
            "state": "not_configured",
            "message": "not configured",
        }
        status, body = await r.post(f"/api/cases/{case['id']}/protect/confirm")
        assert status == 409 and "not configured" in body["error"]
        assert r.wallet.received == []


async def test_an_agent_links_and_unlinks_a_conversation_by_hand_and_it_stays_unlinked(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    async with case_router(
        database_url, broker_kind, request, monkeypatch, tmp_path, protect=False
    ) as r:
        await r.twilio.sms(FRAUD_SMS)
        await r.twilio.sms("my transfer failed, can you check it?", sender=OTHER_CUSTOMER)
        [fraud] = await r.twilio.wait_for_queue("fraud", lambda c: len(c) == 1)
        [payment] = await r.twilio.wait_for_queue("payments", lambda c: len(c) == 1)
        case_id = fraud["case_id"]

        status, case = await r.post(
            f"/api/cases/{case_id}/link", {"conversation_id": payment["id"]}
        )
        assert status == 200, case
        assert {c["id"] for c in case["conversations"]} == {fraud["id"], payment["id"]}
        assert (await r.twilio.conversation(payment["id"]))["case_id"] == case_id

        status, case = await r.post(
            f"/api/cases/{case_id}/unlink", {"conversation_id": payment["id"]}
        )
        assert status == 200, case
        assert [c["id"] for c in case["conversations"]] == [fraud["id"]]
        own = (await r.twilio.conversation(payment["id"]))["case_id"]
        assert own == case["unlinked_to_case"] and own != case_id
        kinds = [(e["kind"], e["by"]) for e in case["events"]]
        assert ("case.linked", "admin") in kinds and ("case.unlinked", "admin") in kinds

        status, body = await r.post(
            f"/api/cases/{case_id}/unlink", {"conversation_id": payment["id"]}
        )
        assert status == 409, body
        status, body = await r.post(
            f"/api/cases/{case_id}/unlink", {"conversation_id": fraud["id"]}
        )
        assert status == 409 and "only one" in body["error"]


async def test_bad_input_to_the_cases_api_gets_a_4xx_with_the_reason(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    async with case_router(
        database_url, broker_kind, request, monkeypatch, tmp_path, protect=False
    ) as r:
        await r.twilio.sms(FRAUD_SMS)
        [fraud] = await r.twilio.wait_for_queue("fraud", lambda c: len(c) == 1)
        case_id = fraud["case_id"]
        link = f"/api/cases/{case_id}/link"
        for body, status in [
            ({}, 400),
            ({"conversation_id": 7}, 400),
            ({"conversation_id": "x" * 65}, 400),
            (["conversation_id"], 400),
            ({"conversation_id": "no-such-conversation"}, 404),
        ]:
            got, answer = await r.post(link, body)
            assert got == status and answer["error"], (body, got, answer)
        assert (await r.post("/api/cases/no-such-case/link", {"conversation_id": fraud["id"]}))[
            0
        ] == 404
        assert (await r.get("/api/cases/no-such-case"))[0] == 404
        async with r.http.get(r.url(f"/api/cases/{case_id}")) as resp:
            assert resp.status == 401
        async with r.http.post(
            r.url(link), data=b"{not json", headers=await r.twilio.login()
        ) as resp:
            assert 400 <= resp.status < 500
        # An agent who sees none of the case's queues sees no case.
        headers = await r.agents_available("sam")
        assert (await r.get(f"/api/cases/{case_id}", headers=headers["sam"]))[0] == 404


async def test_a_reply_to_a_case_goes_to_the_channel_the_customer_last_wrote_on_or_the_one_picked(
    database_url, broker_kind, request, monkeypatch, tmp_path
):
    async with case_router(
        database_url, broker_kind, request, monkeypatch, tmp_path, protect=False
    ) as r:
        await r.twilio.sms(FRAUD_SMS)
        await r.twilio.wait_for_queue("fraud", lambda c: len(c) == 1)
        await r.twilio.sms(
            FRAUD_WHATSAPP, sender=f"whatsapp:{CUSTOMER}", to=f"whatsapp:{OUR_NUMBER}"
        )
        conversations = await r.twilio.wait_for_queue(
            "fraud", lambda c: len(c) == 2 and len({x["case_id"] for x in c}) == 1
        )
        case_path = f"/api/cases/{conversations[0]['case_id']}/messages"

        status, sent = await r.post(case_path, {"text": "We are on it (WhatsApp)."})
        assert status == 201 and sent["channel"] == "whatsapp", sent
        status, sent = await r.post(case_path, {"text": "We are on it (SMS).", "channel": "sms"})
        assert status == 201 and sent["channel"] == "sms", sent
        messages = await r.twilio.standin.wait_for("messages", 4)  # two acknowledgements too
        bodies = {m["body"]: m["to"] for m in messages}
        assert bodies["We are on it (WhatsApp)."] == f"whatsapp:{CUSTOMER}"
        assert bodies["We are on it (SMS)."] == CUSTOMER

        for body in ({"text": "hi", "channel": "email"}, {"text": ""}, {"channel": "sms"}):
            status, answer = await r.post(case_path, body)
            assert status == 400 and answer["error"], (body, answer)
