"""Telegram updates into envelopes: the Application's handlers, and what handling one update did.

Text, photos and documents in a private chat become envelopes, published before the update
counts as handled; /start and /help are greeted; anything else gets a short reply.

A Telegram user gets a verified phone only by sharing their own contact through the contact
button: Telegram then sets contact.user_id to the sender's own id. Anything else (a forwarded
card, someone else's number) is recorded as a message and never linked.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass, field

import structlog
from telegram import (
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from channels.base import Publish
from channels.telegram.errors import safe_error
from channels.telegram.texts import GREETING, LINKED, SHARE_PHONE, UNSUPPORTED, language_of
from router.core.envelope import Attachment, Channel, Envelope, Sender
from router.store.conversations import ConversationStore

log = structlog.get_logger("channels.telegram.handlers")


def normalize_phone(raw: str) -> str | None:
    """Telegram sends a contact's number in international form, usually without the plus."""
    number = re.sub(r"[\s\-().]", "", raw or "")
    if number.startswith("00"):
        number = number[2:]
    number = number.removeprefix("+")
    return f"+{number}" if re.fullmatch(r"\d{6,15}", number) else None


def _masked(phone: str) -> str:
    return "*" * max(len(phone) - 4, 0) + phone[-4:]


# Errors an update's own content causes (no chat, a field of the wrong type, text UTF-8 cannot
# carry): handling it again fails again, so it is acknowledged and logged once, not retried.
# Kafka, the journal and the store fail otherwise (KafkaError, OSError, database errors).
POISON = (ValueError, TypeError, AttributeError, LookupError, AssertionError)


@dataclass
class Outcome:
    """What handling one update did; the webhook and the poller read it after process_update."""

    published: list[Envelope] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def poisoned(self) -> bool:
        return isinstance(self.error, POISON)


# process_update awaits blocking handlers and error handlers in the caller's task, so each
# webhook request or poll step sees its own outcome here, however many run at once.
_OUTCOME: ContextVar[Outcome | None] = ContextVar("telegram_update_outcome", default=None)


class UpdateHandlers:
    """The handlers an Application runs for each update; `process` runs one and says how it went."""

    def __init__(self, publish: Publish, store: ConversationStore):
        self._publish, self._store = publish, store

    def add_to(self, app: Application) -> None:
        private = filters.ChatType.PRIVATE
        new = filters.UpdateType.MESSAGE
        content = filters.TEXT | filters.PHOTO | filters.Document.ALL
        app.add_handler(CommandHandler(["start", "help"], self._on_start, filters=private & new))
        app.add_handler(MessageHandler(private & new & filters.CONTACT, self._on_contact))
        app.add_handler(
            MessageHandler(private & filters.UpdateType.MESSAGES & content, self._on_message)
        )
        app.add_handler(MessageHandler(private & new, self._on_unsupported))
        app.add_handler(TypeHandler(Update, self._on_ignored))
        app.add_error_handler(self._on_error)

    async def process(self, app: Application, update: Update) -> Outcome:
        outcome = Outcome()
        token = _OUTCOME.set(outcome)
        try:
            await app.process_update(update)
        except POISON as exc:  # raised by a handler's filters, before any handler ran
            outcome.error = exc
        finally:
            _OUTCOME.reset(token)
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
            error=safe_error(context.error)
            if isinstance(context.error, TelegramError)
            else repr(context.error)[:300],
        )

    # The message handlers' filters admit only updates with a message (and, for contacts, a
    # contact), so the asserts below hold.

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        edited = update.edited_message is not None
        text, attachments, thread = _content(message)
        if edited:
            thread["edited"] = "true"
            text = "[edited] " + text
        await self._accept(await self._envelope(update, message, text, attachments, thread))

    async def _on_contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.contact is not None
        contact, user = message.contact, message.from_user
        phone = normalize_phone(contact.phone_number)
        own = (
            user is not None
            and contact.user_id == user.id
            and message.forward_origin is None
            and message.via_bot is None
        )
        if own and phone is not None:
            assert user is not None  # `own` says so
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
        assert message is not None
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
        assert message is not None
        log.info("telegram.unsupported", chat_id=message.chat_id, kind=_kind(message))
        await self._say(context, message, UNSUPPORTED)

    async def _on_ignored(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        log.info(
            "telegram.ignored", update_id=update.update_id, chat_type=chat.type if chat else None
        )

    async def _say(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        message: Message,
        texts: dict[str, str],
        reply_markup: ReplyKeyboardMarkup | ReplyKeyboardRemove | None = None,
        **fields: str,
    ) -> None:
        """The bot's own words: best effort, since losing a greeting loses no customer message."""
        user = message.from_user
        text = texts[language_of(user.language_code if user else None)].format(**fields)
        try:
            await context.bot.send_message(
                chat_id=message.chat_id, text=text, reply_markup=reply_markup
            )
        except TelegramError as exc:
            log.warning("telegram.say_failed", chat_id=message.chat_id, error=safe_error(exc))

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
