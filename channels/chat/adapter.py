"""Website live chat: sessions, a websocket per customer, the embeddable widget.

A customer holds a session token and sees only the conversation under that token. The token
expires when not renewed for a while (the widget renews it while open: POST /chat/sessions/renew),
and never travels in a URL: the socket opens with a one-time ticket (POST /chat/sessions/ticket,
then /chat/ws?ticket=...), and is closed (4401) once its session has expired. Replies reach
the socket through this process's fan-out of support.outbound; the history, restored on every
(re)connect, comes from the store, so a reply sent while the customer was away is not lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from channels.base import ChannelContext, ChannelParts, Publish
from router.bus.fanout import TopicFanout
from router.bus.kafka import KafkaBus
from router.core.envelope import Channel, Envelope, Outbound, Sender
from router.core.http import BadJson, json_error, parse_json, read_json
from router.core.socket_auth import closed_when_invalid
from router.observability.metrics import REJECTED
from router.store.conversations import ConversationStore

log = structlog.get_logger("channels.chat.adapter")
STATIC = Path(__file__).parent / "static"
# A session request and a frame are flat objects; the room left is for extra fields, no more.
MAX_DEPTH = 8


def _frame(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "id": message["id"],
        "direction": message["direction"],
        "kind": message["kind"],
        "author": message["author"],
        "text": message["text"],
        "created_at": message["created_at"],
    }


class LiveChatChannel:
    name = "chat"
    max_name_chars = 100

    ticket_seconds = 30

    def __init__(
        self,
        publish: Publish,
        store: ConversationStore,
        bus: KafkaBus,
        max_text_chars: int = 4000,
        idle_seconds: float = 24 * 3600,
        check_seconds: float = 30.0,
    ):
        self._publish, self._store, self._max_text = publish, store, max_text_chars
        self._idle_seconds, self._check_seconds = idle_seconds, check_seconds
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self._fanout = TopicFanout(bus, bus.topics.outbound, self._deliver)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/chat/sessions", self.create_session)
        app.router.add_post("/chat/sessions/renew", self.renew_session)
        app.router.add_post("/chat/sessions/ticket", self.ticket)
        app.router.add_get("/chat/ws", self.socket)
        app.router.add_get("/chat/", self.page)
        app.router.add_get("/chat", self.page)
        app.router.add_get("/chat/widget.js", self.widget)

    async def start(self) -> None:
        await self._fanout.start()

    async def stop(self) -> None:
        await self._fanout.stop()
        sockets = [ws for group in self._sockets.values() for ws in group]
        self._sockets.clear()
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets),
            return_exceptions=True,
        )

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "chat.html")

    async def widget(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC / "widget.js", headers={"Content-Type": "application/javascript"}
        )

    async def create_session(self, request: web.Request) -> web.Response:
        name = None
        if request.can_read_body:
            try:
                # A name typed in a browser may end in half an emoji: cleaned, not refused.
                body = await read_json(request, max_depth=MAX_DEPTH, surrogates="replace")
            except web.HTTPClientError:
                REJECTED.labels(channel="chat", reason="bad_json").inc()
                raise
            name = body.get("name")
            if name is not None and (not isinstance(name, str) or len(name) > self.max_name_chars):
                raise json_error(
                    web.HTTPBadRequest,
                    f"name must be a string of at most {self.max_name_chars} characters",
                )
        token, _ = await self._store.new_chat_session(
            name.strip() if name else None, self._idle_seconds
        )
        return web.json_response({"session": token, "expires_in": self._idle_seconds}, status=201)

    async def _session_of(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        session = await self._store.chat_session(token) if token else None
        if session is None:
            REJECTED.labels(channel="chat", reason="unknown_session").inc()
            raise json_error(
                web.HTTPUnauthorized,
                "unknown or expired chat session (Authorization: Bearer <session>)",
            )
        return token, session

    async def renew_session(self, request: web.Request) -> web.Response:
        """A fresh token for the same conversation; the one presented stops working."""
        token, _ = await self._session_of(request)
        fresh = await self._store.renew_chat_session(token, self._idle_seconds)
        if fresh is None:  # renewed by another tab a moment ago
            raise json_error(web.HTTPUnauthorized, "unknown or expired chat session")
        return web.json_response({"session": fresh, "expires_in": self._idle_seconds})

    async def ticket(self, request: web.Request) -> web.Response:
        _, session = await self._session_of(request)
        ticket = await self._store.issue_ticket(
            "chat", session["conversation_key"], self.ticket_seconds
        )
        return web.json_response({"ticket": ticket, "expires_in": self.ticket_seconds}, status=201)

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        ticket = request.query.get("ticket", "")
        key = await self._store.redeem_ticket("chat", ticket) if ticket else None
        session = await self._store.chat_session_by_key(key) if key else None
        if session is None:
            REJECTED.labels(channel="chat", reason="unknown_session").inc()
            raise json_error(
                web.HTTPUnauthorized,
                "unknown or used ticket: open the socket with ?ticket= from "
                "POST /chat/sessions/ticket",
            )
        key, name = session["conversation_key"], session["name"]

        async def valid_until() -> datetime | None:
            live = await self._store.chat_session_by_key(key)
            return live["expires_at"] if live else None

        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self._sockets[key].add(ws)
        try:
            async with closed_when_invalid(ws, valid_until, self._check_seconds):
                history = [_frame(m) for m in await self._store.history(key)]
                await ws.send_json({"type": "history", "messages": history})
                async for msg in ws:
                    if msg.type == WSMsgType.TEXT:
                        await self._receive_safely(ws, key, name, msg.data)
                    elif msg.type == WSMsgType.BINARY:
                        await ws.send_json({"type": "error", "error": "send JSON text frames"})
        finally:
            self._sockets[key].discard(ws)
            if not self._sockets[key]:
                self._sockets.pop(key, None)
        return ws

    async def _receive_safely(
        self, ws: web.WebSocketResponse, key: str, name: str | None, data: str
    ) -> None:
        """One frame; a fault handling it is the frame's, never the socket's end."""
        try:
            await self._receive(ws, key, name, data)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            log.exception("chat.frame_failed", conversation_key=key)
            if not ws.closed:
                await ws.send_json({"type": "error", "error": "frame not handled; it was logged"})

    async def _receive(
        self, ws: web.WebSocketResponse, key: str, name: str | None, data: str
    ) -> None:
        try:
            frame = parse_json(data, max_depth=MAX_DEPTH, surrogates="replace")
        except BadJson as exc:
            REJECTED.labels(channel="chat", reason="bad_json").inc()
            await ws.send_json({"type": "error", "error": f"frame is not JSON we accept: {exc}"})
            return
        if not isinstance(frame, dict) or frame.get("type") != "message":
            await ws.send_json(
                {"type": "error", "error": 'expected {"type": "message", "text": ...}'}
            )
            return
        text, client_id = frame.get("text"), frame.get("id")
        if not isinstance(text, str) or not text.strip():
            await ws.send_json({"type": "error", "error": "text must be a non-empty string"})
            return
        if len(text) > self._max_text:
            REJECTED.labels(channel="chat", reason="too_long").inc()
            await ws.send_json(
                {"type": "error", "error": f"text is longer than {self._max_text} characters"}
            )
            return
        if client_id is not None and (
            not isinstance(client_id, str) or not 0 < len(client_id) <= 100
        ):
            await ws.send_json(
                {"type": "error", "error": "id must be a string of at most 100 characters"}
            )
            return
        # A client id makes a resend after a dropped connection the same message, not a second one.
        channel_message_id = f"{key}:{client_id or uuid.uuid4().hex}"
        envelope = Envelope.new(
            channel=Channel.CHAT,
            channel_message_id=channel_message_id,
            conversation_key=key,
            sender=Sender(address=key, name=name),
            text=text.strip(),
        )
        try:
            accepted = await self._publish(envelope)
        except Exception as exc:  # Kafka did not acknowledge: the customer is told to resend
            log.warning("chat.publish_failed", conversation_key=key, error=repr(exc)[:300])
            await ws.send_json(
                {
                    "type": "error",
                    "error": "message not accepted, please send it again",
                    "retry": True,
                    "client_id": client_id,
                }
            )
            return
        await ws.send_json(
            {
                "type": "accepted",
                "id": accepted.message_id,
                "client_id": client_id,
                "text": accepted.text,
                "redactions": accepted.redactions,
            }
        )

    async def _deliver(self, record: ConsumerRecord) -> None:
        if not self._sockets:  # no customer's chat open here: nothing to decode for
            return
        try:
            out = Outbound.from_bytes(record.value)
        except ValidationError:
            return  # the sender's consumer dead-letters what does not parse
        if out.channel != Channel.CHAT:
            return
        sockets = list(self._sockets.get(out.conversation_key, ()))
        frame = {
            "type": "message",
            "id": out.message_id,
            "direction": "out",
            "kind": out.kind,
            "author": out.author,
            "text": out.text,
            "created_at": out.created_at.isoformat(),
        }
        for ws in sockets:
            if not ws.closed:
                await ws.send_json(frame)
        log.info("reply.delivered", trace_id=out.trace_id, channel="chat", sockets=len(sockets))


def build(context: ChannelContext) -> ChannelParts:
    # Chat replies are delivered by the gateway holding the socket, so there is no sender.
    settings = context.settings
    adapter = LiveChatChannel(
        context.publish,
        context.store,
        context.bus,
        settings.max_chat_text_chars,
        idle_seconds=settings.chat_session_idle_seconds,
        check_seconds=settings.socket_auth_check_seconds,
    )
    return ChannelParts(adapter=adapter)
