"""What the email tests share: a real aiosmtpd relay that captures what the router sends, a router
with the email channel configured through its environment variables, and mail to send."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import make_msgid

import aiohttp
from aiosmtpd.smtp import SMTP

from router.app import Router
from tests.conftest import ADMIN_PASSWORD, make_settings

SUPPORT = "support@wallet.example"
CUSTOMER = "customer@example.net"
PAYMENT_FAILED_ZH = "转账失败了，钱已经扣了，交易号 TX20261101887766，请帮我查一下。"


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


class Relay:
    """The outbound relay: a real aiosmtpd SMTP server. With `deliver`, it also hands each mail
    on, as a mail server would to the recipient's mailbox."""

    def __init__(self, deliver: Callable[[list[str], bytes], Awaitable[None]] | None = None):
        self.captured: list[Captured] = []
        self.deliver = deliver
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content
        message = BytesParser(policy=policy.default).parsebytes(raw)
        self.captured.append(Captured(envelope.mail_from, list(envelope.rcpt_tos), raw, message))
        if self.deliver is not None:
            await self.deliver(list(envelope.rcpt_tos), raw)
        self._changed.set()
        return "250 2.0.0 queued"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="relay.test", loop=loop), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    async def wait_for(self, count: int, timeout: float = 20) -> list[Captured]:
        async with asyncio.timeout(timeout):
            while len(self.captured) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.captured


def email_env(monkeypatch, relay: Relay | None = None, **values: object) -> None:
    """The channel's SUPPORTROUTER_ variables, as an operator would set them."""
    env = {"SUPPORT_ADDRESS": SUPPORT, "EMAIL_RECIPIENTS": "help@wallet.example"}
    if relay is not None:
        env.update(
            SMTP_RELAY_HOST="127.0.0.1", SMTP_RELAY_PORT=relay.port, SMTP_RELAY_STARTTLS="off"
        )
    env.update({k.upper(): v for k, v in values.items()})
    for key, value in env.items():
        monkeypatch.setenv(f"SUPPORTROUTER_{key}", str(value))


@asynccontextmanager
async def email_router(database_url: str) -> AsyncIterator[Router]:
    async with Router(make_settings(database_url, channels=["email"], smtp_port=0)) as router:
        yield router


async def agent_reply(router: Router, conversation_id: str, text: str) -> None:
    """The admin answers through the agents' API over HTTP, as the console does it."""
    base = f"http://127.0.0.1:{router.gateway.port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ) as r:
            headers = {"Authorization": "Bearer " + (await r.json())["token"]}
        async with http.post(
            f"{base}/api/conversations/{conversation_id}/messages",
            headers=headers,
            json={"text": text},
        ) as r:
            assert r.status == 201, await r.text()


def email_channel(router: Router):
    return next(c for c in router.gateway.channels if c.name == "email")


def smtp_port(router: Router) -> int:
    return email_channel(router).smtp.port


def customer_mail(
    text: str,
    subject: str = "转账问题",
    *,
    sender: str = CUSTOMER,
    to: str = SUPPORT,
    message_id: str | None = None,
    **headers: str,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"王先生 <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="example.net")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg


def _smtp_send(port: int, raw: bytes, sender: str, recipients: list[str]) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail(sender, recipients, raw)


async def send_smtp(
    port: int,
    mail: EmailMessage | bytes,
    sender: str = CUSTOMER,
    recipients: list[str] | None = None,
) -> dict:
    """smtplib, the standard library's real SMTP client; raises smtplib's errors on a refusal."""
    # On the wire every line ends in CRLF; smtplib sends bytes as they are.
    raw = (
        mail if isinstance(mail, bytes) else mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))
    )
    return await asyncio.to_thread(_smtp_send, port, raw, sender, recipients or [SUPPORT])


async def wait_until(
    check: Callable[[], Awaitable[object]], timeout: float = 20, what: str = "condition"
):
    """Poll `check` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"{what} never held"
        await asyncio.sleep(0.05)
