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
import warnings
from collections import OrderedDict

import structlog
from aiohttp import web
from telegram import Bot, Update
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application
from telegram.warnings import PTBUserWarning

from channels.base import Publish
from channels.telegram.errors import refusal, retry_after_seconds, safe_error
from channels.telegram.handlers import POISON, Outcome, UpdateHandlers
from router.core.http import clean_strings, json_error, read_json
from router.core.tasks import cancel_and_wait
from router.observability.metrics import REJECTED
from router.store.conversations import ConversationStore

log = structlog.get_logger("channels.telegram.inbound")

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Only what the handlers read: Telegram then keeps everything else (group joins, reactions) away.
ALLOWED_UPDATES = ["message", "edited_message"]
# A real Update nests a few levels (a reply's message, its entities); 5,000 is an attack.
MAX_UPDATE_DEPTH = 24


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
                updates = await self._fetch(bot)
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
                if isinstance(update, int):  # unreadable: logged once, confirmed
                    self._offset = update + 1
                    continue
                outcome = await self._process(update)
                if outcome.error is not None and not outcome.poisoned:
                    # Not confirmed: the same update comes back with the next getUpdates.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60)
                    break
                self._offset = update.update_id + 1

    async def _fetch(self, bot: Bot) -> list[Update | int]:
        try:
            return list(
                await bot.get_updates(
                    offset=self._offset, timeout=self._poll_timeout, allowed_updates=ALLOWED_UPDATES
                )
            )
        except POISON as exc:
            # One update PTB cannot read spoils the batch, every time it is fetched: read the
            # batch raw and one by one; the unreadable ones come back as their update_id.
            log.warning("telegram.unreadable_batch", error=repr(exc)[:300])
        kwargs = {"timeout": 0, "allowed_updates": ALLOWED_UPDATES}
        if self._offset is not None:
            kwargs["offset"] = self._offset
        with warnings.catch_warnings():  # PTB asks for get_updates, which is what failed
            warnings.simplefilter("ignore", PTBUserWarning)
            raw = await bot.do_api_request("getUpdates", api_kwargs=kwargs)
        batch: list[Update | int] = []
        for data in raw if isinstance(raw, list) else []:
            update_id = data.get("update_id") if isinstance(data, dict) else None
            if not isinstance(update_id, int):
                continue
            try:
                batch.append(Update.de_json(clean_strings(data), bot))
            except POISON as exc:
                self._dropped(update_id, exc)
                batch.append(update_id)
        return batch

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
            # Text Telegram relays may hold a lone surrogate: cleaned, so the message is kept.
            data = await read_json(
                request, max_depth=MAX_UPDATE_DEPTH, surrogates="replace", what="a Telegram Update"
            )
        except web.HTTPClientError:
            REJECTED.labels(channel="telegram", reason="bad_json").inc()
            raise
        if not isinstance(data.get("update_id"), int) or isinstance(data["update_id"], bool):
            REJECTED.labels(channel="telegram", reason="not_an_update").inc()
            raise json_error(
                web.HTTPBadRequest, "body must be a JSON Update with an integer update_id"
            )
        update_id = data["update_id"]
        if update_id in self._recent:
            return web.json_response({"ok": True, "duplicate": True})
        try:
            update = Update.de_json(data, self.application.bot)
        except POISON as exc:
            # Authenticated, so from Telegram: a 4xx would only be retried. Acknowledged once.
            self._dropped(update_id, exc)
            return web.json_response({"ok": True, "handled": False})
        outcome = await self._process(update)
        if outcome.poisoned:
            return web.json_response({"ok": True, "handled": False})
        if outcome.error is not None:
            # Kafka (or the store) did not take it: Telegram retries a 5xx.
            raise json_error(web.HTTPServiceUnavailable, "update not accepted; retry")
        return web.json_response({"ok": True, "published": len(outcome.published)})

    # --- one update ----------------------------------------------------------------------

    async def _process(self, update: Update) -> Outcome:
        """Handles one update; one that cannot be handled (see POISON) counts as handled."""
        outcome = await self._handlers.process(self.application, update)
        if outcome.poisoned:
            assert outcome.error is not None
            self._dropped(update.update_id, outcome.error)
        elif outcome.error is None:
            self._remember(update.update_id)
        return outcome

    def _remember(self, update_id: int) -> None:
        self._recent[update_id] = None
        while len(self._recent) > self.recent_updates:
            self._recent.popitem(last=False)

    def _dropped(self, update_id: int, error: BaseException) -> None:
        REJECTED.labels(channel="telegram", reason="unhandled_update").inc()
        log.error("telegram.update_dropped", update_id=update_id, error=repr(error)[:300])
        self._remember(update_id)
