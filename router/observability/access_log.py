"""The gateway's access log: one `http.request` line per answered request, through structlog,
except a request whose handler logged its message already (`logged_as_message`: the Twilio
messaging webhook, whose message has its `message.received` line with its trace id); a line per
message is what a spike pays for. Such a request still gets its line when it was refused or
failed (4xx, 5xx) or took longer than a second.

It records the URL as asked, query included, so nothing long-lived may ever travel in a URL:
the sockets open with one-time tickets (router/store/tickets.py) for that reason."""

from __future__ import annotations

import logging

import structlog
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, RequestKey, StreamResponse

log = structlog.get_logger("router.observability.access_log")
# aiohttp logs only when handed a standard logger; the lines themselves go through structlog.
ACCESS_LOGGER = logging.getLogger("aiohttp.access")
SLOW_SECONDS = 1.0
_LOGGED = RequestKey("logged_as_message", bool)


def logged_as_message(request: BaseRequest) -> None:
    """Its handler logged this request's message: no access line unless it fails or is slow."""
    request[_LOGGED] = True


class AccessLog(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.get(_LOGGED) and response.status < 400 and time < SLOW_SECONDS:
            return
        log.info(
            "http.request",
            method=request.method,
            url=request.path_qs,
            status=response.status,
            duration_ms=round(time * 1000, 1),
        )
