"""Twilio's REST API out: twilio's client on its asynchronous HTTP client, sent to
SUPPORTROUTER_TWILIO_API_BASE_URL (Twilio's own by default), with retries on 429 and 5xx."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog
from aiohttp import ClientSession, ClientTimeout
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from channels.base import DeliveryFailed
from router.core.channel_settings import TWILIO_API, TwilioSettings

log = structlog.get_logger("channels.twilio")


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
