"""What is known of customers: a phone number a channel verified for one of its users, and
the attributes routing filters see as `customer.*`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from router.core.envelope import now
from router.store.database import Repository
from router.store.rows import jsonable
from router.store.schema import customer_profiles, identities
from router.store.storable import fit, storable
from router.store.value_lists import listed, one_of

# Every dispatcher chunk asks: built once (see value_lists.py).
_ATTRIBUTES = sa.select(customer_profiles.c.address, customer_profiles.c.attributes).where(
    one_of(customer_profiles.c.address, listed("addresses"))
)


class Customers(Repository):
    async def link_identity(self, channel: str, channel_user_id: str, phone: str) -> None:
        """Record a phone number the channel verified for this user; a newer one replaces it.
        Call it only with a verified number: this is what agents trust as the customer's phone."""
        row = storable(
            identities,
            {"channel": channel, "channel_user_id": channel_user_id, "phone": phone},
        )
        async with self.write() as conn:
            await conn.execute(
                identities.delete()
                .where(identities.c.channel == row["channel"])
                .where(identities.c.channel_user_id == row["channel_user_id"])
            )
            await conn.execute(identities.insert().values(**row, verified_at=now()))

    async def identity_for(self, channel: str, channel_user_id: str) -> dict[str, Any] | None:
        """The verified phone of a channel's user, as {"phone", "verified_at"}, or None."""
        async with self.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(identities.c.phone, identities.c.verified_at)
                        .where(identities.c.channel == fit(identities.c.channel, channel))
                        .where(
                            identities.c.channel_user_id
                            == fit(identities.c.channel_user_id, channel_user_id)
                        )
                    )
                )
                .mappings()
                .first()
            )
        return jsonable(row) if row else None

    # --- customers' attributes -----------------------------------------------------------

    async def set_customer_attributes(self, address: str, attributes: dict[str, Any]) -> None:
        """What routing filters see as `customer.*` for this address (vip, segment ...)."""
        row = storable(customer_profiles, {"address": address, "attributes": attributes})
        async with self.write() as conn:
            await conn.execute(
                customer_profiles.delete().where(customer_profiles.c.address == row["address"])
            )
            await conn.execute(customer_profiles.insert().values(**row, updated_at=now()))

    async def customer_attributes(self, address: str) -> dict[str, Any]:
        return (await self.customer_attributes_many([address])).get(address, {})

    async def customer_attributes_many(self, addresses: list[str]) -> dict[str, dict[str, Any]]:
        """What is known of each of these customers; an address with nothing known is absent."""
        if not addresses:
            return {}
        # Found by the address as stored (see router.store.storable), answered by the one asked.
        asked = {fit(customer_profiles.c.address, a): a for a in addresses}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_ATTRIBUTES, {"addresses": sorted(asked)})).all()
        return {asked[address]: dict(attributes) for address, attributes in rows}
