"""PostgreSQL restarted under a running router: what was accepted meanwhile waits in Kafka (and
the journal) and is stored once when the database is back; nothing is dead-lettered for it.
The suite owns its PostgreSQL cluster (`make test` started it under var/), so it can stop it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from devenv.postgres import PostgresCluster
from router.store.schema import messages
from tests.accounting import record
from tests.conftest import PG_ADMIN_DSN
from tests.twilio_standin import message_sid, twilio_router

ROOT = Path(__file__).resolve().parent.parent


def _cluster() -> PostgresCluster:
    cluster = PostgresCluster(ROOT / "var" / "postgres", port=urlsplit(PG_ADMIN_DSN).port or 5432)
    if not cluster.running():
        pytest.fail(f"the suite's PostgreSQL is not the one under {cluster.root}")
    return cluster


async def _stored(router, sids: list[str]) -> dict[str, int]:
    async with router.store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(messages.c.channel_message_id, sa.func.count())
            .where(messages.c.channel_message_id.in_(sids))
            .group_by(messages.c.channel_message_id)
        )
        return dict(rows.all())


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_sms_accepted_while_postgres_restarts_are_stored_once_when_it_is_back(
    database_url, monkeypatch
):
    async with twilio_router(database_url, monkeypatch) as t:
        router = t.router
        cluster = _cluster()
        await asyncio.to_thread(cluster.stop)
        accepted: list[str] = []
        try:
            for n in range(10):
                sid = message_sid()
                status, _ = await t.sms(f"my transfer {n} failed yesterday", sid=sid)
                if status == 200:
                    accepted.append(sid)
            await asyncio.sleep(3)  # the dispatcher meets the database away, more than once
        finally:
            await asyncio.to_thread(cluster.start)
        assert accepted, "the gateway refused every SMS while only the database was away"
        async with asyncio.timeout(90):
            while True:
                try:
                    stored = await _stored(router, accepted)
                except sa.exc.DBAPIError:
                    stored = {}
                if set(stored) == set(accepted):
                    break
                await asyncio.sleep(0.5)
        record(
            fault="PostgreSQL restarted",
            broker="tansu",
            database="postgresql",
            accepted=len(accepted),
            stored=len(stored),
            lost=len(set(accepted) - set(stored)),
            stored_twice=sum(1 for count in stored.values() if count > 1),
        )
        assert all(count == 1 for count in stored.values()), stored


async def test_a_database_that_cannot_be_reached_is_an_outage_and_a_bad_statement_is_not(
    tmp_path,
):
    from sqlalchemy.ext.asyncio import create_async_engine

    from router.bus.embedded import free_port
    from router.core.faults import is_outage

    away = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
    here = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    try:
        with pytest.raises(Exception) as refused:
            async with away.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        assert is_outage(refused.value)
        with pytest.raises(sa.exc.DBAPIError) as bad:
            async with here.connect() as conn:
                await conn.execute(sa.text("SELECT * FROM no_such_table"))
        assert not is_outage(bad.value)
        assert not is_outage(ValueError("not a number"))
    finally:
        await away.dispose()
        await here.dispose()
