"""Cases: one incident, the conversations of one customer about it (docs/cases.md).

Every conversation the dispatcher stores joins a case (router/store/case_joining.py). Agents
move conversations between cases by hand (`link`, `unlink`); a conversation unlinked from a case
never joins it again by itself.
Every change is in the case's audit trail (`case_events`), with who made it and when.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.core.envelope import now, ordered_id
from router.store.database import Repository, hold_keys
from router.store.rows import jsonable, listing, message_dict
from router.store.schema import (
    case_events,
    case_facts,
    cases,
    conversations,
    messages,
    protect_requests,
)
from router.store.storable import fit, storable

ROUTER = "supportrouter"


class CaseError(Exception):
    """A link or unlink that cannot be made; `status` says how the API answers."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class Cases(Repository):
    async def case(self, case_id: str) -> dict[str, Any] | None:
        """The case with its conversations, every message across channels in time order, the
        transaction ids and amounts named, the protective action's requests and the audit trail."""
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(cases).where(cases.c.id == fit(cases.c.id, case_id))))
                .mappings()
                .first()
            )
            if row is None:
                return None
            convs = (
                (
                    await conn.execute(
                        sa.select(conversations)
                        .where(conversations.c.case_id == row["id"])
                        .order_by(conversations.c.created_at, conversations.c.id)
                    )
                )
                .mappings()
                .all()
            )
            ids = [c["id"] for c in convs]
            msgs = (
                (
                    await conn.execute(
                        sa.select(messages)
                        .where(messages.c.conversation_id.in_(ids))
                        .order_by(messages.c.created_at, messages.c.seq)
                    )
                )
                .mappings()
                .all()
            )
            facts = (
                await conn.execute(
                    sa.select(case_facts.c.kind, case_facts.c.value)
                    .where(case_facts.c.conversation_id.in_(ids))
                    .order_by(case_facts.c.seq)
                )
            ).all()
            events = await _events(conn, row["id"])
            requests = await _requests(conn, row["id"])
        case = jsonable(row)
        case["conversations"] = [listing(c) for c in convs]
        case["owner"] = _owner_of(convs)
        case["identities"] = sorted(
            {(c["channel"], c["customer_address"]) for c in convs}, key=lambda i: i
        )
        case["identities"] = [{"channel": ch, "address": a} for ch, a in case["identities"]]
        case["messages"] = [message_dict(m) for m in msgs]
        for kind in ("transaction_id", "amount"):
            case[kind + "s"] = list(dict.fromkeys(v for k, v in facts if k == kind))
        case["events"] = events
        case["protect_requests"] = requests
        return case

    async def link(self, case_id: str, conversation_id: str, by: str) -> bool:
        """Move a conversation into this case; False if it was in it already."""
        at = now()
        async with self.write() as conn:
            await _case_exists(conn, case_id)
            current = await case_of(conn, conversation_id)
            if current == case_id:
                return False
            await move_to_case(conn, conversation_id, case_id)
            await add_event(
                conn, case_id, "case.linked", by, at, conversation_id, {"from_case": current}
            )
            if current is not None:
                await add_event(
                    conn, current, "case.moved_out", by, at, conversation_id, {"to_case": case_id}
                )
        return True

    async def unlink(self, case_id: str, conversation_id: str, by: str) -> str:
        """Take a conversation out of this case into a case of its own; the new case's id."""
        at = now()
        async with self.write() as conn:
            phone = await _case_exists(conn, case_id)
            if await case_of(conn, conversation_id) != case_id:
                raise CaseError(409, "this conversation is not in this case")
            others = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(conversations)
                    .where(
                        conversations.c.case_id == case_id, conversations.c.id != conversation_id
                    )
                )
            ).scalar_one()
            if not others:
                raise CaseError(409, "this conversation is the only one in its case")
            new_case = await open_case(conn, phone, at)
            await move_to_case(conn, conversation_id, new_case)
            await add_event(
                conn, case_id, "case.unlinked", by, at, conversation_id, {"to_case": new_case}
            )
            await add_event(
                conn, new_case, "case.opened", by, at, conversation_id, {"unlinked_from": case_id}
            )
        return new_case


async def case_owner(conn: AsyncConnection, conversation_id: str) -> str | None:
    """The agent who owns this conversation's case: the one holding another of its
    conversations (the earliest assigned), else the last who answered one; None if nobody."""
    case_id = (
        await conn.execute(
            sa.select(conversations.c.case_id).where(conversations.c.id == conversation_id)
        )
    ).scalar()
    if case_id is None:
        return None
    # Two conversations of one case offered at once (the timers and a new batch) must not both
    # find no owner: hold the case until this offer is made.
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    await hold_keys(conn, ["case-owner:" + case_id])
    me = conversations.alias("me")
    rows = (
        (
            await conn.execute(
                sa.select(conversations)
                .join(me, me.c.case_id == conversations.c.case_id)
                .where(me.c.id == conversation_id, conversations.c.id != conversation_id)
                .where(conversations.c.assignee.is_not(None))
            )
        )
        .mappings()
        .all()
    )
    return _owner_of(rows)


def _owner_of(rows: Any) -> str | None:
    held = sorted(
        (r for r in rows if r["status"] == "assigned" and r["assignee"]),
        key=lambda r: (r["assigned_at"] is None, r["assigned_at"] or r["updated_at"]),
    )
    if held:
        return str(held[0]["assignee"])
    done = sorted(
        (r for r in rows if r["status"] == "resolved" and r["assignee"]),
        key=lambda r: r["updated_at"],
    )
    return str(done[-1]["assignee"]) if done else None


async def add_event(
    conn: AsyncConnection,
    case_id: str,
    kind: str,
    by: str,
    at: datetime,
    conversation_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    row = {
        "case_id": case_id,
        "conversation_id": conversation_id,
        "kind": kind,
        "by": by,
        "detail": detail or {},
        "at": at,
    }
    await conn.execute(case_events.insert().values(**storable(case_events, row)))


async def _events(conn: AsyncConnection, case_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(case_events).where(case_events.c.case_id == case_id).order_by(case_events.c.seq)
    )
    return [jsonable(r) for r in rows.mappings()]


async def _requests(conn: AsyncConnection, case_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(protect_requests)
        .where(protect_requests.c.case_id == case_id)
        .order_by(protect_requests.c.seq)
    )
    return [jsonable(r) for r in rows.mappings()]


async def case_of(conn: AsyncConnection, conversation_id: str) -> str | None:
    found = (
        await conn.execute(
            sa.select(conversations.c.id, conversations.c.case_id).where(
                conversations.c.id == fit(conversations.c.id, conversation_id)
            )
        )
    ).first()
    if found is None:
        raise CaseError(404, "no such conversation")
    return found[1]


async def _case_exists(conn: AsyncConnection, case_id: str) -> str | None:
    """The case's phone; CaseError 404 if there is no such case."""
    found = (
        await conn.execute(
            sa.select(cases.c.id, cases.c.customer_phone).where(
                cases.c.id == fit(cases.c.id, case_id)
            )
        )
    ).first()
    if found is None:
        raise CaseError(404, "no such case")
    return found[1]


async def open_case(conn: AsyncConnection, phone: str | None, at: datetime) -> str:
    case_id = ordered_id()
    row = storable(cases, {"id": case_id, "customer_phone": phone, "created_at": at})
    await conn.execute(cases.insert().values(**row))
    return case_id


# Every chunk that opens conversations runs these: built once (see value_lists.py).
_INSERT_CASES, _INSERT_EVENTS = cases.insert(), case_events.insert()
_MOVE_TO_CASE = (
    conversations.update()
    .where(conversations.c.id == sa.bindparam("conversation"))
    .values(case_id=sa.bindparam("case"))
)


async def open_cases(
    conn: AsyncConnection, wanted: list[tuple[str, str | None, datetime, str | None]]
) -> dict[str, str]:
    """A case of its own for each (conversation id, phone, at, case id), each in the audit trail
    as opened: what `open_case`, `move_to_case` and `add_event` do one by one, in three
    statements for them all. A case id given was drawn before the conversation was stored, in
    it: that conversation is not moved. Returns conversation id → case id."""
    if not wanted:
        return {}
    opened = {c: case_id or ordered_id() for c, _, _, case_id in wanted}
    await conn.execute(
        _INSERT_CASES,
        [
            storable(cases, {"id": opened[c], "customer_phone": phone, "created_at": at})
            for c, phone, at, _ in wanted
        ],
    )
    moved = [{"conversation": c, "case": opened[c]} for c, _, _, case_id in wanted if not case_id]
    if moved:
        await conn.execute(_MOVE_TO_CASE, moved)
    at = now()
    await conn.execute(
        _INSERT_EVENTS,
        [
            storable(
                case_events,
                {
                    "case_id": case_id,
                    "conversation_id": c,
                    "kind": "case.opened",
                    "by": ROUTER,
                    "detail": {},
                    "at": at,
                },
            )
            for c, case_id in opened.items()
        ],
    )
    return opened


async def move_to_case(conn: AsyncConnection, conversation_id: str, case_id: str) -> None:
    await conn.execute(
        conversations.update().where(conversations.c.id == conversation_id).values(case_id=case_id)
    )
