"""What the Twilio channels share: settings, webhook signatures, the REST sender, status callbacks.

Inbound: every webhook is checked with twilio's RequestValidator against the URL Twilio called,
rebuilt from SUPPORTROUTER_PUBLIC_URL (so it holds behind a proxy). Without TWILIO_AUTH_TOKEN no
signature can be checked, so webhooks are refused unless SUPPORTROUTER_TWILIO_INSECURE_DEV=1.

Outbound: twilio's REST client on its asynchronous HTTP client, sent to
SUPPORTROUTER_TWILIO_API_BASE_URL (Twilio's own by default), with retries on 429 and 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import structlog
from aiohttp import ClientSession, ClientTimeout, web
from multidict import MultiDict, MultiDictProxy
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.rest import Client

from channels.base import DeliveryFailed
from channels.base.text_split import SENTENCE_BREAKS, split_units
from router.core.envelope import Channel, Outbound
from router.observability.metrics import REJECTED

log = structlog.get_logger("channels.twilio")

TWILIO_API = "https://api.twilio.com"
STATUS_PATH = "/webhooks/twilio/status"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Twilio SIDs: two letters naming the resource, then 32 hex digits.
SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
MAX_ADDRESS_CHARS = 64


class TwilioSettings(BaseSettings):
    """The Twilio channels' own settings; provider secrets keep Twilio's own variable names."""

    model_config = SettingsConfigDict(
        env_prefix="SUPPORTROUTER_TWILIO_", extra="ignore", populate_by_name=True
    )

    account_sid: str | None = Field(default=None, validation_alias="TWILIO_ACCOUNT_SID")
    auth_token: SecretStr | None = Field(default=None, validation_alias="TWILIO_AUTH_TOKEN")
    # An API key signs REST calls instead of the auth token; webhooks are still signed with the token.
    api_key: str | None = Field(default=None, validation_alias="TWILIO_API_KEY")
    api_secret: SecretStr | None = Field(default=None, validation_alias="TWILIO_API_SECRET")
    api_base_url: str = Field(
        default=TWILIO_API, description="where REST calls go: a proxy or a test stand-in"
    )
    insecure_dev: bool = Field(
        default=False,
        description="accept unsigned webhooks when TWILIO_AUTH_TOKEN is unset (development only)",
    )
    sms_from: str | None = Field(default=None, description="fallback sender number for SMS replies")
    whatsapp_from: str | None = Field(
        default=None, description="fallback sender for WhatsApp replies"
    )
    messaging_service_sid: str | None = Field(
        default=None, description="last fallback: a Messaging Service"
    )
    voice_reply: Literal["sms", "call", "outbox"] = Field(
        default="sms",
        description="how a phone conversation is answered: SMS to the caller, a call back, or the sandbox outbox",
    )
    voice_sms_from: str | None = Field(
        default=None, description="sender of SMS replies to callers (default: the number called)"
    )
    send_attempts: int = Field(default=3, ge=1, le=10)
    retry_backoff_seconds: float = Field(default=1.0, ge=0)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    max_message_chars: int = Field(
        default=1600, ge=160, le=1600, description="Twilio's limit for one message body"
    )
    max_inbound_chars: int = Field(default=10_000, gt=0)

    @property
    def can_send(self) -> bool:
        has_secret = self.auth_token is not None or (self.api_key and self.api_secret is not None)
        return bool(self.account_sid and has_secret)


# --- conversation keys ---------------------------------------------------------------------------
# A Twilio conversation is one customer address talking to one of our numbers on one channel. The
# key carries our number, so a reply leaves from the number the customer wrote to or called.


def conversation_key(channel: Channel, customer: str, ours: str) -> str:
    return f"{channel.value}|{customer}|{ours}"


def parse_conversation_key(key: str) -> tuple[str, str, str] | None:
    parts = key.split("|")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


# --- inbound webhooks ----------------------------------------------------------------------------


def bad_request(channel: str, reason: str, detail: str) -> web.HTTPBadRequest:
    REJECTED.labels(channel=channel, reason=reason).inc()
    return web.HTTPBadRequest(text=json.dumps({"error": detail}), content_type="application/json")


def _forbidden(channel: str, reason: str, detail: str) -> web.HTTPForbidden:
    REJECTED.labels(channel=channel, reason=reason).inc()
    return web.HTTPForbidden(text=json.dumps({"error": detail}), content_type="application/json")


class WebhookVerifier:
    """Reads a Twilio webhook's form and proves Twilio sent it, or refuses the request."""

    def __init__(self, auth_token: str | None, public_url: str | None, insecure_dev: bool = False):
        self._validator = RequestValidator(auth_token) if auth_token else None
        self.public_url = public_url.rstrip("/") if public_url else None
        self.insecure_dev = insecure_dev and not auth_token

    @classmethod
    def from_settings(
        cls, settings: TwilioSettings, public_url: str | None, channel: str
    ) -> WebhookVerifier:
        """The verifier a channel's webhooks use, which says so loudly when it checks nothing."""
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        verifier = cls(token, public_url, settings.insecure_dev)
        if verifier.insecure_dev:
            log.warning(
                "twilio.webhooks_unsigned",
                channel=channel,
                reason="SUPPORTROUTER_TWILIO_INSECURE_DEV=1 and no TWILIO_AUTH_TOKEN: anyone can post",
            )
        return verifier

    def url_for(self, request: web.Request) -> str:
        """The URL Twilio called: the public one when set, since a proxy changes what we see."""
        if self.public_url:
            return self.public_url + request.raw_path
        return str(request.url)

    def callback_url(self, path: str, **query: str) -> str:
        """A URL for Twilio to call back: absolute under the public URL, else relative to the call."""
        suffix = f"?{urlencode(query)}" if query else ""
        return f"{self.public_url or ''}{path}{suffix}"

    async def form(self, request: web.Request, channel: str) -> MultiDictProxy[str]:
        if self._validator is None and not self.insecure_dev:
            raise _forbidden(
                channel,
                "unsigned",
                "Twilio webhooks are refused: TWILIO_AUTH_TOKEN is not set "
                "(SUPPORTROUTER_TWILIO_INSECURE_DEV=1 accepts unsigned requests on a development machine)",
            )
        signature = request.headers.get("X-Twilio-Signature", "")
        if self._validator is not None and not signature:
            raise _forbidden(channel, "no_signature", "missing X-Twilio-Signature")
        try:
            form = await request.post()
        except (ValueError, UnicodeDecodeError):
            raise bad_request(
                channel, "bad_form", "body must be a URL-encoded form in UTF-8"
            ) from None
        if self._validator is not None:
            algorithm = get_signature_algorithm(
                request.headers.get("X-Twilio-Webhooks-Signature-Settings")
            )
            if not self._validator.validate(self.url_for(request), form, signature, algorithm):
                log.warning("twilio.bad_signature", path=request.path, channel=channel)
                raise _forbidden(channel, "bad_signature", "X-Twilio-Signature does not match")
        # Files in a multipart body are not something Twilio sends.
        return MultiDictProxy(MultiDict((k, v) for k, v in form.items() if isinstance(v, str)))


def field(
    form: MultiDictProxy[str],
    name: str,
    channel: str,
    *,
    required: bool = True,
    pattern: re.Pattern | None = None,
    max_chars: int = 2000,
) -> str:
    value = form.get(name, "")
    if not value:
        if required:
            raise bad_request(channel, "missing_field", f"{name} is required")
        return ""
    if len(value) > max_chars:
        raise bad_request(channel, "too_long", f"{name} is longer than {max_chars} characters")
    if pattern is not None and not pattern.match(value):
        raise bad_request(channel, "bad_field", f"{name} is not in the expected format")
    return value


def address(form: MultiDictProxy[str], name: str, channel: str) -> str:
    value = field(form, name, channel, max_chars=MAX_ADDRESS_CHARS)
    # A space is most often a "+" that was not URL-encoded: refuse it rather than guess.
    if any(c.isspace() or c == "|" or not c.isprintable() for c in value):
        raise bad_request(channel, "bad_field", f"{name} is not an address")
    return value


def twiml(xml: str | Any) -> web.Response:
    return web.Response(text=str(xml), content_type="text/xml", charset="utf-8")


def publish_failed(channel: str, exc: BaseException) -> web.HTTPServiceUnavailable:
    """Kafka did not acknowledge: 503, and Twilio retries (or uses the fallback URL)."""
    log.warning("twilio.publish_failed", channel=channel, error=repr(exc)[:300])
    return web.HTTPServiceUnavailable(
        text='{"error": "message not accepted yet, retry"}',
        content_type="application/json",
        headers={"Retry-After": "5"},
    )


def add_route_once(
    app: web.Application,
    key: web.AppKey,
    path: str,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> bool:
    """Several channels may bring the same route; the first one adds it."""
    if key in app:
        return False
    app[key] = path
    app.router.add_post(path, handler)
    return True


# --- status callbacks ----------------------------------------------------------------------------

STATUS_ROUTE = web.AppKey("twilio_status_route", str)
# What a status callback may change. Earlier stages (queued, sending, sent) arrive out of order
# and say nothing our own "sent" does not, so they are ignored rather than let them overwrite
# "delivered".
_FAILED = {"failed", "undelivered", "canceled"}
_DONE = {"delivered", "read"}


class StatusCallbacks:
    """POST /webhooks/twilio/status: Twilio reports what became of a reply."""

    def __init__(self, verifier: WebhookVerifier, store):
        self.verifier, self.store = verifier, store

    def routes(self, app: web.Application) -> None:
        add_route_once(app, STATUS_ROUTE, STATUS_PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        form = await self.verifier.form(request, "twilio_status")
        sid = field(form, "MessageSid", "twilio_status", pattern=SID)
        status = field(form, "MessageStatus", "twilio_status", max_chars=20).lower()
        error = field(form, "ErrorCode", "twilio_status", required=False, max_chars=10)
        # Our message id rides in the callback URL (signed with it), so a failure of any part of
        # a split reply marks the whole reply; success counts once the last part is delivered.
        message_id = request.query.get("message_id")
        try:
            if status in _FAILED:
                detail = f"Twilio: {status}" + (f", error {error}" if error else "")
                if message_id:
                    await self.store.set_delivery_status(message_id, status, detail=detail)
                else:
                    await self.store.set_delivery_status(
                        provider_message_id=sid, status=status, detail=detail
                    )
            elif status in _DONE:
                await self.store.set_delivery_status(provider_message_id=sid, status=status)
        except Exception as exc:
            log.warning("twilio.status_not_stored", error=repr(exc)[:300])
            raise web.HTTPServiceUnavailable(
                text='{"error": "not stored, retry"}', content_type="application/json"
            ) from None
        log.info("twilio.status", provider_message_id=sid, status=status, error_code=error or None)
        return web.Response(status=204)


# --- the REST client -----------------------------------------------------------------------------


class TwilioApiHttpClient(AsyncTwilioHttpClient):
    """twilio's async HTTP client, sent to a configurable base URL.

    Twilio documents a custom HTTP client as the way to send its REST calls elsewhere (a proxy, a
    stand-in). Between open() and close() (the sender service's start and stop) requests share
    one pooled session, so a reply does not pay a TLS handshake; outside them each request opens
    and closes its own.
    """

    session: ClientSession | None  # the base class sets it; None without pooled connections

    def __init__(self, base_url: str = TWILIO_API, timeout: float = 30.0):
        super().__init__(pool_connections=False, timeout=timeout)
        self.base_url = base_url.rstrip("/")

    async def open(self) -> None:
        if self.session is None:
            self.session = ClientSession()

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        if self.base_url == TWILIO_API or not (parts.hostname or "").endswith("twilio.com"):
            return url
        base = urlsplit(self.base_url)
        return urlunsplit(
            (base.scheme, base.netloc, base.path + parts.path, parts.query, parts.fragment)
        )

    async def request(
        self,
        method: str,
        url: str,
        params: dict | None = None,
        data: dict | None = None,
        headers: dict | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        headers = dict(headers or {})
        if auth:  # by hand: aiohttp 3.14 deprecates BasicAuth, which twilio's own client still uses
            headers["Authorization"] = (
                "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            )
        kwargs = {
            "method": method.upper(),
            "url": self.rewrite(url),
            "params": params,
            "data": data,
            "headers": headers,
            "timeout": ClientTimeout(total=timeout or self.timeout),
            "allow_redirects": allow_redirects,
        }
        self.log_request(kwargs)
        if self.session is not None:
            return await self._send(self.session, kwargs)
        async with ClientSession() as session:
            return await self._send(session, kwargs)

    async def _send(self, session: ClientSession, kwargs: dict[str, Any]) -> TwilioResponse:
        async with session.request(**kwargs) as response:
            text = await response.text()
            self.log_response(response.status, response)
            return TwilioResponse(response.status, text, response.headers)


class TwilioUnavailable(Exception):
    """Twilio kept answering 429/5xx or could not be reached: the sender service retries later."""


class TwilioRest:
    """The few REST calls the channels make, each retried with backoff on 429, 5xx and network faults."""

    def __init__(
        self, settings: TwilioSettings, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    ):
        if not settings.can_send:
            raise ValueError(
                "TwilioRest needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or an API key)"
            )
        self.settings = settings
        assert settings.account_sid is not None  # can_send
        if settings.api_key and settings.api_secret is not None:
            username, password = settings.api_key, settings.api_secret.get_secret_value()
        else:
            assert settings.auth_token is not None  # can_send, without an API key
            username, password = settings.account_sid, settings.auth_token.get_secret_value()
        self.http = TwilioApiHttpClient(
            settings.api_base_url, timeout=settings.request_timeout_seconds
        )
        self.client = Client(
            username, password, account_sid=settings.account_sid, http_client=self.http
        )
        self._sleep = sleep

    async def start(self) -> None:
        await self.http.open()

    async def stop(self) -> None:
        await self.http.close()

    async def create_message(self, **params: Any) -> str:
        message = await self._with_retries("message", self.client.messages.create_async, params)
        return message.sid

    async def list_messages(self, **filters: Any) -> list[Any]:
        """Messages of the account matching twilio's list filters (to, date_sent_after, limit)."""
        return await self._with_retries("lookup", self.client.messages.list_async, filters)

    async def create_call(self, **params: Any) -> str:
        call = await self._with_retries("call", self.client.calls.create_async, params)
        return call.sid

    async def _with_retries(
        self, what: str, create: Callable[..., Awaitable[Any]], params: dict
    ) -> Any:
        attempts, delay = self.settings.send_attempts, self.settings.retry_backoff_seconds
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            try:
                return await create(**params)
            except (TwilioRestException, TwilioServiceException) as exc:
                status = int(getattr(exc, "status", 0) or 0)
                if status != 429 and status < 500:
                    code = getattr(exc, "code", None)
                    reason = getattr(exc, "msg", None) or getattr(exc, "detail", None) or str(exc)
                    log.warning("twilio.refused", what=what, status=status, code=code)
                    raise DeliveryFailed(
                        f"Twilio refused the {what}: HTTP {status}, error {code}: {reason}"[:500]
                    ) from exc
                last = exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = exc
            log.info("twilio.retry", what=what, attempt=attempt, error=repr(last)[:200])
            if attempt < attempts:
                await self._sleep(delay)
                delay *= 2
        raise TwilioUnavailable(
            f"Twilio did not take the {what} after {attempts} attempts: {last!r}"[:500]
        )


# --- splitting long replies ----------------------------------------------------------------------


def split_message(text: str, limit: int = 1600) -> list[str]:
    """Split a reply into messages of at most `limit` units, at the best break in each, numbered."""
    return split_units(
        text, limit, breaks=SENTENCE_BREAKS, keep_breaks=True, strip=True, numbered=True
    )


# --- the reply sender ----------------------------------------------------------------------------


# A lookup after a crash looks at the messages Twilio sent since the send began, allowing for
# this much difference between our clock and Twilio's (its dates have whole seconds), and at
# most this many of them: the newest, which a crashed send's parts are among.
LOOKUP_CLOCK_SKEW = timedelta(seconds=5)
LOOKUP_LIMIT = 100


class TwilioMessageSender:
    """Delivers replies as Twilio messages (SMS or WhatsApp), from the number the customer used.

    Parts of a split reply already sent are remembered for a while, so a retry after a failure
    half-way sends only what is missing (within this process; a restart may repeat parts).
    """

    remembered = 1000

    def __init__(
        self,
        rest: TwilioRest,
        store,
        *,
        whatsapp: bool,
        fixed_from: str | None = None,
        default_from: str | None = None,
        messaging_service_sid: str | None = None,
        public_url: str | None = None,
        max_chars: int = 1600,
    ):
        self.rest, self.store, self.whatsapp = rest, store, whatsapp
        self.fixed_from, self.default_from = fixed_from, default_from
        self.messaging_service_sid = messaging_service_sid
        self.public_url = public_url.rstrip("/") if public_url else None
        self.max_chars = max_chars
        self._progress: OrderedDict[str, dict[int, str]] = OrderedDict()

    async def start(self) -> None:
        await self.rest.start()

    async def stop(self) -> None:
        await self.rest.stop()

    def _to(self, out: Outbound) -> str:
        number = out.to.removeprefix("whatsapp:")
        if not E164.match(number):
            raise DeliveryFailed(
                f"cannot message {out.to!r}: not a phone number (a withheld caller id?)"
            )
        return f"whatsapp:{number}" if self.whatsapp else number

    def _sender(self, out: Outbound) -> dict[str, str]:
        parsed = parse_conversation_key(out.conversation_key)
        ours = self.fixed_from or (parsed[2] if parsed else None) or self.default_from
        if ours:
            number = ours.removeprefix("whatsapp:")
            if E164.match(number):
                return {"from_": f"whatsapp:{number}" if self.whatsapp else number}
        if self.messaging_service_sid:
            return {"messaging_service_sid": self.messaging_service_sid}
        raise DeliveryFailed(f"no number to send from for conversation {out.conversation_id}")

    async def lookup(self, out: Outbound, since: datetime) -> str | None:
        """After a send cut short (a crash during it): the sid of the reply's last part when
        Twilio already has every part, sent to the customer since `since` with the same body;
        else None. Parts found are remembered, so send() then sends only the others."""
        parts = split_message(out.text, self.max_chars)
        found = await self.rest.list_messages(
            to=self._to(out), date_sent_after=since - LOOKUP_CLOCK_SKEW, limit=LOOKUP_LIMIT
        )
        after = since - LOOKUP_CLOCK_SKEW
        sids: dict[str, list[str]] = {}
        for message in reversed(found):  # Twilio lists the newest first
            sent_at = message.date_sent
            if sent_at is not None and sent_at < after:
                continue  # DateSent> may be applied to the day only
            if message.direction != "inbound" and message.body is not None:
                sids.setdefault(message.body, []).append(message.sid)
        done = self._progress.setdefault(out.message_id, {})
        self._progress.move_to_end(out.message_id)
        for i, body in enumerate(parts):
            if i not in done and sids.get(body):
                done[i] = sids[body].pop(0)
        if len(done) < len(parts):
            return None
        self._progress.pop(out.message_id, None)
        return done[len(parts) - 1]

    async def send(self, out: Outbound) -> None:
        to, sender = self._to(out), self._sender(out)
        parts = split_message(out.text, self.max_chars)
        done = self._progress.setdefault(out.message_id, {})
        self._progress.move_to_end(out.message_id)
        while len(self._progress) > self.remembered:
            self._progress.popitem(last=False)
        callback = {}
        if self.public_url:
            callback["status_callback"] = (
                f"{self.public_url}{STATUS_PATH}?{urlencode({'message_id': out.message_id})}"
            )
        for i, body in enumerate(parts):
            if i not in done:
                done[i] = await self.rest.create_message(to=to, body=body, **sender, **callback)
        self._progress.pop(out.message_id, None)
        # The last part's sid stands for the reply: "delivered" means the whole of it arrived.
        await self.store.set_delivery_status(
            out.message_id, "sent", provider_message_id=done[len(parts) - 1]
        )
        log.info("twilio.sent", channel=out.channel, parts=len(parts), trace_id=out.trace_id)
