"""Agents' credentials: a password (argon2id-hashed, see router.store.credentials) and the bearer
tokens issued at login, stored only as their SHA-256. Setting a password revokes every token
the agent holds; hashing runs in a thread, never on the event loop."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from router.core.envelope import now
from router.store import credentials
from router.store.database import Repository, insert_for
from router.store.rows import utc
from router.store.schema import agent_credentials, agent_tokens


class AgentAccounts(Repository):
    async def set_password(self, username: str, password: str) -> None:
        """A new password revokes the agent's tokens. Setting the one already stored changes
        nothing: every start sets the configured admin password again."""
        stored = await self._stored_hash(username)
        if stored is not None:
            same, stale = await asyncio.to_thread(credentials.verify_password, password, stored)
            if same and not stale:
                return
        hashed = await asyncio.to_thread(credentials.hash_password, password)
        # An upsert: services started together each set the configured admin password at once.
        insert = insert_for(self.engine.dialect.name)(agent_credentials)
        async with self.write() as conn:
            await conn.execute(
                insert.values(username=username, password_hash=hashed).on_conflict_do_update(
                    index_elements=[agent_credentials.c.username],
                    set_={"password_hash": hashed},
                )
            )
            await conn.execute(agent_tokens.delete().where(agent_tokens.c.username == username))

    async def add_password(self, username: str, password: str) -> bool:
        """Set a password only where there is none; False: one was there (perhaps set a moment
        ago by another service starting on the same database)."""
        hashed = await asyncio.to_thread(credentials.hash_password, password)
        insert = insert_for(self.engine.dialect.name)(agent_credentials)
        async with self.write() as conn:
            added = await conn.execute(
                insert.values(username=username, password_hash=hashed).on_conflict_do_nothing()
            )
        return added.rowcount == 1

    async def has_password(self, username: str) -> bool:
        return await self._stored_hash(username) is not None

    async def _stored_hash(self, username: str) -> str | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(agent_credentials.c.password_hash).where(
                        agent_credentials.c.username == username
                    )
                )
            ).first()
        return row[0] if row else None

    async def check_password(self, username: str, password: str) -> bool:
        """The same hashing work whether or not `username` has a password. A hash made with
        older parameters (or scrypt) is replaced after it matched."""
        stored = await self._stored_hash(username)
        matches, stale = await asyncio.to_thread(credentials.verify_password, password, stored)
        if matches and stale:
            fresh = await asyncio.to_thread(credentials.hash_password, password)
            async with self.write() as conn:
                # Only if unchanged meanwhile: a password set since is never overwritten.
                await conn.execute(
                    agent_credentials.update()
                    .where(
                        agent_credentials.c.username == username,
                        agent_credentials.c.password_hash == stored,
                    )
                    .values(password_hash=fresh)
                )
        return matches

    async def issue_token(self, username: str, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        async with self.write() as conn:
            await conn.execute(
                agent_tokens.delete().where(agent_tokens.c.expires_at < now())
            )  # expired ones are worth nothing: keep the table small
            await conn.execute(
                agent_tokens.insert().values(
                    token_hash=credentials.token_hash(token),
                    username=username,
                    expires_at=now() + timedelta(seconds=ttl_seconds),
                )
            )
        return token

    async def token_user(self, token: str) -> str | None:
        found = await self.token_by_hash(credentials.token_hash(token))
        return found[0] if found else None

    async def token_by_hash(self, token_hash: str) -> tuple[str, datetime] | None:
        """(username, expires_at) of a token still valid, else None (unknown, revoked, expired)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(agent_tokens.c.username, agent_tokens.c.expires_at).where(
                        agent_tokens.c.token_hash == token_hash
                    )
                )
            ).first()
        if row is None or utc(row[1]) <= now():
            return None
        return row[0], utc(row[1])

    async def revoke_token(self, token: str) -> bool:
        async with self.write() as conn:
            result = await conn.execute(
                agent_tokens.delete().where(
                    agent_tokens.c.token_hash == credentials.token_hash(token)
                )
            )
        return bool(result.rowcount)
