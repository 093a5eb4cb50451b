"""The protective action's outbox: each request to the wallet's backend (freeze, confirm, lift) is
a row, written once per case and action, before anything is sent; router/services/protect.py
sends what is due and records the answer. A restart finds the rows still pending and sends them.
Every step goes to the case's audit trail."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from router.core.envelope import now
from router.store.cases import ROUTER, add_event
from router.store.database import Repository
from router.store.rows import jsonable
from router.store.schema import protect_requests
from router.store.storable import clean, storable

# The audit entry of each request written: the router asks for a freeze; an agent confirms or lifts.
_EVENTS = {"freeze": "protect.requested", "confirm": "protect.confirmed", "lift": "protect.lifted"}


def idempotency_key(case_id: str, action: str) -> str:
    return f"case-{case_id}-{action}"


class ProtectOutbox(Repository):
    async def queue(
        self, case_id: str, action: str, body: dict[str, Any], by: str, state: str = "pending"
    ) -> bool:
        """Write the request (once per case and action) and its audit entry; False if it was
        written before. State `not_configured`: kept to say so, never sent."""
        at = now()
        key = idempotency_key(case_id, action)
        row = storable(
            protect_requests,
            {
                "case_id": case_id,
                "action": action,
                "idempotency_key": key,
                "body": body,
                "state": state,
                "attempts": 0,
                "next_attempt_at": at,
                "created_at": at,
            },
        )
        try:
            async with self.write() as conn:
                found = (
                    await conn.execute(
                        sa.select(protect_requests.c.seq).where(
                            protect_requests.c.idempotency_key == key
                        )
                    )
                ).first()
                if found is not None:
                    return False
                await conn.execute(protect_requests.insert().values(**row))
                await add_event(
                    conn,
                    case_id,
                    _EVENTS[action] if state == "pending" else f"protect.{state}",
                    by,
                    at,
                    detail={"action": action, "idempotency_key": key},
                )
        except IntegrityError:  # another dispatcher wrote it at the same moment
            return False
        return True

    async def note(
        self, case_id: str, kind: str, by: str = ROUTER, detail: dict[str, Any] | None = None
    ) -> None:
        """An entry in the case's audit trail (told the customer, not configured ...)."""
        async with self.write() as conn:
            await add_event(conn, case_id, kind, by, now(), detail=detail)

    async def take_due(self, at: datetime, lease: timedelta, limit: int = 20) -> list[dict]:
        """Pending requests due now, each counted as one more attempt and held for `lease`
        (another process skips them until then)."""
        async with self.write() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(protect_requests)
                        .where(
                            protect_requests.c.state == "pending",
                            protect_requests.c.next_attempt_at <= at,
                        )
                        .order_by(protect_requests.c.next_attempt_at, protect_requests.c.seq)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .all()
            )
            taken = []
            for row in rows:
                await conn.execute(
                    protect_requests.update()
                    .where(protect_requests.c.seq == row["seq"])
                    .values(attempts=row["attempts"] + 1, next_attempt_at=at + lease)
                )
                taken.append({**dict(row), "attempts": row["attempts"] + 1})
        return taken

    async def answered(self, seq: int, status: int, answer: Any) -> dict[str, Any] | None:
        """The backend answered: recorded, with the audit entry; the request as it is now."""
        at = now()
        async with self.write() as conn:
            updated = await conn.execute(
                protect_requests.update()
                .where(protect_requests.c.seq == seq, protect_requests.c.state == "pending")
                .values(
                    state="answered",
                    answered_at=at,
                    answer=storable(
                        protect_requests, {"answer": {"status": status, "body": answer}}
                    )["answer"],
                )
            )
            row = await self._row(conn, seq)
            if updated.rowcount != 1 or row is None:
                return None
            await add_event(
                conn,
                row["case_id"],
                "protect.answered",
                "backend",
                at,
                detail={"action": row["action"], "status": status, "answer": row["answer"]["body"]},
            )
        return row

    async def failed_attempt(self, seq: int, error: str, retry_at: datetime | None) -> None:
        """An attempt failed: tried again at `retry_at`, or (None) given up for good."""
        at = now()
        async with self.write() as conn:
            await conn.execute(
                protect_requests.update()
                .where(protect_requests.c.seq == seq, protect_requests.c.state == "pending")
                .values(
                    state="pending" if retry_at else "failed",
                    next_attempt_at=retry_at or at,
                    answer={"error": clean(error[:300])},
                )
            )
            row = await self._row(conn, seq)
            if row is None:
                return
            await add_event(
                conn,
                row["case_id"],
                "protect.retrying" if retry_at else "protect.failed",
                ROUTER,
                at,
                detail={
                    "action": row["action"],
                    "attempt": row["attempts"],
                    "error": error[:300],
                    **({"retry_at": retry_at.isoformat()} if retry_at else {}),
                },
            )

    async def requests(self, case_id: str) -> dict[str, dict[str, Any]]:
        """The case's requests by action."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(protect_requests).where(protect_requests.c.case_id == case_id)
            )
            return {r["action"]: jsonable(r) for r in rows.mappings()}

    @staticmethod
    async def _row(conn: Any, seq: int) -> dict[str, Any] | None:
        row = (
            (await conn.execute(sa.select(protect_requests).where(protect_requests.c.seq == seq)))
            .mappings()
            .first()
        )
        return dict(row) if row else None
