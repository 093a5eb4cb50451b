"""The agents' desk: internal notes and tags on a conversation, search, and a customer's
identities and history across channels. Read by `router.services.desk_api`."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from router.core.envelope import now
from router.store.database import Repository
from router.store.rows import jsonable, listing
from router.store.schema import (
    conversation_notes,
    conversation_tags,
    conversations,
    identities,
    messages,
)
from router.store.storable import fit, storable

_PREFIXES = ("whatsapp:", "tel:", "sms:")


def phone_of(address: str) -> str | None:
    """The phone number in an address ("whatsapp:+86 138…", "+8613…"), as +digits; or None."""
    bare = address
    for prefix in _PREFIXES:
        if bare.lower().startswith(prefix):
            bare = bare[len(prefix) :]
    digits = re.sub(r"[\s().-]", "", bare)
    return digits if re.fullmatch(r"\+?\d{6,16}", digits) else None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class Desk(Repository):
    # --- notes and tags -------------------------------------------------------------------

    async def add_note(self, conversation_id: str, author: str, text: str) -> dict[str, Any]:
        row = storable(
            conversation_notes,
            {
                "conversation_id": conversation_id,
                "author": author,
                "text": text,
                "created_at": now(),
            },
        )
        async with self.write() as conn:
            seq = (
                await conn.execute(conversation_notes.insert().values(**row))
            ).inserted_primary_key
        return jsonable({**row, "id": seq[0] if seq else None})

    async def notes(self, conversation_id: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(conversation_notes)
                .where(conversation_notes.c.conversation_id == conversation_id)
                .order_by(conversation_notes.c.seq)
            )
            return [{**jsonable(r), "id": r["seq"]} for r in rows.mappings().all()]

    async def add_tag(self, conversation_id: str, tag: str, by: str) -> bool:
        """False if the conversation already has it."""
        row = storable(
            conversation_tags,
            {"conversation_id": conversation_id, "tag": tag, "added_by": by, "added_at": now()},
        )
        async with self.write() as conn:
            have = (
                await conn.execute(
                    sa.select(sa.func.count()).where(
                        conversation_tags.c.conversation_id == conversation_id,
                        conversation_tags.c.tag == row["tag"],
                    )
                )
            ).scalar_one()
            if have:
                return False
            await conn.execute(conversation_tags.insert().values(**row))
        return True

    async def remove_tag(self, conversation_id: str, tag: str) -> bool:
        async with self.write() as conn:
            result = await conn.execute(
                conversation_tags.delete().where(
                    conversation_tags.c.conversation_id == conversation_id,
                    conversation_tags.c.tag == fit(conversation_tags.c.tag, tag),
                )
            )
        return result.rowcount == 1

    async def tags(self, conversation_id: str) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(conversation_tags.c.tag)
                .where(conversation_tags.c.conversation_id == conversation_id)
                .order_by(conversation_tags.c.added_at, conversation_tags.c.tag)
            )
            return list(rows.scalars())

    # --- search -----------------------------------------------------------------------------

    async def search(self, text: str, queues: Collection[str], limit: int = 50) -> list[dict]:
        """Conversations in `queues` whose ticket is `text`, or whose customer's address or name,
        or any message (a transaction id, an email address), contains it; newest first."""
        pattern = _like(text)
        phone = phone_of(text)
        in_messages = sa.select(messages.c.conversation_id).where(
            messages.c.text.ilike(pattern, escape="\\")
        )
        matches = [
            sa.func.upper(conversations.c.ticket) == text.upper(),
            conversations.c.customer_address.ilike(pattern, escape="\\"),
            conversations.c.customer_name.ilike(pattern, escape="\\"),
            conversations.c.id.in_(in_messages),
        ]
        if phone:
            matches.append(conversations.c.customer_address.ilike(_like(phone), escape="\\"))
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(conversations)
                .where(conversations.c.queue.in_(sorted(queues)), sa.or_(*matches))
                .order_by(conversations.c.created_at.desc())
                .limit(limit)
            )
            return [listing(r) for r in rows.mappings().all()]

    # --- the customer across channels ------------------------------------------------------

    async def customer(self, conversation: dict[str, Any], queues: Collection[str]) -> dict:
        """Who wrote `conversation`: their addresses (the same phone on SMS, WhatsApp and voice;
        channel accounts verified for that phone) and every conversation of theirs in `queues`."""
        address = conversation["customer_address"]
        phone = phone_of(address)
        async with self.engine.connect() as conn:
            found = identities.c.channel_user_id == fit(identities.c.channel_user_id, address)
            if phone:
                found = found | (identities.c.phone == phone)
            verified = [
                jsonable(r)
                for r in (await conn.execute(sa.select(identities).where(found))).mappings()
            ]
            phones = {phone} | {v["phone"] for v in verified}
            phones.discard(None)
            addresses = {address} | {v["channel_user_id"] for v in verified}
            same = [conversations.c.customer_address.in_(sorted(addresses))]
            same += [
                conversations.c.customer_address.ilike(_like(p), escape="\\") for p in phones if p
            ]
            rows = await conn.execute(
                sa.select(conversations)
                .where(conversations.c.queue.in_(sorted(queues)), sa.or_(*same))
                .order_by(conversations.c.created_at.desc())
                .limit(100)
            )
            history = [listing(r) for r in rows.mappings().all()]
        channels = sorted({(c["channel"], c["customer_address"]) for c in history})
        return {
            "name": conversation.get("customer_name"),
            "phone": phone or next(iter(sorted(p for p in phones if p)), None),
            "identities": [{"channel": ch, "address": a} for ch, a in channels]
            + [
                {
                    "channel": v["channel"],
                    "address": v["channel_user_id"],
                    "verified_phone": v["phone"],
                }
                for v in verified
            ],
            "history": history,
        }
