"""Web chat sessions: a bearer token (stored as its SHA-256) for one conversation key, valid
until it is not renewed for a while, and the transcript under that key."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from router.classify.redact import redact
from router.core.envelope import now
from router.store.credentials import token_hash
from router.store.database import Repository
from router.store.rows import message_dict, utc
from router.store.schema import chat_sessions, conversations, messages
from router.store.storable import storable

# A session made before sessions expired lasts this long from its creation (or its renewal).
LEGACY_IDLE = timedelta(hours=24)


class ChatSessions(Repository):
    async def new_chat_session(
        self, name: str | None, idle_seconds: float = LEGACY_IDLE.total_seconds()
    ) -> tuple[str, str]:
        """A new session; its name is the customer's to choose, so a secret in it is masked
        before it is stored (and it reaches every message's envelope as the sender's name)."""
        name = redact(name).text if name else name
        token = secrets.token_urlsafe(32)
        key = f"chat:{uuid.uuid4().hex}"
        row = storable(
            chat_sessions, {"token_hash": token_hash(token), "conversation_key": key, "name": name}
        )
        at = now()
        async with self.write() as conn:
            await conn.execute(
                chat_sessions.insert().values(
                    **row, created_at=at, expires_at=at + timedelta(seconds=idle_seconds)
                )
            )
        return token, key

    async def chat_session(self, token: str) -> dict[str, Any] | None:
        """The session under `token` (conversation_key, name, expires_at) unless expired."""
        return await self._live_session(chat_sessions.c.token_hash == token_hash(token))

    async def chat_session_by_key(self, conversation_key: str) -> dict[str, Any] | None:
        return await self._live_session(chat_sessions.c.conversation_key == conversation_key)

    async def _live_session(self, where: sa.ColumnElement[bool]) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(
                            chat_sessions.c.conversation_key,
                            chat_sessions.c.name,
                            chat_sessions.c.created_at,
                            chat_sessions.c.expires_at,
                        ).where(where)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        expires_at = utc(row["expires_at"]) or utc(row["created_at"]) + LEGACY_IDLE
        if expires_at <= now():
            return None
        return {
            "conversation_key": row["conversation_key"],
            "name": row["name"],
            "expires_at": expires_at,
        }

    async def renew_chat_session(self, token: str, idle_seconds: float) -> str | None:
        """A fresh token for the session under `token` (which stops working), valid for
        `idle_seconds` from now; None if `token` is unknown or expired."""
        session = await self.chat_session(token)
        if session is None:
            return None
        fresh = secrets.token_urlsafe(32)
        async with self.write() as conn:
            result = await conn.execute(
                chat_sessions.update()
                .where(chat_sessions.c.token_hash == token_hash(token))
                .values(
                    token_hash=token_hash(fresh),
                    expires_at=now() + timedelta(seconds=idle_seconds),
                )
            )
        return fresh if result.rowcount else None

    async def history(self, conversation_key: str) -> list[dict[str, Any]]:
        """Every message of every conversation under one key, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(messages)
                        .join(conversations, conversations.c.id == messages.c.conversation_id)
                        .where(conversations.c.conversation_key == conversation_key)
                        .order_by(messages.c.seq)
                    )
                )
                .mappings()
                .all()
            )
        return [message_dict(r) for r in rows]
