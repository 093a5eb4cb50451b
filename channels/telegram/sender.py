"""Telegram outbound: replies through the bot to the chat the conversation came from."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from telegram import Bot, Message
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter

from channels.base import DeliveryFailed
from channels.base.text_split import WORD_BREAKS, split_units
from channels.telegram.errors import refusal, retry_after_seconds
from router.core.envelope import Outbound
from router.store.conversations import ConversationStore

log = structlog.get_logger("channels.telegram.sender")

# Telegram's limit is 4096 characters "after entities parsing", counted in UTF-16 code units
# (an emoji outside the BMP is two), the unit its entity offsets use.
MAX_TEXT_UNITS = 4096


def split_text(text: str, limit: int = MAX_TEXT_UNITS) -> list[str]:
    """Pieces of at most `limit` UTF-16 units, broken at a newline or space where one is near."""
    return split_units(text, limit, breaks=WORD_BREAKS)


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
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
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
                raise RuntimeError(refusal(InvalidToken(""))) from None

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
