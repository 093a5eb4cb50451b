"""Twilio's webhooks in: the signature check, the form's fields, the answers (TwiML, 4xx, 503).

Every webhook is checked with twilio's RequestValidator against the URL Twilio called, rebuilt
from SUPPORTROUTER_PUBLIC_URL (so it holds behind a proxy). Without TWILIO_AUTH_TOKEN no signature
can be checked, so webhooks are refused unless SUPPORTROUTER_TWILIO_INSECURE_DEV=1.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse

import structlog
from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import (
    RequestValidator,
    add_port,
    compare,
    get_signature_algorithm,
    remove_port,
)

from channels.twilio.addresses import MAX_ADDRESS_CHARS
from router.core.channel_settings import TwilioSettings
from router.core.http import charset_problem, json_error
from router.observability.metrics import REJECTED

log = structlog.get_logger("channels.twilio")
FORM_TYPE = "application/x-www-form-urlencoded"  # what Twilio posts


def bad_request(channel: str, reason: str, detail: str) -> web.HTTPBadRequest:
    REJECTED.labels(channel=channel, reason=reason).inc()
    return json_error(web.HTTPBadRequest, detail)


def _forbidden(channel: str, reason: str, detail: str) -> web.HTTPForbidden:
    REJECTED.labels(channel=channel, reason=reason).inc()
    return json_error(web.HTTPForbidden, detail)


class WebhookVerifier:
    """Reads a Twilio webhook's form and proves Twilio sent it, or refuses the request."""

    def __init__(self, auth_token: str | None, public_url: str | None, insecure_dev: bool = False):
        self._validator = RequestValidator(auth_token) if auth_token else None
        self.public_url = public_url.rstrip("/") if public_url else None
        self.insecure_dev = insecure_dev and not auth_token
        self._port_form = 0  # which of `_port_forms` Twilio signed last: 0 without, 1 with

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
        body = await request.read()  # 413 past the app's client_max_size
        # Twilio posts a UTF-8 form whatever the headers say; the signature is checked on that
        # form first, so a forged request is refused (403) before its headers or bytes are
        # judged. Undecodable bytes become U+FFFD here, which no genuine signature covers.
        form, utf8 = _parse_form(body)
        if self._validator is not None:
            algorithm = get_signature_algorithm(
                request.headers.get("X-Twilio-Webhooks-Signature-Settings")
            )
            if not self._signed(self.url_for(request), form, signature, algorithm):
                log.warning("twilio.bad_signature", path=request.path, channel=channel)
                raise _forbidden(channel, "bad_signature", "X-Twilio-Signature does not match")
        _check_form(request, utf8, channel)
        return MultiDictProxy(form)

    def _signed(self, url: str, form: MultiDict[str], signature: str, algorithm: str) -> bool:
        """twilio's `RequestValidator.validate`: the signature of the URL with or without its
        port. That signs the form twice, and parses the URL, for every webhook; here the form
        of the URL Twilio signed last is tried first, alone, and only a signature that does not
        match it goes through `validate`. The same requests pass: a form (like the request's
        own, a MultiDict) makes `validate` check exactly these two URLs."""
        assert self._validator is not None
        try:
            first = _port_forms(url)[self._port_form]
            if compare(self._validator.compute_signature(first, form, algorithm), signature):
                return True
        except ValueError:  # an algorithm twilio does not know: `validate` logs it, and refuses
            pass
        if self._validator.validate(url, form, signature, algorithm):
            self._port_form = 1 - self._port_form  # the other form matched
            return True
        return False


@functools.lru_cache(maxsize=64)
def _port_forms(url: str) -> tuple[str, str]:
    """The URL without and with its port, as twilio's `validate` writes them."""
    parsed = urlparse(url)
    return remove_port(parsed), add_port(parsed)


def _parse_form(body: bytes) -> tuple[MultiDict[str], bool]:
    """The form's fields, and whether its bytes, raw and %-escaped, were UTF-8 throughout. One
    pass when they are (every webhook): a second, over the whole body again, only when not."""
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
        return MultiDict(fields), True
    except UnicodeDecodeError:
        return MultiDict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)), False


def _check_form(request: web.Request, utf8: bool, channel: str) -> None:
    """What a signed (or, in development, unsigned) request must still be: a UTF-8 form."""
    if request.content_type != FORM_TYPE:
        REJECTED.labels(channel=channel, reason="bad_content_type").inc()
        raise json_error(
            web.HTTPUnsupportedMediaType, "body must be application/x-www-form-urlencoded"
        )
    problem = charset_problem(request)
    if problem is not None:
        REJECTED.labels(channel=channel, reason="bad_charset").inc()
        raise json_error(web.HTTPUnsupportedMediaType, problem)
    if not utf8:
        raise bad_request(channel, "bad_form", "body must be a URL-encoded form in UTF-8")


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
    return json_error(
        web.HTTPServiceUnavailable,
        "message not accepted yet, retry",
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
