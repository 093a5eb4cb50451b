"""Telegram inbound: a python-telegram-bot Application run inside the router's loop.

Inbound comes by webhook (`POST /webhooks/telegram`, checked against TELEGRAM_SECRET_TOKEN) when
SUPPORTROUTER_PUBLIC_URL is set, by long polling otherwise. Either way each update goes through
the Application's handlers while we wait, so the webhook answers 200 (and the poller confirms the
update to Telegram) only after Kafka acknowledged the envelope; otherwise Telegram sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import OrderedDict

import structlog
from aiohttp import web
from telegram import Update
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application

from channels.base import Publish
from channels.telegram.errors import refusal, retry_after_seconds, safe_error
from channels.telegram.handlers import Outcome, UpdateHandlers
from router.core.http import json_error
from router.core.tasks import cancel_and_wait
from router.observability.metrics import REJECTED
from router.store.conversations import ConversationStore

log = structlog.get_logger("channels.telegram.inbound")

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Only what the handlers read: Telegram then keeps everything else (group joins, reactions) away.
ALLOWED_UPDATES = ["message", "edited_message"]


class TelegramChannel:
    """The gateway side: the Application, its handlers, the webhook route or the poller."""

    name = "telegram"
    recent_updates = 10_000  # update_ids remembered to answer a provider retry without republishing

    def __init__(
        self,
        application: Application,
        publish: Publish,
        store: ConversationStore,
        *,
        webhook_url: str | None,
        secret_token: str | None,
        poll_timeout: int = 25,
    ):
        if webhook_url and not secret_token:
            raise ValueError("webhook mode needs a secret token")
        self.application = application
        self.webhook_url, self._secret = webhook_url, secret_token
        self._poll_timeout = poll_timeout
        self._handlers = UpdateHandlers(publish, store)
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._offset: int | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._handlers.add_to(application)

    @property
    def mode(self) -> str:
        return "webhook" if self.webhook_url else "polling"

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("TelegramChannel already started")
        self._started = True
        connected = False
        try:
            await self._connect()
            connected = True
        except (InvalidToken, BadRequest, Forbidden) as exc:
            await self._shutdown_application()
            raise RuntimeError(refusal(exc)) from None
        except TelegramError as exc:  # Telegram unreachable: keep the router up, keep trying
            log.warning("telegram.unreachable", mode=self.mode, error=safe_error(exc))
        self._task = asyncio.create_task(self._run(connected), name="telegram:" + self.mode)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.mode == "polling" and self._offset is not None and self._ready.is_set():
            # Confirm what was handled, so a restart does not fetch it again.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.application.bot.get_updates(
                        offset=self._offset, timeout=0, allowed_updates=ALLOWED_UPDATES
                    ),
                    5,
                )
        self._ready.clear()
        await self._shutdown_application()

    async def _shutdown_application(self) -> None:
        app = self.application
        if app.running:
            await app.stop()
        await app.shutdown()  # returns at once when it was never initialized

    async def _connect(self) -> None:
        app = self.application
        await app.initialize()  # getMe: checks the token
        if not app.running:
            await app.start()
        if self.webhook_url:
            await app.bot.set_webhook(
                url=self.webhook_url, secret_token=self._secret, allowed_updates=ALLOWED_UPDATES
            )
        else:
            # getUpdates is refused while a webhook is set; pending updates are kept.
            await app.bot.delete_webhook(drop_pending_updates=False)
        self._ready.set()
        log.info("telegram.connected", mode=self.mode, bot=app.bot.username)

    async def _run(self, connected: bool) -> None:
        delay = 1.0
        while not connected:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60)
            try:
                await self._connect()
                connected = True
            except InvalidToken:
                log.error(
                    "telegram.invalid_token",
                    hint="TELEGRAM_BOT_TOKEN was rejected; the channel is off",
                )
                return
            except TelegramError as exc:
                log.warning("telegram.unreachable", mode=self.mode, error=safe_error(exc))
        if self.mode == "polling":
            await self._poll_forever()

    async def _poll_forever(self) -> None:
        bot, delay = self.application.bot, 1.0
        while True:
            try:
                updates = await bot.get_updates(
                    offset=self._offset, timeout=self._poll_timeout, allowed_updates=ALLOWED_UPDATES
                )
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Conflict: another process polls this bot, or a webhook was set meanwhile;
                # anything else (network, a revoked token, an update PTB cannot parse) alike:
                # the poller must outlive it, and nothing unconfirmed is lost.
                log.warning("telegram.poll_failed", error=safe_error(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)
                continue
            delay = 1.0
            for update in updates:
                outcome = await self._process(update)
                if outcome.error is not None:
                    # Not confirmed: the same update comes back with the next getUpdates.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60)
                    break
                self._offset = update.update_id + 1

    # --- webhook -------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post(WEBHOOK_PATH, self.webhook)

    async def webhook(self, request: web.Request) -> web.Response:
        if not self.webhook_url:
            raise json_error(
                web.HTTPNotFound,
                "the Telegram webhook is off: this router polls (no public URL is set)",
            )
        assert self._secret is not None  # __init__ refuses a webhook URL without one
        given = request.headers.get(SECRET_HEADER, "")
        if not secrets.compare_digest(given.encode(), self._secret.encode()):
            REJECTED.labels(channel="telegram", reason="bad_secret").inc()
            log.warning("telegram.rejected", reason="bad_secret", remote=request.remote)
            raise json_error(web.HTTPForbidden, f"missing or wrong {SECRET_HEADER}")
        if not self._ready.is_set():
            raise json_error(
                web.HTTPServiceUnavailable, "the Telegram channel is still connecting; retry"
            )
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            REJECTED.labels(channel="telegram", reason="bad_json").inc()
            raise json_error(web.HTTPBadRequest, "body must be a JSON Update") from None
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            REJECTED.labels(channel="telegram", reason="not_an_update").inc()
            raise json_error(
                web.HTTPBadRequest, "body must be a JSON Update with an integer update_id"
            )
        update_id = data["update_id"]
        if update_id in self._recent:
            return web.json_response({"ok": True, "duplicate": True})
        try:
            update = Update.de_json(data, self.application.bot)
        except (TypeError, ValueError, KeyError, AttributeError):
            REJECTED.labels(channel="telegram", reason="bad_update").inc()
            raise json_error(web.HTTPBadRequest, "body is not a Telegram Update") from None
        outcome = await self._process(update)
        if outcome.error is not None:
            # Kafka (or the store) did not take it: Telegram retries a 5xx.
            raise json_error(web.HTTPServiceUnavailable, "update not accepted; retry")
        return web.json_response({"ok": True, "published": len(outcome.published)})

    # --- one update ----------------------------------------------------------------------

    async def _process(self, update: Update) -> Outcome:
        outcome = await self._handlers.process(self.application, update)
        if outcome.error is None:
            self._recent[update.update_id] = None
            while len(self._recent) > self.recent_updates:
                self._recent.popitem(last=False)
        return outcome
