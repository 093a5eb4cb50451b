"""The timers of conversations: ladder steps whose timeout passed, and first responses later than
their SLA. Each is found in dispatch order, then changed in its own transaction under FOR UPDATE
SKIP LOCKED and only while still due, so several dispatchers never act on one twice. What
happens to a conversation then is decided in `router.services.sla`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.store.database import Repository
from router.store.schema import DISPATCH_ORDER, conversations


class Timers(Repository):
    async def ladder_steps_due(self, at: datetime) -> list[str]:
        """Waiting conversations whose ladder step timed out by `at`, in dispatch order."""
        return await self._due(_ladder_step_due(at))

    async def breaches_due(self, at: datetime) -> list[str]:
        """Open conversations without a first response, due by `at`, not yet reported."""
        return await self._due(_breach_due(at))

    def ladder_step_due(
        self, conversation_id: str, at: datetime
    ) -> AbstractAsyncContextManager[Due]:
        """A transaction on the conversation, locked if its ladder step is still due."""
        return self._locked(conversation_id, _ladder_step_due(at))

    def breach_due(self, conversation_id: str, at: datetime) -> AbstractAsyncContextManager[Due]:
        """A transaction on the conversation, locked if its breach is still unreported."""
        return self._locked(conversation_id, _breach_due(at))

    async def _due(self, conditions: tuple[Any, ...]) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(conversations.c.id).where(*conditions).order_by(*DISPATCH_ORDER)
            )
            return list(rows.scalars())

    @asynccontextmanager
    async def _locked(
        self, conversation_id: str, conditions: tuple[Any, ...]
    ) -> AsyncIterator[Due]:
        async with self.write() as conn:
            conv = (
                (
                    await conn.execute(
                        sa.select(conversations)
                        .where(conversations.c.id == conversation_id, *conditions)
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .first()
            )
            yield Due(conn, conv)


class Due:
    """A conversation whose timer is due, locked in its transaction; `conversation` is None when
    it no longer is, or another dispatcher holds it."""

    def __init__(self, conn: AsyncConnection, conversation: Any):
        self._conn, self.conversation = conn, conversation

    async def update(self, **values: Any) -> None:
        """Change these columns of the conversation."""
        await self._conn.execute(
            conversations.update()
            .where(conversations.c.id == self.conversation["id"])
            .values(**values)
        )


def _ladder_step_due(at: datetime) -> tuple[Any, ...]:
    return (conversations.c.status == "waiting", conversations.c.step_due_at <= at)


def _breach_due(at: datetime) -> tuple[Any, ...]:
    return (
        conversations.c.status != "resolved",
        conversations.c.first_response_at.is_(None),
        conversations.c.sla_breached_at.is_(None),
        conversations.c.sla_due_at <= at,
    )
