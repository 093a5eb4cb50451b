"""Agents' credentials: a password (scrypt-hashed) and the bearer tokens issued at login,
stored only as their SHA-256."""

from __future__ import annotations

import secrets
from datetime import timedelta

import sqlalchemy as sa

from router.core.envelope import now
from router.store import credentials
from router.store.database import Repository
from router.store.rows import utc
from router.store.schema import agent_credentials, agent_tokens


class AgentAccounts(Repository):
    async def set_password(self, username: str, password: str) -> None:
        hashed = credentials.hash_password(password)
        async with self.engine.begin() as conn:
            await conn.execute(
                agent_credentials.delete().where(agent_credentials.c.username == username)
            )
            await conn.execute(
                agent_credentials.insert().values(username=username, password_hash=hashed)
            )

    async def has_password(self, username: str) -> bool:
        async with self.engine.connect() as conn:
            row = await conn.execute(
                sa.select(agent_credentials.c.username).where(
                    agent_credentials.c.username == username
                )
            )
            return row.first() is not None

    async def check_password(self, username: str, password: str) -> bool:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(agent_credentials.c.password_hash).where(
                        agent_credentials.c.username == username
                    )
                )
            ).first()
        return row is not None and credentials.check_password(password, row[0])

    async def issue_token(self, username: str, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(
                agent_tokens.insert().values(
                    token_hash=credentials.token_hash(token),
                    username=username,
                    expires_at=now() + timedelta(seconds=ttl_seconds),
                )
            )
        return token

    async def token_user(self, token: str) -> str | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(agent_tokens.c.username, agent_tokens.c.expires_at).where(
                        agent_tokens.c.token_hash == credentials.token_hash(token)
                    )
                )
            ).first()
        if row is None or utc(row[1]) < now():
            return None
        return row[0]
