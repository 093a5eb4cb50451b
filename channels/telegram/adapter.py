"""Telegram: a python-telegram-bot Application run inside the router's loop, and the bot as sender.

Inbound comes by webhook (`POST /webhooks/telegram`, checked against TELEGRAM_SECRET_TOKEN) when
SUPPORTROUTER_PUBLIC_URL is set, by long polling otherwise. Either way each update goes through
the Application's handlers while we wait, so the webhook answers 200 (and the poller confirms the
update to Telegram) only after Kafka acknowledged the envelope; otherwise Telegram sends it again.

A Telegram user gets a verified phone only by sharing their own contact through the contact
button: Telegram then sets contact.user_id to the sender's own id. Anything else (a forwarded
card, someone else's number) is recorded as a message and never linked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import warnings
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from aiohttp import web

# PTB 22 builds RetryAfter by reading its own deprecated int `retry_after`, which warns on every
# 429 unless the process opts into the coming timedelta type; we read either.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from telegram import (
    Bot,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from channels.base import ChannelContext, ChannelParts, DeliveryFailed, Publish
from router.core.envelope import Attachment, Channel, Envelope, Outbound, Sender
from router.core.tasks import cancel_and_wait
from router.observability.metrics import REJECTED
from router.operator_files.config import ConfigError, Problem
from router.store.conversations import ConversationStore

log = structlog.get_logger("channels.telegram.adapter")

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Only what the handlers read: Telegram then keeps everything else (group joins, reactions) away.
ALLOWED_UPDATES = ["message", "edited_message"]
# Telegram's limit is 4096 characters "after entities parsing", counted in UTF-16 code units
# (an emoji outside the BMP is two), the unit its entity offsets use.
MAX_TEXT_UNITS = 4096


class TelegramSettings(BaseSettings):
    """The bot's own settings; the token and the secret are provider secrets, so unprefixed."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    bot_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_BOT_TOKEN")
    secret_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_SECRET_TOKEN")
    api_base_url: str = Field(
        default="https://api.telegram.org",
        validation_alias="SUPPORTROUTER_TELEGRAM_API_BASE_URL",
        description="the Bot API server: Telegram's, or a self-hosted telegram-bot-api",
    )
    poll_timeout_seconds: int = Field(
        default=25, ge=0, le=50, validation_alias="SUPPORTROUTER_TELEGRAM_POLL_TIMEOUT_SECONDS"
    )
    max_retry_after_seconds: float = Field(
        default=60,
        ge=0,
        validation_alias="SUPPORTROUTER_TELEGRAM_MAX_RETRY_AFTER_SECONDS",
        description="a longer flood wait is not slept in the sender: the reply is retried, then dead-lettered",
    )

    @field_validator("bot_token", "secret_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_token")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # What setWebhook accepts; anything else Telegram refuses at start.
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()
        ):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _base_url_shape(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"https?://[^/]+", value):
            raise ValueError("must be an http(s) URL such as https://api.telegram.org")
        return value

    def bot_url(self) -> str:
        return f"{self.api_base_url}/bot"

    def file_url(self) -> str:
        return f"{self.api_base_url}/file/bot"


def load_settings() -> TelegramSettings:
    try:
        return TelegramSettings()
    except ValidationError as exc:
        raise ConfigError(
            [
                Problem("environment", None, f"{'.'.join(map(str, e['loc']))}: {e['msg']}")
                for e in exc.errors()
            ]
        ) from None


# --- words the bot says by itself ------------------------------------------------------------

GREETING = {
    "en": (
        "Hello{name}! This is the wallet's official customer service on Telegram.\n\n"
        "Write to us here about: a payment, transfer or withdrawal you did not make; a transfer "
        "that failed or is pending; passwords, PINs and reset codes; two-step verification and "
        "suspicious logins; using your account on several devices; a lost or broken phone; fees, "
        "limits and top-ups. You can send text, photos and documents; an agent answers in this chat.\n\n"
        "Never send anyone, including us, your password, PIN, card number or one-time codes.\n\n"
        "Optional: tap \u201cShare my phone number\u201d below so we can find your account faster."
    ),
    "zh": (
        "您好{name}！这里是钱包官方 Telegram 客服。\n\n"
        "您可以在这里咨询：不是您本人发起的付款、转账或提现；转账失败或一直处理中；密码、支付密码和验证码；"
        "两步验证和可疑登录；多设备登录；手机丢失或损坏；手续费、限额和充值。"
        "可以发送文字、图片和文件，客服会在此对话中回复您。\n\n"
        "请勿向任何人（包括客服）发送密码、支付密码、银行卡号或验证码。\n\n"
        "可选：点击下方\u201c分享我的手机号\u201d，方便我们更快找到您的账户。"
    ),
}
SHARE_PHONE = {"en": "Share my phone number", "zh": "分享我的手机号"}
LINKED = {
    "en": "Thank you. Your phone number is now linked to this chat; agents see it with your messages.",
    "zh": "谢谢，您的手机号已与此对话关联，客服会在您的消息中看到它。",
}
UNSUPPORTED = {
    "en": "I can read text, photos and documents. Please describe your problem in words, or send a photo or a document.",
    "zh": "目前支持文字、图片和文件。请用文字描述您的问题，或发送图片、文件。",
}


def language_of(language_code: str | None) -> str:
    return "zh" if (language_code or "").lower().startswith("zh") else "en"


def normalize_phone(raw: str) -> str | None:
    """Telegram sends a contact's number in international form, usually without the plus."""
    number = re.sub(r"[\s\-().]", "", raw or "")
    if number.startswith("00"):
        number = number[2:]
    number = number.removeprefix("+")
    return f"+{number}" if re.fullmatch(r"\d{6,15}", number) else None


def _masked(phone: str) -> str:
    return "*" * max(len(phone) - 4, 0) + phone[-4:]


# --- inbound ---------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """What handling one update did; the webhook and the poller read it after process_update."""

    published: list[Envelope] = field(default_factory=list)
    error: BaseException | None = None


# process_update awaits blocking handlers and error handlers in the caller's task, so each
# webhook request or poll step sees its own outcome here, however many run at once.
_OUTCOME: ContextVar[_Outcome | None] = ContextVar("telegram_update_outcome", default=None)


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
        self._publish, self._store, self._poll_timeout = publish, store, poll_timeout
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._offset: int | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._started = False
        self._add_handlers()

    @property
    def mode(self) -> str:
        return "webhook" if self.webhook_url else "polling"

    def _add_handlers(self) -> None:
        private = filters.ChatType.PRIVATE
        new = filters.UpdateType.MESSAGE
        content = filters.TEXT | filters.PHOTO | filters.Document.ALL
        app = self.application
        app.add_handler(CommandHandler(["start", "help"], self._on_start, filters=private & new))
        app.add_handler(MessageHandler(private & new & filters.CONTACT, self._on_contact))
        app.add_handler(
            MessageHandler(private & filters.UpdateType.MESSAGES & content, self._on_message)
        )
        app.add_handler(MessageHandler(private & new, self._on_unsupported))
        app.add_handler(TypeHandler(Update, self._on_ignored))
        app.add_error_handler(self._on_error)

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
            raise RuntimeError(_refusal(exc)) from None
        except TelegramError as exc:  # Telegram unreachable: keep the router up, keep trying
            log.warning("telegram.unreachable", mode=self.mode, error=_safe(exc))
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
                log.warning("telegram.unreachable", mode=self.mode, error=_safe(exc))
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
                log.warning("telegram.poll_failed", error=_safe(exc), retry_in=delay)
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
            raise _refuse(
                web.HTTPNotFound,
                "the Telegram webhook is off: this router polls (no public URL is set)",
            )
        given = request.headers.get(SECRET_HEADER, "")
        if not secrets.compare_digest(given.encode(), self._secret.encode()):
            REJECTED.labels(channel="telegram", reason="bad_secret").inc()
            log.warning("telegram.rejected", reason="bad_secret", remote=request.remote)
            raise _refuse(web.HTTPForbidden, f"missing or wrong {SECRET_HEADER}")
        if not self._ready.is_set():
            raise _refuse(
                web.HTTPServiceUnavailable, "the Telegram channel is still connecting; retry"
            )
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            REJECTED.labels(channel="telegram", reason="bad_json").inc()
            raise _refuse(web.HTTPBadRequest, "body must be a JSON Update") from None
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            REJECTED.labels(channel="telegram", reason="not_an_update").inc()
            raise _refuse(
                web.HTTPBadRequest, "body must be a JSON Update with an integer update_id"
            )
        update_id = data["update_id"]
        if update_id in self._recent:
            return web.json_response({"ok": True, "duplicate": True})
        try:
            update = Update.de_json(data, self.application.bot)
        except (TypeError, ValueError, KeyError, AttributeError):
            REJECTED.labels(channel="telegram", reason="bad_update").inc()
            raise _refuse(web.HTTPBadRequest, "body is not a Telegram Update") from None
        outcome = await self._process(update)
        if outcome.error is not None:
            # Kafka (or the store) did not take it: Telegram retries a 5xx.
            raise _refuse(web.HTTPServiceUnavailable, "update not accepted; retry")
        return web.json_response({"ok": True, "published": len(outcome.published)})

    # --- one update ----------------------------------------------------------------------

    async def _process(self, update: Update) -> _Outcome:
        outcome = _Outcome()
        token = _OUTCOME.set(outcome)
        try:
            await self.application.process_update(update)
        finally:
            _OUTCOME.reset(token)
        if outcome.error is None:
            self._recent[update.update_id] = None
            while len(self._recent) > self.recent_updates:
                self._recent.popitem(last=False)
        return outcome

    async def _accept(self, envelope: Envelope) -> None:
        accepted = await self._publish(envelope)  # raises if Kafka did not acknowledge
        outcome = _OUTCOME.get()
        if outcome is not None:
            outcome.published.append(accepted)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        outcome = _OUTCOME.get()
        if outcome is not None:
            outcome.error = context.error
        log.warning(
            "telegram.update_failed",
            update_id=getattr(update, "update_id", None),
            error=_safe(context.error)
            if isinstance(context.error, TelegramError)
            else repr(context.error)[:300],
        )

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        edited = update.edited_message is not None
        text, attachments, thread = _content(message)
        if edited:
            thread["edited"] = "true"
            text = "[edited] " + text
        await self._accept(await self._envelope(update, message, text, attachments, thread))

    async def _on_contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        contact, user = message.contact, message.from_user
        phone = normalize_phone(contact.phone_number)
        own = (
            user is not None
            and contact.user_id == user.id
            and message.forward_origin is None
            and message.via_bot is None
        )
        if own and phone is not None:
            await self._store.link_identity(Channel.TELEGRAM, str(user.id), phone)
            log.info(
                "identity.linked",
                channel="telegram",
                telegram_user_id=user.id,
                phone=_masked(phone),
            )
            await self._say(context, message, LINKED, reply_markup=ReplyKeyboardRemove())
            return
        # Someone else's card, a forwarded one, or one typed in: a message, never a link.
        name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
        text = f"[shared a contact: {name}, {contact.phone_number}]"
        envelope = await self._envelope(update, message, text, [], {"contact_verified": "false"})
        await self._accept(envelope)

    async def _on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = message.from_user
        language = language_of(user.language_code if user else None)
        first = user.first_name if user and user.first_name else ""
        name = (" " if language == "en" else "，") + first if first else ""
        keyboard = ReplyKeyboardMarkup(
            [[KeyboardButton(SHARE_PHONE[language], request_contact=True)]],
            resize_keyboard=True,
            one_time_keyboard=True,
        )
        await self._say(context, message, GREETING, reply_markup=keyboard, name=name)
        log.info("telegram.greeted", chat_id=message.chat_id, language=language)

    async def _on_unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        log.info("telegram.unsupported", chat_id=message.chat_id, kind=_kind(message))
        await self._say(context, message, UNSUPPORTED)

    async def _on_ignored(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        log.info(
            "telegram.ignored", update_id=update.update_id, chat_type=chat.type if chat else None
        )

    async def _say(
        self, context, message: Message, texts: dict[str, str], reply_markup=None, **fields: str
    ) -> None:
        """The bot's own words: best effort, since losing a greeting loses no customer message."""
        user = message.from_user
        text = texts[language_of(user.language_code if user else None)].format(**fields)
        try:
            await context.bot.send_message(
                chat_id=message.chat_id, text=text, reply_markup=reply_markup
            )
        except TelegramError as exc:
            log.warning("telegram.say_failed", chat_id=message.chat_id, error=_safe(exc))

    async def _envelope(
        self,
        update: Update,
        message: Message,
        text: str,
        attachments: list[Attachment],
        thread: dict[str, str],
    ) -> Envelope:
        user, chat = message.from_user, message.chat
        edited = update.edited_message is not None
        # chat:message_id is what a webhook retry or a re-fetched update repeats; an edit is a
        # new message about the same one, told apart by its own update_id.
        channel_message_id = f"{chat.id}:{message.message_id}"
        if edited:
            channel_message_id += f":edit:{update.update_id}"
        thread.update(
            telegram_message_id=str(message.message_id), telegram_update_id=str(update.update_id)
        )
        if user is not None:
            thread["telegram_user_id"] = str(user.id)
            if user.username:
                thread["telegram_username"] = user.username
            if user.language_code:
                thread["language_code"] = user.language_code
            identity = await self._store.identity_for(Channel.TELEGRAM, str(user.id))
            if identity is not None:
                thread["verified_phone"] = identity["phone"]
        at = (message.edit_date if edited else None) or message.date
        return Envelope.new(
            channel=Channel.TELEGRAM,
            channel_message_id=channel_message_id,
            conversation_key=f"telegram:{chat.id}",
            sender=Sender(address=str(chat.id), name=user.full_name if user else None),
            text=text,
            thread=thread,
            attachments=attachments,
            received_at=at,
        )


def _content(message: Message) -> tuple[str, list[Attachment], dict[str, str]]:
    attachments: list[Attachment] = []
    thread: dict[str, str] = {}
    placeholder = ""
    if message.photo:
        photo = message.photo[-1]  # the largest size
        attachments.append(
            Attachment(
                name=f"photo-{photo.file_unique_id}.jpg",
                content_type="image/jpeg",
                size=photo.file_size or 0,
            )
        )
        thread["telegram_file_id"] = photo.file_id
        placeholder = "[photo]"
    elif message.document:
        doc = message.document
        name = doc.file_name or f"document-{doc.file_unique_id}"
        attachments.append(
            Attachment(
                name=name,
                content_type=doc.mime_type or "application/octet-stream",
                size=doc.file_size or 0,
            )
        )
        thread["telegram_file_id"] = doc.file_id
        placeholder = f"[document: {name}]"
    text = message.text or message.caption or placeholder
    return text, attachments, thread


def _kind(message: Message) -> str:
    effective = message.effective_attachment
    return (
        type(effective).__name__.lower()
        if effective is not None and not isinstance(effective, tuple)
        else "other"
    )


def _refuse(exc_class: type[web.HTTPException], reason: str) -> web.HTTPException:
    return exc_class(text=json.dumps({"error": reason}), content_type="application/json")


def _safe(exc: BaseException | None) -> str:
    # PTB's own messages never carry the token, except InvalidToken's from Bot.initialize.
    if isinstance(exc, InvalidToken):
        return "InvalidToken: the Bot API rejected TELEGRAM_BOT_TOKEN"
    return f"{type(exc).__name__}: {exc}"[:300]


def _refusal(exc: TelegramError) -> str:
    if isinstance(exc, InvalidToken):
        return "Telegram: the Bot API rejected TELEGRAM_BOT_TOKEN (getMe answered 401/404)"
    return f"Telegram refused the channel's set-up: {exc.message}"


def retry_after_seconds(exc: RetryAfter) -> float:
    # PTB 22 warns on reading retry_after unless PTB_TIMEDELTA opts into timedelta; take either.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# --- outbound --------------------------------------------------------------------------------


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_TEXT_UNITS) -> list[str]:
    """Pieces of at most `limit` UTF-16 units, broken at a newline or space where one is near."""
    parts: list[str] = []
    rest = text
    while utf16_units(rest) > limit:
        units = cut = 0
        for i, ch in enumerate(rest):
            units += 2 if ord(ch) > 0xFFFF else 1
            if units > limit:
                break
            cut = i + 1
        window = rest[:cut]
        # A line break in the second half of the window is the best cut, then a space.
        at = window.rfind("\n")
        if at < cut // 2:
            at = window.rfind(" ")
        if at >= cut // 2 and at > 0:
            parts.append(rest[:at])
            rest = rest[at + 1 :]
        else:
            parts.append(window)
            rest = rest[cut:]
    parts.append(rest)
    return [p for p in parts if p.strip()]


class TelegramSender:
    """Replies through the bot to the chat the conversation came from."""

    service_name = "Telegram Bot API"
    max_text_units = MAX_TEXT_UNITS
    attempts = 5  # sends of one piece while Telegram answers 429 with a short retry_after
    remembered = 1000  # replies whose sent pieces are remembered, so a retry resends none

    def __init__(
        self,
        bot: Bot,
        store: ConversationStore,
        *,
        max_retry_after: float = 60,
        sleep=asyncio.sleep,
    ):
        self.bot, self._store, self._max_retry_after, self._sleep = (
            bot,
            store,
            max_retry_after,
            sleep,
        )
        self._progress: OrderedDict[str, list[str]] = OrderedDict()
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Open the bot's connection pool and check the token (getMe); send() does it if needed."""
        async with self._starting:
            try:
                await self.bot.initialize()  # returns at once when already initialized
            except InvalidToken:
                raise RuntimeError(_refusal(InvalidToken(""))) from None

    async def stop(self) -> None:
        await self.bot.shutdown()

    async def send(self, out: Outbound) -> None:
        await self.start()
        try:
            chat_id = int(out.to)
        except ValueError:
            raise DeliveryFailed(f"not a Telegram chat id: {out.to[:40]!r}") from None
        parts = split_text(out.text, self.max_text_units)
        if not parts:
            raise DeliveryFailed("nothing to send: the reply is empty")
        sent = self._progress.setdefault(out.message_id, [])
        self._progress.move_to_end(out.message_id)
        while len(self._progress) > self.remembered:
            self._progress.popitem(last=False)
        for part in parts[len(sent) :]:
            message = await self._send_part(chat_id, part)
            chat_id = message.chat_id  # a migrated group answers from its new id
            sent.append(f"{message.chat_id}:{message.message_id}")
        await self._store.set_delivery_status(
            out.message_id,
            "sent",
            provider_message_id=sent[0],
            detail=f"{len(sent)} messages" if len(sent) > 1 else None,
        )
        self._progress.pop(out.message_id, None)
        log.info("telegram.sent", trace_id=out.trace_id, chat_id=chat_id, parts=len(sent))

    async def _send_part(self, chat_id: int, text: str) -> Message:
        for attempt in range(1, self.attempts + 1):
            try:
                return await self.bot.send_message(chat_id=chat_id, text=text)
            except RetryAfter as exc:
                wait = retry_after_seconds(exc)
                if wait > self._max_retry_after or attempt == self.attempts:
                    raise  # the sender service retries, then dead-letters
                log.warning(
                    "telegram.rate_limited", chat_id=chat_id, retry_after=wait, attempt=attempt
                )
                await self._sleep(wait)
            except ChatMigrated as exc:
                chat_id = exc.new_chat_id
            except Forbidden as exc:  # the user blocked the bot, or never started it
                raise DeliveryFailed(f"Telegram refused: {exc.message}") from exc
            except BadRequest as exc:  # chat not found, text refused: no retry helps
                raise DeliveryFailed(f"Telegram refused: {exc.message}") from exc
        raise AssertionError("unreachable")  # the last attempt returns or raises


# --- wiring ----------------------------------------------------------------------------------


def build_application(cfg: TelegramSettings) -> Application:
    assert cfg.bot_token is not None
    return (
        ApplicationBuilder()
        .token(cfg.bot_token.get_secret_value())
        .base_url(cfg.bot_url())
        .base_file_url(cfg.file_url())
        .updater(None)  # we fetch or receive updates ourselves, inside the router's loop
        .build()
    )


def build(context: ChannelContext) -> ChannelParts:
    cfg = load_settings()
    if cfg.bot_token is None:
        log.info("telegram.off", reason="TELEGRAM_BOT_TOKEN is not set")
        return ChannelParts()
    public_url = context.settings.public_url
    webhook_url = f"{public_url.rstrip('/')}{WEBHOOK_PATH}" if public_url else None
    secret = cfg.secret_token.get_secret_value() if cfg.secret_token else None
    if webhook_url and secret is None:
        raise ConfigError(
            [
                Problem(
                    "environment",
                    None,
                    "TELEGRAM_SECRET_TOKEN is required when SUPPORTROUTER_PUBLIC_URL is set "
                    "(the Telegram webhook is checked against it)",
                )
            ]
        )
    adapter = TelegramChannel(
        build_application(cfg),
        context.publish,
        context.store,
        webhook_url=webhook_url,
        secret_token=secret,
        poll_timeout=cfg.poll_timeout_seconds,
    )
    bot = Bot(
        cfg.bot_token.get_secret_value(), base_url=cfg.bot_url(), base_file_url=cfg.file_url()
    )
    sender = TelegramSender(bot, context.store, max_retry_after=cfg.max_retry_after_seconds)
    return ChannelParts(adapter=adapter, senders={"telegram": sender})
