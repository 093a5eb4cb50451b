"""The JSON text the store writes (router/store/json_text.py): orjson's, read back as written on
SQLite and PostgreSQL, and the standard encoder's for what orjson refuses."""

from __future__ import annotations

import json

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from router.store.conversations import ConversationStore
from router.store.json_text import dumps
from router.store.schema import customer_profiles

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_what_it_writes_reads_back_as_the_standard_encoder_would(value):
    assert json.loads(dumps(value)) == json.loads(json.dumps(value))


def test_keys_that_are_not_text_are_written_as_text_as_before():
    assert json.loads(dumps({1: "a", "b": 2})) == {"1": "a", "b": 2}


def test_what_orjson_refuses_the_standard_encoder_writes():
    assert dumps({"n": 2**70}) == '{"n": 1180591620717411303424}'
    assert json.loads(dumps(["\ud800"])) == ["\ud800"]


async def test_the_store_writes_json_columns_with_it(database_url):
    attributes = {"name": "Zoë 王", "tier": "vip", "limits": [1, 2.5, None]}
    async with ConversationStore(database_url) as store:
        await store.set_customer_attributes("+15550100", attributes)
        async with store.engine.connect() as conn:
            raw = await conn.scalar(
                sa.select(sa.cast(customer_profiles.c.attributes, sa.Text)).where(
                    customer_profiles.c.address == "+15550100"
                )
            )
        assert await store.customer_attributes("+15550100") == attributes
    assert "Zoë 王" in raw  # UTF-8 as it is: the standard encoder wrote "Zo\u00eb \u738b"
