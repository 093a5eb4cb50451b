"""An in-process stand-in for Twilio's REST API, reached over HTTP by the real twilio client.

It answers what the channels call (Messages.json: create and list; Calls.json) with the JSON
shapes Twilio returns,
checks what Twilio checks (credentials, required fields, the 1600-character body limit, a channel
pair that matches), records every request, and can be told to fail the next requests first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from router.bus.reader import read_to_end
from router.core.envelope import Envelope, now

_ADDRESS = re.compile(r"^(whatsapp:)?\+[1-9]\d{6,14}$")


@dataclass
class RecordedRequest:
    method: str
    path: str
    form: dict[str, list[str]]
    username: str | None
    status: int = 0
    peer: tuple | None = None  # the client's address and port: one per TCP connection

    def one(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


@dataclass
class _Failure:
    status: int
    code: int
    message: str


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass
class TwilioStandIn:
    account_sid: str
    auth_token: str
    requests: list[RecordedRequest] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    _failures: list[_Failure | None] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> TwilioStandIn:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create_message)
        app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self._list_messages)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", self._create_call)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> TwilioStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def fail_next(
        self,
        status: int,
        times: int = 1,
        code: int | None = None,
        message: str = "",
        after: int = 0,
    ) -> None:
        """After `after` more good answers, the next `times` create requests get this error."""
        code = code or {429: 20429, 500: 20500, 503: 20503}.get(status, 21211)
        reason = message or {429: "Too Many Requests", 500: "Internal Server Error"}.get(
            status, "Error"
        )
        self._failures += [None] * after + [_Failure(status, code, reason)] * times

    async def wait_for(self, kind: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        items = self.messages if kind == "messages" else self.calls
        deadline = asyncio.get_running_loop().time() + timeout
        while len(items) < count:
            assert asyncio.get_running_loop().time() < deadline, (
                f"stand-in saw {len(items)} {kind}, wanted {count}"
            )
            await asyncio.sleep(0.05)
        return items

    # --- handlers ------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        form = await request.post()
        username, password = None, None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
        recorded = RecordedRequest(
            request.method,
            request.path,
            {k: form.getall(k) for k in form.keys()},
            username,
            peer=request.transport.get_extra_info("peername"),
        )
        self.requests.append(recorded)
        if username != self.account_sid or password != self.auth_token:
            return recorded, _error(401, 20003, "Authenticate")
        if request.match_info["sid"] != self.account_sid:
            return recorded, _error(
                404, 20404, f"The requested resource {request.path} was not found"
            )
        failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return recorded, _error(failure.status, failure.code, failure.message)
        return recorded, None

    async def _create_message(self, request: web.Request) -> web.Response:
        recorded, refusal = await self._record(request)
        response = refusal or self._message(recorded)
        recorded.status = response.status
        return response

    def _message(self, r: RecordedRequest) -> web.Response:
        to, sender, service = r.one("To"), r.one("From"), r.one("MessagingServiceSid")
        body, media = r.one("Body") or "", r.form.get("MediaUrl", [])
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not _ADDRESS.match(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not sender and not service:
            return _error(400, 21603, "A 'From' phone number is required.")
        if sender and to.startswith("whatsapp:") != sender.startswith("whatsapp:"):
            return _error(
                400, 21910, "Invalid From and To pair. From and To should be of the same channel"
            )
        if not body and not media:
            return _error(400, 21602, "Message body is required.")
        if len(body.encode("utf-16-le")) // 2 > 1600:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        sid, stamp = _sid("SM"), format_datetime(now())
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": stamp,
            "date_sent": None,
            "date_updated": stamp,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": str(max(1, -(-len(body) // 153))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "status_callback": r.one("StatusCallback"),
        }
        answer = {k: v for k, v in resource.items() if k != "status_callback"}
        # Twilio answers a new message queued, without a date_sent; the stand-in sends it at
        # once, so a list later shows it sent.
        self.messages.append(resource | {"date_sent": stamp, "status": "sent"})
        return web.json_response(answer, status=201)

    def add_sent(self, to: str, body: str, sender: str | None = None) -> dict[str, Any]:
        """A message Twilio has sent already, as if made by a call the caller did not see end."""
        sid, stamp = _sid("SM"), format_datetime(now())
        resource = {
            "account_sid": self.account_sid,
            "body": body,
            "date_created": stamp,
            "date_sent": stamp,
            "date_updated": stamp,
            "direction": "outbound-api",
            "from": sender or OUR_NUMBER,
            "sid": sid,
            "status": "sent",
            "to": to,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        self.messages.append(resource)
        return resource

    async def _list_messages(self, request: web.Request) -> web.Response:
        """GET Messages.json: To, From and DateSent> filter; the newest first; one page."""
        recorded, refusal = await self._record(request)
        if refusal is not None:
            recorded.status = refusal.status
            return refusal
        query = request.query
        after = query.get("DateSent>")
        try:
            since = datetime.fromisoformat(after.replace("Z", "+00:00")) if after else None
            size = int(query.get("PageSize", "50"))
        except ValueError:
            recorded.status = 400
            return _error(400, 20001, "Invalid DateSent> or PageSize")
        found = [
            {k: v for k, v in m.items() if k != "status_callback"}
            for m in reversed(self.messages)
            if (not query.get("To") or m["to"] == query["To"])
            and (not query.get("From") or m["from"] == query["From"])
            and (
                since is None or (m["date_sent"] and parsedate_to_datetime(m["date_sent"]) >= since)
            )
        ]
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        recorded.status = 200
        return web.json_response(
            {
                "messages": found[:size],
                "end": min(len(found), size) - 1,
                "first_page_uri": f"{uri}?PageSize={size}&Page=0",
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": f"{uri}?PageSize={size}&Page=0",
            }
        )

    async def _create_call(self, request: web.Request) -> web.Response:
        recorded, refusal = await self._record(request)
        response = refusal or self._call(recorded)
        recorded.status = response.status
        return response

    def _call(self, r: RecordedRequest) -> web.Response:
        to, sender = r.one("To"), r.one("From")
        if not to or not _ADDRESS.match(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not sender:
            return _error(400, 21213, "No 'From' number is specified")
        if not (r.one("Url") or r.one("Twiml") or r.one("ApplicationSid")):
            return _error(400, 21205, "Url parameter is required.")
        sid, stamp = _sid("CA"), format_datetime(now())
        resource = {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": "2010-04-01",
            "caller_name": None,
            "date_created": stamp,
            "date_updated": stamp,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": sender,
            "from_formatted": sender,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "to": to,
            "to_formatted": to,
            "trunk_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
            "queue_time": "0",
            "twiml": r.one("Twiml"),
        }
        self.calls.append(resource)
        return web.json_response({k: v for k, v in resource.items() if k != "twiml"}, status=201)

    async def _not_found(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest(request.method, request.path, {}, None, 404))
        return _error(404, 20404, f"The requested resource {request.path} was not found")


# --- a router with the Twilio channels, pointed at the stand-in ------------------------------------

ACCOUNT_SID = "AC" + "1f" * 16
AUTH_TOKEN = "stand-in-auth-token-0123456789"
PUBLIC_URL = "https://support.example.test"
OUR_NUMBER = "+15005550006"
CUSTOMER = "+8613800138000"


def message_sid() -> str:
    return _sid("SM")


def call_sid() -> str:
    return _sid("CA")


class TwilioRouter:
    """A running router with the Twilio channels, the stand-in it sends to, and signed webhooks."""

    def __init__(self, running, standin: TwilioStandIn, public_url: str | None, token: str):
        self.running, self.standin, self.public_url = running, standin, public_url
        self.router, self.http = running.router, running.http
        self.validator = RequestValidator(token)
        self._headers: dict[str, str] | None = None

    def url(self, path: str) -> str:
        return self.running.url(path)

    def sign(self, path: str, params: dict[str, str]) -> str:
        return self.validator.compute_signature(
            (self.public_url or self.running.base_url) + path, params
        )

    async def post(
        self,
        path: str,
        params: dict[str, str],
        *,
        signature: str | None = None,
        signed: bool = True,
    ) -> tuple[int, str]:
        headers = {}
        if signed:
            headers["X-Twilio-Signature"] = (
                signature if signature is not None else self.sign(path, params)
            )
        async with self.http.post(self.url(path), data=params, headers=headers) as resp:
            return resp.status, await resp.text()

    async def sms(
        self,
        body: str,
        sid: str | None = None,
        sender: str = CUSTOMER,
        to: str = OUR_NUMBER,
        **extra: str,
    ) -> tuple[int, str]:
        params = {
            "MessageSid": sid or message_sid(),
            "SmsSid": sid or "",
            "AccountSid": ACCOUNT_SID,
            "From": sender,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            **extra,
        }
        params["SmsSid"] = params["MessageSid"]
        return await self.post("/webhooks/twilio/messaging", params)

    async def call(
        self, path: str, sid: str, caller: str = CUSTOMER, called: str = OUR_NUMBER, **extra: str
    ) -> tuple[int, str]:
        params = {
            "CallSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": caller,
            "To": called,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            **extra,
        }
        return await self.post(path, params)

    async def login(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = await self.running.login()
        return self._headers

    async def inbound_records(self) -> list[Envelope]:
        topics = self.router.bus.topics
        return [
            Envelope.from_bytes(v)
            for v in await read_topic(
                self.router.bus.bootstrap_servers,
                topics.inbound_urgent,
                topics.inbound_standard,
            )
        ]

    async def wait_for_queue(self, queue: str, predicate, timeout: float = 15) -> list[dict]:
        headers = await self.login()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with self.http.get(
                self.url(f"/api/queues/{queue}/conversations"), headers=headers
            ) as r:
                assert r.status == 200, await r.text()
                conversations = (await r.json())["conversations"]
            if predicate(conversations):
                return conversations
            assert asyncio.get_running_loop().time() < deadline, (
                f"queue {queue} never matched: {conversations}"
            )
            await asyncio.sleep(0.05)

    async def conversation(self, conversation_id: str) -> dict:
        async with self.http.get(
            self.url(f"/api/conversations/{conversation_id}"), headers=await self.login()
        ) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def wait_for_inbound(
        self, conversation_id: str, count: int, timeout: float = 15
    ) -> list[dict]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            messages = (await self.conversation(conversation_id))["messages"]
            inbound = [m for m in messages if m["direction"] == "in"]
            if len(inbound) >= count:
                return inbound
            assert asyncio.get_running_loop().time() < deadline, (
                f"only {len(inbound)} inbound messages"
            )
            await asyncio.sleep(0.05)

    async def reply(self, conversation_id: str, text: str) -> str:
        async with self.http.post(
            self.url(f"/api/conversations/{conversation_id}/messages"),
            headers=await self.login(),
            json={"text": text},
        ) as r:
            assert r.status == 201, await r.text()
            return (await r.json())["id"]

    async def wait_for_delivery(
        self, conversation_id: str, message_id: str, status: str, timeout: float = 15
    ) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            conversation = await self.conversation(conversation_id)
            message = next(m for m in conversation["messages"] if m["id"] == message_id)
            if message["delivery_status"] == status:
                return message
            assert asyncio.get_running_loop().time() < deadline, (
                f"reply stayed {message['delivery_status']}"
            )
            await asyncio.sleep(0.05)


async def read_topic(bootstrap_servers: str, *topics: str) -> list[bytes]:
    """Every record on the topics so far, read from the beginning outside any consumer group."""
    return [record.value for record in await read_to_end(bootstrap_servers, list(topics))]


@contextlib.asynccontextmanager
async def twilio_router(
    database_url: str,
    monkeypatch,
    *,
    public_url: str | None = PUBLIC_URL,
    config_dir: Path | None = None,
    env: dict[str, str | None] | None = None,
    channels: list[str] | None = None,
) -> AsyncIterator[TwilioRouter]:
    from router.app import Router
    from tests.conftest import RunningRouter, make_settings

    values = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SUPPORTROUTER_TWILIO_RETRY_BACKOFF_SECONDS": "0.01",
    } | (env or {})
    async with TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN) as standin:
        values.setdefault("SUPPORTROUTER_TWILIO_API_BASE_URL", standin.url)
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        overrides: dict[str, Any] = {
            "channels": channels or ["chat", "sms", "whatsapp", "voice"],
            "public_url": public_url,
        }
        if config_dir is not None:
            overrides["config_dir"] = config_dir
        async with (
            Router(make_settings(database_url, **overrides)) as router,
            aiohttp.ClientSession() as http,
        ):
            yield TwilioRouter(
                RunningRouter(router, http),
                standin,
                public_url,
                values.get("TWILIO_AUTH_TOKEN") or "x",
            )
