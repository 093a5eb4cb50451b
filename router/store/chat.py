"""Web chat sessions: a bearer token (stored as its SHA-256) for one conversation key, and
the transcript under that key."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import sqlalchemy as sa

from router.classify.redact import redact
from router.core.envelope import now
from router.store.credentials import token_hash
from router.store.database import Repository
from router.store.rows import message_dict
from router.store.schema import chat_sessions, conversations, messages
from router.store.storable import storable


class ChatSessions(Repository):
    async def new_chat_session(self, name: str | None) -> tuple[str, str]:
        """A new session; its name is the customer's to choose, so a secret in it is masked
        before it is stored (and it reaches every message's envelope as the sender's name)."""
        name = redact(name).text if name else name
        token = secrets.token_urlsafe(32)
        key = f"chat:{uuid.uuid4().hex}"
        row = storable(
            chat_sessions, {"token_hash": token_hash(token), "conversation_key": key, "name": name}
        )
        async with self.engine.begin() as conn:
            await conn.execute(chat_sessions.insert().values(**row, created_at=now()))
        return token, key

    async def chat_session(self, token: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(chat_sessions.c.conversation_key, chat_sessions.c.name).where(
                            chat_sessions.c.token_hash == token_hash(token)
                        )
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

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
