"""Parsing a mail: plain text first, HTML as clean text, the new text apart from the history,
attachments as metadata, and headers that cannot be trusted read safely. Pure functions, fast."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from channels.email.parse import Limits, normalize_message_id, parse_mail
from channels.email.sender import reply_subject, thread_ids
from channels.email.text import html_to_text, split_reply


def _mail(text: str = "hello", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "王先生 <wang@example.net>")
    msg["To"] = "support@wallet.example"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg


def test_plain_text_is_preferred_to_its_html_alternative():
    msg = _mail("转账失败了，钱已经扣了")
    msg.add_alternative("<p>something <b>else</b></p>", subtype="html")
    assert parse_mail(msg.as_bytes()).text == "转账失败了，钱已经扣了"


def test_html_only_mail_becomes_clean_text_without_scripts_styles_or_entities():
    converted = html_to_text(
        "<html><head><style>p{color:red}</style><title>t</title></head><body>"
        "<p>Transfer&nbsp;failed &amp; money gone</p><script>alert('x')</script><div>TX&#49;23</div></body></html>"
    )
    assert converted.text == "Transfer failed & money gone\n\nTX123"
    assert converted.removed == {"script"}


@pytest.mark.parametrize(
    "body,new",
    [
        (
            "好的，我再试一下。\n\n在 2026年11月1日 周一 10:00，客服 <support@wallet.example> 写道：\n> 请提供交易号",
            "好的，我再试一下。",
        ),
        (
            "Thanks, it worked.\n\nOn Mon, Nov 3, 2026 at 10:00 AM Wallet Support <\nsupport@wallet.example> wrote:\n> Please retry",
            "Thanks, it worked.",
        ),
        (
            "Still failing.\n\n-----Original Message-----\nFrom: Support\nSent: Monday\nplease retry",
            "Still failing.",
        ),
        (
            "Still failing.\n\nFrom: Support <support@wallet.example>\nSent: Monday\nTo: me\n\nplease retry",
            "Still failing.",
        ),
        ("see below\n> quoted a\nmy inline answer\n> quoted b", "see below\nmy inline answer"),
        ("钱还没到账\n-- \n王先生\n138 0000 0000", "钱还没到账"),
        ("钱还没到账\n\n发自我的iPhone", "钱还没到账"),
    ],
    ids=[
        "zh-attribution",
        "en-wrapped-attribution",
        "outlook-original",
        "outlook-header-block",
        "inline",
        "signature",
        "mobile",
    ],
)
def test_the_new_text_is_split_from_quoted_history_and_signature(body, new):
    reply = split_reply(body)
    assert reply.new == new
    assert reply.quoted  # kept for the agent


def test_a_forwarded_message_is_content_not_history():
    body = "Please look at this:\n\n---------- Forwarded message ---------\nFrom: bank\nyour transfer failed"
    assert split_reply(body).new == body


def test_a_customer_line_starting_with_from_is_not_taken_for_history():
    body = "From: my bank account I sent 100 yuan\nit never arrived"
    assert split_reply(body).new == body


def test_quote_only_mail_keeps_its_text_so_nothing_goes_unclassified():
    assert split_reply("> only quoted\n> lines").new == "> only quoted\n> lines"


def test_the_full_body_goes_to_quoted_and_the_envelope_text_is_the_new_text():
    mail = parse_mail(_mail("钱还没到账\n\n在 2026年11月1日 客服 写道：\n> 已退款").as_bytes())
    assert mail.text == "钱还没到账"
    assert mail.quoted == "在 2026年11月1日 客服 写道：\n> 已退款"


def test_an_empty_body_falls_back_to_the_subject():
    assert parse_mail(_mail("", Subject="转账失败").as_bytes()).text == "转账失败"


def test_a_missing_message_id_is_made_from_the_mail_so_a_retry_dedupes():
    raw = b"From: a@example.net\r\nSubject: x\r\nDate: Mon, 3 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n"
    first, again = parse_mail(raw), parse_mail(raw)
    assert first.message_id == again.message_id and first.message_id.endswith(
        "@no-message-id.invalid>"
    )


def test_a_message_id_too_long_for_the_store_is_hashed_the_same_way_everywhere():
    long_id = "<" + "x" * 500 + "@example.net>"
    assert normalize_message_id(long_id) == normalize_message_id(long_id)
    assert len(normalize_message_id(long_id)) <= 200
    mail = parse_mail(_mail(In_Reply_To=long_id).as_bytes())
    assert mail.in_reply_to == [normalize_message_id(long_id)]


@pytest.mark.parametrize(
    "headers,reason",
    [
        ({"Auto_Submitted": "auto-replied"}, "auto_submitted"),
        ({"Auto_Submitted": "no"}, None),
        ({"Precedence": "bulk"}, "bulk"),
        ({"Precedence": "junk"}, "bulk"),
        ({"List_Unsubscribe": "<mailto:u@shop.example>"}, "mailing_list"),
        ({"X_Auto_Response_Suppress": "All"}, "auto_response_suppressed"),
        ({"From": "MAILER-DAEMON@mx.example.net"}, "no_reply_sender"),
        ({"From": "no-reply@shop.example"}, "no_reply_sender"),
        ({}, None),
    ],
)
def test_mail_that_must_not_be_answered_automatically_is_recognized(headers, reason):
    assert parse_mail(_mail(**headers).as_bytes()).auto_reason == reason


def test_a_null_envelope_sender_is_a_bounce():
    assert parse_mail(_mail().as_bytes(), envelope_from="<>").auto_reason == "bounce"


def test_attachments_beyond_the_bound_are_counted_not_listed():
    msg = _mail("see attached")
    for i in range(5):
        msg.add_attachment(
            b"data", maintype="application", subtype="pdf", filename=f"../../etc/{i}.pdf"
        )
    mail = parse_mail(msg.as_bytes(), Limits(max_attachments=3))
    assert [a.name for a in mail.attachments] == [
        ".._.._etc_0.pdf",
        ".._.._etc_1.pdf",
        ".._.._etc_2.pdf",
    ]
    assert "attachments_not_listed:2" in mail.problems


def test_text_beyond_the_bound_is_cut_and_noted():
    mail = parse_mail(_mail("字" * 50).as_bytes(), Limits(max_text_chars=10))
    assert mail.text == "字" * 10 and "text_truncated" in mail.problems


def test_garbage_bytes_never_raise():
    for raw in (
        b"",
        b"\xff\xfe\x00\x01",
        b"From: \xff\r\n\r\n\xff",
        b"Content-Type: multipart/mixed\r\n\r\n--",
    ):
        mail = parse_mail(raw)
        assert mail.refusal  # none of these has a sender


def test_the_reply_subject_keeps_one_re_and_the_ticket_once():
    parent = {"meta": {"subject": "RE: 回复：转账失败 [TABCDEF12]"}}
    assert reply_subject(parent, "TABCDEF12") == "Re: 转账失败 [TABCDEF12]"
    assert reply_subject(None, "TABCDEF12") == "Re: Your support request [TABCDEF12]"


def test_references_start_at_the_root_and_end_bounded_with_the_parent_kept():
    messages = [
        {"channel": "email", "direction": "in", "channel_message_id": f"<{i}@c>", "meta": {}}
        for i in range(30)
    ]
    messages[-1]["meta"] = {"thread": {"references": "<root@c> <0@c>"}}
    parent_id, refs = thread_ids({"messages": messages}, messages[-1])
    assert parent_id == "<29@c>"
    assert refs[0] == "<root@c>" and refs[-1] == "<29@c>" and len(refs) == 20


# --- Authentication-Results: what the receiving server said of the From domain ------------------


@pytest.mark.parametrize(
    ("header", "failed"),
    [
        ("mx.example; dmarc=fail (p=REJECT) header.from=example.net", True),
        ("mx.example; dmarc=fail", True),  # DMARC is about the From domain by definition
        ("mx.example; dkim=fail header.d=example.net", True),
        ("mx.example; dkim=fail header.i=@mail.example.net", True),  # a subdomain aligns
        ("mx.example; dkim=fail header.d=lists.other.example; dmarc=pass", False),
        ("mx.example; dkim=pass header.d=example.net; dmarc=pass header.from=example.net", False),
        ("mx.example; dmarc=fail header.from=other.example", False),
        ("mx.example; spf=fail smtp.mailfrom=example.net", False),  # SPF is the envelope's
        ("mx.example (dmarc=fail header.from=example.net); none", False),  # a comment
    ],
)
def test_a_failing_dmarc_or_dkim_result_for_the_from_domain_is_found(header, failed):
    raw = (
        f"Authentication-Results: {header}\r\nFrom: Wang <c@example.net>\r\nTo: s@x.example\r\n"
        "Subject: hi\r\nMessage-ID: <a.1@example.net>\r\n\r\nhello\r\n"
    ).encode()
    assert parse_mail(raw).from_failed is failed
