"""One-time tickets that open a websocket: the socket's URL (which proxies and access logs
keep) carries one of these, never a long-lived token. Stored as their SHA-256."""

from __future__ import annotations

import secrets
from datetime import timedelta

import sqlalchemy as sa

from router.core.envelope import now
from router.store.credentials import token_hash
from router.store.database import Repository
from router.store.rows import utc
from router.store.schema import socket_tickets


class SocketTickets(Repository):
    async def issue_ticket(self, kind: str, subject: str, ttl_seconds: float) -> str:
        ticket = secrets.token_urlsafe(24)
        async with self.write() as conn:
            await conn.execute(socket_tickets.delete().where(socket_tickets.c.expires_at < now()))
            await conn.execute(
                socket_tickets.insert().values(
                    ticket_hash=token_hash(ticket),
                    kind=kind,
                    subject=subject,
                    expires_at=now() + timedelta(seconds=ttl_seconds),
                )
            )
        return ticket

    async def redeem_ticket(self, kind: str, ticket: str) -> str | None:
        """The ticket's subject, once: the ticket is gone after this, whatever the answer."""
        where = socket_tickets.c.ticket_hash == token_hash(ticket)
        async with self.write() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        socket_tickets.c.kind, socket_tickets.c.subject, socket_tickets.c.expires_at
                    ).where(where)
                )
            ).first()
            if row is None:
                return None
            # Of two redeeming at once, only the one whose delete removed the row wins.
            if not (await conn.execute(socket_tickets.delete().where(where))).rowcount:
                return None
        if row[0] != kind or utc(row[2]) <= now():
            return None
        return row[1]
