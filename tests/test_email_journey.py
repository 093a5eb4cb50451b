"""Done when: a customer emails "转账失败了，钱已经扣了，交易号 TX20261101..." through the SMTP
listener and through the IMAP mailbox; each lands classified in the right queue once; the agent's
reply arrives in the customer's inbox threaded under the original.

Everything is real: smtplib into the listener, dovecot holding the support mailbox the router
polls and the customer's mailbox, an aiosmtpd relay that delivers the router's mail into the
customer's mailbox, the embedded broker, and each database.
"""

from __future__ import annotations

import asyncio
from email import policy
from email.parser import BytesParser

from tests.dovecot import Dovecot, dovecot_fixture  # noqa: F401  (provides the `dovecot` fixture)
from tests.email_helpers import (
    PAYMENT_FAILED_ZH,
    Relay,
    agent_reply,
    customer_mail,
    email_env,
    email_router,
    send_smtp,
    smtp_port,
    wait_until,
)

BY_SMTP = "alice@example.net"
BY_IMAP = "bob@example.org"


async def test_payment_failure_by_smtp_and_by_imap_each_queued_once_and_answered_in_thread(
    database_url, monkeypatch, dovecot: Dovecot
):
    async def deliver(recipients: list[str], raw: bytes) -> None:
        # The relay as the customers' mail server: into their mailbox (one test mailbox for both).
        await asyncio.to_thread(dovecot.append, "customer", raw)

    async with Relay(deliver=deliver) as relay:
        email_env(
            monkeypatch,
            relay,
            imap_host=dovecot.host,
            imap_port=dovecot.port,
            imap_tls="false",
            imap_username="support",
            imap_password="support-secret",
            imap_timeout_seconds=5,
        )
        async with email_router(database_url) as router:
            by_smtp = customer_mail(
                PAYMENT_FAILED_ZH,
                subject="转账失败",
                sender=BY_SMTP,
                message_id="<smtp-original@example.net>",
            )
            await send_smtp(smtp_port(router), by_smtp, sender=BY_SMTP)
            by_imap = customer_mail(
                PAYMENT_FAILED_ZH,
                subject="转账失败",
                sender=BY_IMAP,
                message_id="<imap-original@example.org>",
            )
            raw_imap = by_imap.as_bytes(policy=by_imap.policy.clone(linesep="\r\n"))
            await asyncio.to_thread(dovecot.append, "support", raw_imap)

            async def two_in_payments():
                listing = await router.store.queue_conversations("payments")
                return listing if len(listing) == 2 else None

            listing = await wait_until(two_in_payments, what="both mails in the payments queue")
            assert {c["customer_address"] for c in listing} == {BY_SMTP, BY_IMAP}
            assert {c["category"] for c in listing} == {"transaction_failed"}
            assert {c["urgency"] for c in listing} == {"high"}  # money left the account

            # Once: the poller saw the mail, marked it seen, and a second copy of the same mail
            # (same Message-ID) changes nothing.
            await wait_until(lambda: _seen(dovecot), what="the IMAP mail marked seen")
            await asyncio.to_thread(dovecot.append, "support", raw_imap)
            await wait_until(lambda: _seen(dovecot, 2), what="the copy handled")
            await relay.wait_for(2)  # the two acknowledgements
            for conversation in listing:
                detail = await router.store.conversation(conversation["id"])
                assert [m["direction"] for m in detail["messages"]] == ["in", "out"]
            assert len(await router.store.queue_conversations("payments")) == 2

            by_address = {c["customer_address"]: c for c in listing}
            await agent_reply(
                router, by_address[BY_SMTP]["id"], "您好，这笔转账已原路退回，请查收。"
            )
            await agent_reply(
                router, by_address[BY_IMAP]["id"], "您好，这笔转账已原路退回，请查收。"
            )
            await relay.wait_for(4)

        inbox = [
            BytesParser(policy=policy.default).parsebytes(raw)
            for _, raw in await asyncio.to_thread(dovecot.messages, "customer")
        ]
        replies = {m["To"].addresses[0].addr_spec: m for m in inbox if m["Auto-Submitted"] is None}
        for customer, original, conversation in (
            (BY_SMTP, "<smtp-original@example.net>", by_address[BY_SMTP]),
            (BY_IMAP, "<imap-original@example.org>", by_address[BY_IMAP]),
        ):
            reply = replies[customer]
            assert reply["In-Reply-To"] == original
            assert reply["References"].split()[0] == original
            assert reply["Subject"] == f"Re: 转账失败 [{conversation['ticket']}]"
            assert reply["Message-ID"] and reply["Message-ID"] != original
            assert "原路退回" in reply.get_body(("plain",)).get_content()


async def _seen(server: Dovecot, count: int = 1) -> bool:
    flags = [f for f, _ in await asyncio.to_thread(server.messages, "support")]
    return len(flags) == count and all("\\Seen" in f for f in flags)
