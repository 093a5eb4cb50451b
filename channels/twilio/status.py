"""Twilio's status callbacks: what became of a reply (delivered, read, failed)."""

from __future__ import annotations

import structlog
from aiohttp import web

from channels.twilio.addresses import SID
from channels.twilio.webhooks import WebhookVerifier, add_route_once, field
from router.core.http import json_error

log = structlog.get_logger("channels.twilio")

STATUS_PATH = "/webhooks/twilio/status"
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
            raise json_error(web.HTTPServiceUnavailable, "not stored, retry") from None
        log.info("twilio.status", provider_message_id=sid, status=status, error_code=error or None)
        return web.Response(status=204)
