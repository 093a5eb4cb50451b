"""An in-process stand-in for the Telegram Bot API, reached by python-telegram-bot over HTTP.

It serves /bot<token>/<method> for the methods the channel uses (getMe, getUpdates, setWebhook,
deleteWebhook, getWebhookInfo, sendMessage) with the JSON shapes Telegram answers, keeps every
call, and can be told to fail the next calls of a method (a 429 with parameters.retry_after, a
403 from a blocked chat). Builders at the bottom make Update JSON as Telegram sends it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {
    "id": 7000000001,
    "is_bot": True,
    "first_name": "Wallet Support",
    "username": "wallet_support_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass
class Call:
    method: str
    params: dict[str, str]  # as sent: form fields, non-strings JSON-encoded (PTB's encoding)
    at: float = field(default_factory=time.monotonic)
    status: int | None = None  # what the stand-in answered

    def json(self, name: str) -> Any:
        return json.loads(self.params[name]) if name in self.params else None


class BotApiStandIn:
    def __init__(self, token: str = "123456:TEST-token_for-the-stand-in"):
        self.token = token
        self.calls: list[Call] = []
        self.webhook: dict[str, Any] | None = None
        self.chats: dict[int, dict[str, Any]] = {}
        self.blocked: set[int] = set()
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(700000001)
        self._message_ids = itertools.count(5001)
        self._failures: dict[str, list[tuple[int, dict[str, Any]] | None]] = {}
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        """What SUPPORTROUTER_TELEGRAM_API_BASE_URL points at: the server root."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> BotApiStandIn:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._closing = True
        async with self._changed:
            self._changed.notify_all()  # long polls answer now
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> BotApiStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- what tests tell it ----------------------------------------------------------------

    async def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates; it gets the next update_id unless it has one."""
        update.setdefault("update_id", next(self._update_ids))
        self._remember_chat(update)
        async with self._changed:
            self._updates.append(update)
            self._changed.notify_all()
        return update

    def next_update_id(self) -> int:
        return next(self._update_ids)

    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        parameters: dict[str, Any] | None = None,
        times: int = 1,
        after: int = 0,
    ) -> None:
        """Answer the next `times` calls of `method` with this error, once `after` more succeeded."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        self._failures.setdefault(method, []).extend([None] * after + [(status, body)] * times)

    def rate_limit_next(self, method: str, retry_after: int, times: int = 1) -> None:
        self.fail_next(
            method,
            429,
            f"Too Many Requests: retry after {retry_after}",
            {"retry_after": retry_after},
            times,
        )

    def add_chat(self, chat: dict[str, Any]) -> None:
        self.chats[chat["id"]] = chat

    def delivering(self, update: dict[str, Any]) -> dict[str, Any]:
        """An update this Telegram is about to send by webhook: it knows the chat from now on."""
        self._remember_chat(update)
        return update

    # --- what tests read -------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def sent_to(self, chat_id: int) -> list[str]:
        return [
            c.params["text"]
            for c in self.calls_to("sendMessage")
            if int(c.params["chat_id"]) == chat_id
        ]

    async def wait_for(self, predicate, timeout: float = 20) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    # --- the API ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params = {
                k: v if isinstance(v, str) else json.dumps(v)
                for k, v in (await request.json()).items()
            }
        else:
            params = {k: str(v) for k, v in (await request.post()).items()}
        params.update(request.query)
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        call = Call(method, params)
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        failures = self._failures.get(method)
        failure = failures.pop(0) if failures else None
        handler = getattr(self, f"_m_{method}", None)
        if failure is not None:
            response = web.json_response(failure[1], status=failure[0])
        elif handler is None:
            response = _error(404, "Not Found: method not found")
        else:
            response = await handler(call)
        call.status = response.status
        return response

    async def _m_getMe(self, call: Call) -> web.Response:
        return _ok(BOT_USER)

    async def _m_getUpdates(self, call: Call) -> web.Response:
        if self.webhook is not None:
            return _error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            )
        offset = int(call.params.get("offset", 0) or 0)
        timeout = float(call.params.get("timeout", 0) or 0)
        limit = int(call.params.get("limit", 100) or 100)
        async with self._changed:
            # An offset confirms every update before it: Telegram forgets them.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if not self._updates and timeout and not self._closing:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._updates or self._closing), timeout
                    )
                except TimeoutError:
                    pass
            return _ok(self._updates[:limit])

    async def _m_setWebhook(self, call: Call) -> web.Response:
        url = call.params.get("url", "")
        if not url:
            self.webhook = None
            return _ok(True, "Webhook was deleted")
        if not url.startswith("https://"):
            return _error(
                400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
            )
        self.webhook = {
            "url": url,
            "secret_token": call.params.get("secret_token"),
            "allowed_updates": call.json("allowed_updates"),
        }
        return _ok(True, "Webhook was set")

    async def _m_deleteWebhook(self, call: Call) -> web.Response:
        existed, self.webhook = self.webhook is not None, None
        return _ok(True, "Webhook was deleted" if existed else "Webhook is already deleted")

    async def _m_getWebhookInfo(self, call: Call) -> web.Response:
        info = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook and self.webhook["allowed_updates"]:
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return _ok(info)

    async def _m_sendMessage(self, call: Call) -> web.Response:
        try:
            chat_id = int(call.params["chat_id"])
        except (KeyError, ValueError):
            return _error(400, "Bad Request: chat_id is empty")
        text = call.params.get("text", "")
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if chat_id not in self.chats:
            return _error(400, "Bad Request: chat not found")
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return _error(400, "Bad Request: message is too long")
        return _ok(
            {
                "message_id": next(self._message_ids),
                "from": BOT_USER,
                "chat": self.chats[chat_id],
                "date": int(time.time()),
                "text": text,
            }
        )

    def _remember_chat(self, update: dict[str, Any]) -> None:
        for key in ("message", "edited_message"):
            if isinstance(update.get(key), dict) and isinstance(update[key].get("chat"), dict):
                self.add_chat(update[key]["chat"])


def _ok(result: Any, description: str | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return web.json_response(body)


def _error(status: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": status, "description": description}, status=status
    )


# --- Update JSON as Telegram sends it ----------------------------------------------------------

_message_ids = itertools.count(101)
_update_ids = itertools.count(800000001)


def _update(kind: str, body: dict[str, Any], update_id: int | None) -> dict[str, Any]:
    return {"update_id": update_id if update_id is not None else next(_update_ids), kind: body}


def user(
    user_id: int = 424242,
    first_name: str = "Mei",
    last_name: str | None = "Chen",
    username: str | None = "meichen",
    language_code: str | None = "en",
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name:
        out["last_name"] = last_name
    if username:
        out["username"] = username
    if language_code:
        out["language_code"] = language_code
    return out


def private_chat(sender: dict[str, Any]) -> dict[str, Any]:
    chat = {"id": sender["id"], "type": "private", "first_name": sender["first_name"]}
    for key in ("last_name", "username"):
        if key in sender:
            chat[key] = sender[key]
    return chat


def message(
    sender: dict[str, Any] | None = None,
    *,
    message_id: int | None = None,
    date: int | None = None,
    chat: dict[str, Any] | None = None,
    **content: Any,
) -> dict[str, Any]:
    sender = sender or user()
    return {
        "message_id": message_id if message_id is not None else next(_message_ids),
        "from": sender,
        "chat": chat or private_chat(sender),
        "date": date or int(time.time()),
        **content,
    }


def text_update(
    text: str, sender: dict[str, Any] | None = None, *, update_id: int | None = None, **fields: Any
) -> dict[str, Any]:
    update = _update("message", message(sender, text=text, **fields), update_id)
    if text.startswith("/"):
        command = text.split()[0]
        update["message"]["entities"] = [
            {"type": "bot_command", "offset": 0, "length": len(command)}
        ]
    return update


def edited_update(
    original: dict[str, Any], new_text: str, *, update_id: int | None = None
) -> dict[str, Any]:
    edited = {
        **original["message"],
        "text": new_text,
        "edit_date": original["message"]["date"] + 30,
    }
    return _update("edited_message", edited, update_id)


def photo_update(
    caption: str | None = None,
    sender: dict[str, Any] | None = None,
    *,
    update_id: int | None = None,
) -> dict[str, Any]:
    sizes = [
        {
            "file_id": "AgACAgQAAxkBAAIBsmall",
            "file_unique_id": "AQADsmall",
            "width": 90,
            "height": 67,
            "file_size": 1311,
        },
        {
            "file_id": "AgACAgQAAxkBAAIBlarge",
            "file_unique_id": "AQADlarge",
            "width": 1280,
            "height": 960,
            "file_size": 98211,
        },
    ]
    content: dict[str, Any] = {"photo": sizes}
    if caption:
        content["caption"] = caption
    return _update("message", message(sender, **content), update_id)


def document_update(
    file_name: str,
    mime_type: str,
    file_size: int,
    caption: str | None = None,
    sender: dict[str, Any] | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "document": {
            "file_id": "BQACAgQAAxkBAAIBdoc",
            "file_unique_id": "AgADdoc",
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": file_size,
        }
    }
    if caption:
        content["caption"] = caption
    return _update("message", message(sender, **content), None)


def contact_update(
    sender: dict[str, Any],
    phone_number: str,
    contact_user_id: int | None,
    first_name: str = "Mei",
    forwarded_from: dict[str, Any] | None = None,
) -> dict[str, Any]:
    contact: dict[str, Any] = {"phone_number": phone_number, "first_name": first_name}
    if contact_user_id is not None:
        contact["user_id"] = contact_user_id
    content: dict[str, Any] = {"contact": contact}
    if forwarded_from is not None:
        content["forward_origin"] = {
            "type": "user",
            "date": int(time.time()) - 3600,
            "sender_user": forwarded_from,
        }
    return _update("message", message(sender, **content), None)


def sticker_update(sender: dict[str, Any] | None = None) -> dict[str, Any]:
    return _update(
        "message",
        message(
            sender,
            sticker={
                "file_id": "CAACAgIAAxkBAAIBstk",
                "file_unique_id": "AgADstk",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "\U0001f44d",
            },
        ),
        None,
    )
