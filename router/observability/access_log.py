"""The gateway's access log: one `http.request` line per answered request, through structlog,
except a provider's webhook that was accepted: that message is logged once already, as
`message.received` with its trace id, and a line per message is what a spike pays for. Every
refused or failed webhook (4xx, 5xx) and any slower than a second still gets its line.

It records the URL as asked, query included, so nothing long-lived may ever travel in a URL:
the sockets open with one-time tickets (router/store/tickets.py) for that reason."""

from __future__ import annotations

import logging

import structlog
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

log = structlog.get_logger("router.observability.access_log")
# aiohttp logs only when handed a standard logger; the lines themselves go through structlog.
ACCESS_LOGGER = logging.getLogger("aiohttp.access")
WEBHOOKS = "/webhooks/"
SLOW_SECONDS = 1.0


class AccessLog(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if _accepted_webhook(request, response) and time < SLOW_SECONDS:
            return
        log.info(
            "http.request",
            method=request.method,
            url=request.path_qs,
            status=response.status,
            duration_ms=round(time * 1000, 1),
        )


def _accepted_webhook(request: BaseRequest, response: StreamResponse) -> bool:
    return request.method == "POST" and request.path.startswith(WEBHOOKS) and response.status < 400
