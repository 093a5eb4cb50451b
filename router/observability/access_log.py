"""The gateway's access log: one `http.request` line per answered request, through structlog.

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


class AccessLog(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        log.info(
            "http.request",
            method=request.method,
            url=request.path_qs,
            status=response.status,
            duration_ms=round(time * 1000, 1),
        )
