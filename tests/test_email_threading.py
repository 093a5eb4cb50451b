"""Email through the whole router: a real SMTP client into the listener, the real broker, each
database, and a real aiosmtpd relay capturing the replies. A thread stays one conversation."""

from __future__ import annotations

import smtplib

import aiohttp
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.email_helpers import (
    CUSTOMER,
    PAYMENT_FAILED_ZH,
    SUPPORT,
    Relay,
    agent_reply,
    customer_mail,
    email_env,
    email_router,
    send_smtp,
    smtp_port,
    wait_until,
)


@pytest.fixture
async def relay():
    async with Relay() as relay:
        yield relay


@pytest.fixture
async def router(monkeypatch, relay, tmp_path):
    """The email channel answering through `relay`, on a SQLite store of the test's own."""
    email_env(monkeypatch, relay)
    async with email_router(f"sqlite+aiosqlite:///{tmp_path}/s.db") as router:
        yield router


async def _conversation(router, queue: str, count: int = 1) -> dict:
    async def listing():
        conversations = await router.store.queue_conversations(queue)
        return conversations if len(conversations) == count else None

    found = await wait_until(listing, what=f"{count} conversation(s) in {queue}")
    return await router.store.conversation(found[-1]["id"])


async def test_a_customer_agent_customer_thread_stays_one_conversation_and_replies_thread(
    database_url, monkeypatch, relay
):
    email_env(monkeypatch, relay)
    async with email_router(database_url) as router:
        port = smtp_port(router)
        first = customer_mail(
            PAYMENT_FAILED_ZH, subject="转账失败", message_id="<first.1@example.net>"
        )
        await send_smtp(port, first)

        conversation = await _conversation(router, "payments")
        assert conversation["category"] == "transaction_failed"
        assert conversation["channel"] == "email" and conversation["customer_address"] == CUSTOMER
        ticket = conversation["ticket"]

        ack = (await relay.wait_for(1))[0]
        assert ack.rcpt_tos == [CUSTOMER] and ack.mail_from == SUPPORT
        assert ack.message["Auto-Submitted"] == "auto-replied"
        assert ack.message["In-Reply-To"] == "<first.1@example.net>"
        assert ack.message["Subject"] == f"Re: 转账失败 [{ticket}]"

        await agent_reply(router, conversation["id"], "您好，我们查到这笔交易，已为您退款。")
        reply = (await relay.wait_for(2))[1]
        m = reply.message
        assert m["Subject"] == f"Re: 转账失败 [{ticket}]"
        assert m["In-Reply-To"] == "<first.1@example.net>"
        assert m["References"].split()[0] == "<first.1@example.net>"
        assert m["Auto-Submitted"] is None
        assert m["From"].addresses[0].addr_spec == SUPPORT and m["Reply-To"] == SUPPORT
        reply_id = m["Message-ID"]
        assert reply_id.startswith("<") and reply_id.endswith("@wallet.example>")
        assert "已为您退款" in m.get_body(("plain",)).get_content()

        # The customer answers the agent's mail: their client sets In-Reply-To to it.
        answer = customer_mail(
            "好的，谢谢，钱已经到账了。",
            subject=f"Re: 转账失败 [{ticket}]",
            message_id="<third.3@example.net>",
            In_Reply_To=reply_id,
            References=f"<first.1@example.net> {reply_id}",
        )
        await send_smtp(port, answer)
        stored = await wait_until(
            lambda: _messages_in(router, conversation["id"], 2),
            what="the customer's answer in the conversation",
        )
        assert [m["channel_message_id"] for m in stored] == [
            "<first.1@example.net>",
            "<third.3@example.net>",
        ]
        assert len(await router.store.queue_conversations("payments")) == 1

        stored_reply = [
            m
            for m in (await router.store.conversation(conversation["id"]))["messages"]
            if m["kind"] == "agent_reply"
        ][0]
        assert (
            stored_reply["provider_message_id"] == reply_id
            and stored_reply["delivery_status"] == "sent"
        )


async def _messages_in(router, conversation_id: str, count: int):
    conversation = await router.store.conversation(conversation_id)
    inbound = [m for m in conversation["messages"] if m["direction"] == "in"]
    return inbound if len(inbound) == count else None


async def test_a_reply_without_thread_headers_joins_by_the_ticket_in_its_subject(router):
    port = smtp_port(router)
    await send_smtp(
        port, customer_mail("my transfer failed and the money was deducted", subject="transfer")
    )
    conversation = await _conversation(router, "payments")
    ticket = conversation["ticket"]
    # A webmail that drops In-Reply-To and References, but keeps the subject.
    await send_smtp(port, customer_mail("any news?", subject=f"Re: transfer [{ticket}]"))
    await wait_until(
        lambda: _messages_in(router, conversation["id"], 2), what="the follow-up joined by ticket"
    )


async def test_a_ticket_in_the_subject_from_another_sender_does_not_join_that_conversation(router):
    port = smtp_port(router)
    await send_smtp(
        port, customer_mail("my transfer failed and the money was deducted", subject="transfer")
    )
    conversation = await _conversation(router, "payments")
    intruder = customer_mail(
        "my transfer failed, please check",
        subject=f"Re: transfer [{conversation['ticket']}]",
        sender="someone.else@example.org",
    )
    await send_smtp(port, intruder, sender="someone.else@example.org")
    both = await _conversation(router, "payments", count=2)
    assert both["customer_address"] == "someone.else@example.org"
    assert (
        len((await router.store.conversation(conversation["id"]))["messages"]) == 2
    )  # mail + ack only


async def test_the_same_mail_delivered_twice_is_one_message(router, relay):
    port = smtp_port(router)
    mail = customer_mail(PAYMENT_FAILED_ZH, message_id="<retry.1@example.net>")
    await send_smtp(port, mail)
    await send_smtp(port, mail)  # the forwarding server retried after a lost 250
    conversation = await _conversation(router, "payments")
    await relay.wait_for(1)
    later = customer_mail(
        "还有一个问题", message_id="<retry.2@example.net>", In_Reply_To="<retry.1@example.net>"
    )
    await send_smtp(port, later)  # processed after the retry: proves the retry was handled
    inbound = await wait_until(
        lambda: _messages_in(router, conversation["id"], 2), what="two inbound messages"
    )
    assert [m["channel_message_id"] for m in inbound] == [
        "<retry.1@example.net>",
        "<retry.2@example.net>",
    ]
    assert len(relay.captured) == 1  # one acknowledgement


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"List_Id": "<offers.shop.example>"},
    ],
    ids=["auto-submitted", "bulk", "list"],
)
async def test_automatic_bulk_and_list_mail_is_queued_but_never_answered(router, relay, headers):
    await send_smtp(
        smtp_port(router), customer_mail("my transfer failed, money deducted", **headers)
    )
    conversation = await _conversation(router, "payments")
    # A normal mail after it is answered: once its acknowledgement arrived, the first one
    # would have arrived before it, had it been sent.
    await send_smtp(
        smtp_port(router),
        customer_mail("I forgot my password", sender="other@example.org"),
        sender="other@example.org",
    )
    captured = await relay.wait_for(1)
    assert [c.rcpt_tos for c in captured] == [["other@example.org"]]
    messages = (await router.store.conversation(conversation["id"]))["messages"]
    assert [m["direction"] for m in messages] == ["in"]
    assert messages[0]["meta"]["thread"]["no_auto_reply"] == "1"


async def test_mail_from_our_own_address_is_accepted_and_dropped(router, relay):
    own = customer_mail("Re: your ticket", sender=SUPPORT)
    await send_smtp(smtp_port(router), own, sender=SUPPORT)  # 250: a bounce would loop too
    await send_smtp(
        smtp_port(router),
        customer_mail("my transfer failed", sender="c@example.org"),
        sender="c@example.org",
    )
    await relay.wait_for(1)
    everything = [
        c
        for q in ("payments", "general", "accounts", "fraud")
        for c in await router.store.queue_conversations(q)
    ]
    assert [c["customer_address"] for c in everything] == ["c@example.org"]


async def test_the_listener_relays_for_no_one(monkeypatch, tmp_path):
    email_env(monkeypatch)
    async with email_router(f"sqlite+aiosqlite:///{tmp_path}/s.db") as router:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            await send_smtp(
                smtp_port(router),
                customer_mail("hi", to="victim@elsewhere.example"),
                recipients=["victim@elsewhere.example"],
            )
        code, reason = refused.value.recipients["victim@elsewhere.example"]
        assert code == 550 and b"relays no mail" in reason
        # Aliases in SUPPORTROUTER_EMAIL_RECIPIENTS are ours; the domain part is case-blind.
        await send_smtp(
            smtp_port(router),
            customer_mail("my transfer failed"),
            recipients=["HELP@wallet.example"],
        )
        await _conversation(router, "payments")


# --- hostile threading: a Message-ID or a ticket is no secret, a From line is easy to write ------

ATTACKER = "attacker@evil.example"
STRANGER = "stranger@example.org"


async def _api_conversation(router, conversation_id: str) -> dict:
    """The conversation as the agents' API shows it to the console."""
    base = f"http://127.0.0.1:{router.gateway.port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ) as r:
            headers = {"Authorization": "Bearer " + (await r.json())["token"]}
        async with http.get(f"{base}/api/conversations/{conversation_id}", headers=headers) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def _first_conversation(router, relay) -> dict:
    await send_smtp(
        smtp_port(router),
        customer_mail(
            "my transfer failed and the money was deducted",
            subject="transfer",
            message_id="<first.1@example.net>",
        ),
    )
    conversation = await _conversation(router, "payments")
    await relay.wait_for(1)  # its acknowledgement
    return conversation


async def test_a_forged_from_with_the_ticket_and_a_reply_to_gets_the_agent_reply_sent_to_the_customer(
    router, relay
):
    conversation = await _first_conversation(router, relay)
    forged = customer_mail(
        "please send the refund details to this address instead",
        subject=f"Re: transfer [{conversation['ticket']}]",
        Reply_To=ATTACKER,
    )
    await send_smtp(smtp_port(router), forged, sender=ATTACKER)
    await wait_until(
        lambda: _messages_in(router, conversation["id"], 2), what="the forged mail threaded"
    )

    await agent_reply(router, conversation["id"], "Your refund is on its way.")
    captured = await relay.wait_for(2)
    reply = next(c for c in captured if "refund is on its way" in c.raw.decode(errors="replace"))
    assert reply.rcpt_tos == [CUSTOMER]
    assert reply.message["To"] == CUSTOMER
    assert all(ATTACKER not in c.rcpt_tos for c in captured)


async def test_a_strangers_mail_answering_the_customers_message_id_opens_a_flagged_conversation(
    router, relay
):
    conversation = await _first_conversation(router, relay)
    stranger = customer_mail(
        "my transfer failed too, money deducted",
        subject="Re: transfer",
        sender=STRANGER,
        In_Reply_To="<first.1@example.net>",
        References="<first.1@example.net>",
    )
    await send_smtp(smtp_port(router), stranger, sender=STRANGER)

    newest = await _conversation(router, "payments", count=2)
    assert newest["id"] != conversation["id"]
    shown = await _api_conversation(router, newest["id"])
    assert shown["customer_address"] == STRANGER
    assert shown["flags"] == {"thread_mismatch": True, "claimed_ticket": conversation["ticket"]}
    assert shown["messages"][0]["meta"]["thread"]["thread_mismatch"] == "1"
    original = await _api_conversation(router, conversation["id"])
    assert [m["direction"] for m in original["messages"]] == ["in", "out"]  # mail + its ack
    assert original["flags"] is None

    # The real customer's own answer still threads into their conversation.
    await send_smtp(
        smtp_port(router),
        customer_mail("any news?", subject="Re: transfer", In_Reply_To="<first.1@example.net>"),
    )
    await wait_until(
        lambda: _messages_in(router, conversation["id"], 2), what="the customer's answer"
    )
    # The stranger's next mail in that thread meets their own conversation, not the customer's.
    await send_smtp(
        smtp_port(router),
        customer_mail(
            "hello again",
            subject="Re: transfer",
            sender=STRANGER,
            In_Reply_To="<first.1@example.net>",
        ),
        sender=STRANGER,
    )
    await wait_until(lambda: _messages_in(router, newest["id"], 2), what="the stranger's second")
    assert len(await _messages_in(router, conversation["id"], 2)) == 2


@pytest.mark.parametrize(
    "results",
    [
        "mx.wallet.example; spf=softfail smtp.mailfrom=evil.example; dmarc=fail (p=NONE) header.from=example.net",
        "mx.wallet.example; dkim=fail (bad signature) header.d=example.net header.s=s1",
    ],
    ids=["dmarc-fail", "dkim-fail"],
)
async def test_a_mail_whose_from_domain_failed_authentication_does_not_continue_the_conversation(
    router, relay, results
):
    conversation = await _first_conversation(router, relay)
    forged = customer_mail(
        "my transfer failed, send the money to my new account",
        subject=f"Re: transfer [{conversation['ticket']}]",
        In_Reply_To="<first.1@example.net>",
        Authentication_Results=results,
    )
    await send_smtp(smtp_port(router), forged, sender=ATTACKER)
    newest = await _conversation(router, "payments", count=2)
    shown = await _api_conversation(router, newest["id"])
    assert shown["flags"]["thread_mismatch"] is True
    assert shown["customer_address"] == CUSTOMER  # its replies go to the address it claimed
    assert len((await _api_conversation(router, conversation["id"]))["messages"]) == 2


async def test_a_passing_or_unrelated_authentication_result_still_threads(router, relay):
    conversation = await _first_conversation(router, relay)
    await send_smtp(
        smtp_port(router),
        customer_mail(
            "any news?",
            subject="Re: transfer",
            In_Reply_To="<first.1@example.net>",
            Authentication_Results=(
                "mx.wallet.example; dkim=pass header.d=example.net; "
                "dkim=fail header.d=lists.other.example; dmarc=pass header.from=example.net"
            ),
        ),
    )
    await wait_until(
        lambda: _messages_in(router, conversation["id"], 2), what="the customer's answer"
    )
