"""Placing conversations in cases as their messages are stored (docs/cases.md): the facts each
message gives (transaction ids, amounts, an unauthorized report, from which phone), and the case
they lead to: the case of another conversation of the same phone that named the same transaction
id or reported an unauthorized transaction close in time; otherwise a case of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from router.core.envelope import now
from router.store.cases import ROUTER, add_event, case_of, move_to_case, open_case, open_cases
from router.store.database import hold_keys
from router.store.schema import case_events, case_facts, conversations
from router.store.storable import fit, storable
from router.store.value_lists import listed, one_of


@dataclass(frozen=True)
class CaseFacts:
    """What one stored inbound message tells about its case."""

    conversation_id: str
    message_id: str
    at: datetime
    phone: str | None  # the customer's phone: the channel's own number, or a verified one
    transaction_ids: list[str] = field(default_factory=list)
    amounts: list[str] = field(default_factory=list)
    unauthorized: bool = False
    opened: bool = False  # the message opened its conversation, in this transaction
    # The case that conversation was stored in, drawn before (`may_join` said it joins nothing);
    # None: it has no case yet.
    case_id: str | None = None


@dataclass(frozen=True)
class CaseWindows:
    unauthorized: timedelta | None  # None: an unauthorized report never joins by time
    transaction: timedelta


async def place_cases(
    conn: AsyncConnection, items: list[CaseFacts], windows: CaseWindows
) -> dict[str, str]:
    """Store the facts and place each conversation in its case, in the transaction that stores
    the messages (router/store/inbound.py holds SQLite's write lock already), so no conversation
    is ever offered before it is in its case. Returns conversation id → case id."""
    placed: dict[str, str] = {}
    if not items:
        return placed
    # Two dispatchers placing the same customer's messages at once would open two cases.
    await hold_keys(conn, {"case:" + (i.phone or i.conversation_id) for i in items})
    current = await _cases_of(conn, [item.conversation_id for item in items if not item.opened])
    # Most messages open a case of their own (no case yet, nothing to join by): those are
    # opened together, and before any message that has to look at the cases stored so far.
    opening: list[tuple[str, str | None, datetime, str | None]] = []
    seen: set[str] = set()
    for item in items:
        await _store_facts(conn, item)
        first = item.conversation_id not in seen
        seen.add(item.conversation_id)
        if first and item.opened and item.case_id is not None:  # stored in its case already
            opening.append((item.conversation_id, item.phone, item.at, item.case_id))
            continue
        case = placed.get(item.conversation_id) or current.get(item.conversation_id)
        if not may_join(item, windows):
            if case is not None:
                # A later message of a conversation in its case, naming nothing that could join
                # another: it stays where it is (what `_place` finds, without its two queries).
                placed[item.conversation_id] = case
                continue
            if first:  # no case yet and nothing to join by: opened with the others
                opening.append((item.conversation_id, item.phone, item.at, None))
                continue
        placed.update(await open_cases(conn, opening))
        opening = []
        placed[item.conversation_id] = await _place(conn, item, windows)
    placed.update(await open_cases(conn, opening))
    return placed


_CASES_OF = sa.select(conversations.c.id, conversations.c.case_id).where(
    one_of(conversations.c.id, listed("ids"))
)  # built once: every chunk asks (see value_lists.py)


async def _cases_of(conn: AsyncConnection, conversation_ids: list[str]) -> dict[str, str | None]:
    if not conversation_ids:  # every one opened now (most chunks): nothing to ask
        return {}
    rows = await conn.execute(_CASES_OF, {"ids": sorted(set(conversation_ids))})
    return {row[0]: row[1] for row in rows}


def may_join(item: CaseFacts, windows: CaseWindows) -> bool:
    """Could this message join another case (what `_match` looks for)? A message that cannot,
    and opens its conversation, opens a case of its own."""
    return bool(item.phone) and bool(
        item.transaction_ids or (item.unauthorized and windows.unauthorized is not None)
    )


async def _store_facts(conn: AsyncConnection, item: CaseFacts) -> None:
    wanted = [("transaction_id", v) for v in item.transaction_ids]
    wanted += [("amount", v) for v in item.amounts]
    if item.unauthorized:
        wanted.append(("unauthorized", ""))
    rows = [
        storable(
            case_facts,
            {
                "message_id": item.message_id,
                "conversation_id": item.conversation_id,
                "phone": item.phone,
                "kind": kind,
                "value": value,
                "at": item.at,
            },
        )
        for kind, value in dict.fromkeys(wanted)
    ]
    if not rows:
        return
    have = set(
        (
            await conn.execute(
                sa.select(case_facts.c.kind, case_facts.c.value).where(
                    case_facts.c.message_id == rows[0]["message_id"]
                )
            )
        ).all()
    )
    fresh = [r for r in rows if (r["kind"], r["value"]) not in have]
    if fresh:
        await conn.execute(case_facts.insert(), fresh)


async def _place(conn: AsyncConnection, item: CaseFacts, windows: CaseWindows) -> str:
    """The conversation's case: found, joined, or opened."""
    current = await case_of(conn, item.conversation_id)
    if current is not None:
        alone = not (
            await conn.execute(
                sa.select(conversations.c.id).where(
                    conversations.c.case_id == current, conversations.c.id != item.conversation_id
                )
            )
        ).first()
        if not alone:  # already one of several: an agent moves it if it belongs elsewhere
            return current
    match = await _match(conn, item, windows, current)
    if match is not None:
        target, reason = match
        await move_to_case(conn, item.conversation_id, target)
        await add_event(
            conn, target, "case.joined", ROUTER, now(), item.conversation_id, {"reason": reason}
        )
        return target
    if current is not None:
        return current
    opened = await open_case(conn, item.phone, item.at)
    await move_to_case(conn, item.conversation_id, opened)
    await add_event(conn, opened, "case.opened", ROUTER, now(), item.conversation_id)
    return opened


async def _match(
    conn: AsyncConnection, item: CaseFacts, windows: CaseWindows, current: str | None
) -> tuple[str, str] | None:
    """Another case of the same phone this message belongs to, and why; never one this
    conversation was unlinked from."""
    if not item.phone:
        return None
    ways = []
    txns = [fit(case_facts.c.value, t) for t in item.transaction_ids]
    if txns:
        ways.append(
            (case_facts.c.kind == "transaction_id")
            & case_facts.c.value.in_(txns)
            & (case_facts.c.at >= item.at - windows.transaction)
        )
    if item.unauthorized and windows.unauthorized is not None:
        ways.append(
            (case_facts.c.kind == "unauthorized")
            & (case_facts.c.at >= item.at - windows.unauthorized)
            & (case_facts.c.at <= item.at + windows.unauthorized)
        )
    if not ways:
        return None
    unlinked = sa.select(case_events.c.case_id).where(
        case_events.c.kind == "case.unlinked",
        case_events.c.conversation_id == item.conversation_id,
    )
    query = (
        sa.select(conversations.c.case_id, case_facts.c.kind)
        .join(conversations, conversations.c.id == case_facts.c.conversation_id)
        .where(case_facts.c.phone == fit(case_facts.c.phone, item.phone))
        .where(conversations.c.id != item.conversation_id, conversations.c.case_id.is_not(None))
        .where(conversations.c.case_id.not_in(unlinked))
        .where(sa.or_(*ways))
        # A shared transaction id first; then the closest report.
        .order_by((case_facts.c.kind == "transaction_id").desc(), case_facts.c.at.desc())
        .limit(1)
    )
    if current is not None:
        query = query.where(conversations.c.case_id != current)
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return row[0], "same_transaction" if row[1] == "transaction_id" else "unauthorized_window"
