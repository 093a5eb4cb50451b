"""The schema's migrations on SQLite and PostgreSQL: `supportrouter db upgrade` makes the schema
of an empty database and adopts one made by create_all before migrations, keeping its rows; the
models match the migrations; services started together on an empty database all come up once
one upgrade ran, and a service alone on an unmigrated database exits naming the command.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from router.bus.embedded import free_port
from router.core.envelope import Channel
from router.store.conversations import ConversationStore
from router.store.migrate import SchemaError, current, upgrade
from router.store.revisions import (
    MIGRATIONS,
    SchemaNotReady,
    alembic_config,
    first_schema,
    head,
)
from router.store.schema import metadata
from tests.conftest import ADMIN_PASSWORD, CONFIG_DIR, make_settings, new_router
from tests.test_batch_sender import conversation, replies

ROOT = Path(__file__).resolve().parent.parent


async def _sync(url: str, work):
    """`work(connection)` on a plain engine of the test's own, committed."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def _differences(connection: sa.Connection) -> list:
    return compare_metadata(MigrationContext.configure(connection), metadata)


# --- upgrading ------------------------------------------------------------------------------


async def test_an_empty_database_is_upgraded_to_head_with_every_table_of_the_schema(
    empty_database_url,
):
    assert (await current(empty_database_url)).current is None
    done = await upgrade(empty_database_url)
    assert done.before.current is None and done.after == head() and not done.adopted
    assert (await current(empty_database_url)).at_head
    assert await _sync(empty_database_url, _tables) == set(metadata.tables) | {"alembic_version"}


async def test_the_models_match_the_migrations(empty_database_url):
    await upgrade(empty_database_url)
    assert await _sync(empty_database_url, _differences) == []


async def test_a_second_upgrade_changes_nothing(empty_database_url):
    await upgrade(empty_database_url)
    again = await upgrade(empty_database_url)
    assert again.before.current == again.after == head()


async def test_an_unknown_revision_is_refused_and_the_database_left_empty(empty_database_url):
    with pytest.raises(SchemaError, match="no-such-revision"):
        await upgrade(empty_database_url, "no-such-revision")
    assert await _sync(empty_database_url, _tables) == set()


async def test_replies_unpublished_across_0005_stay_unpublished_both_ways_and_in_order(
    empty_database_url,
):
    """0005 moved "not yet on Kafka" from a flag on each message to `unpublished_replies`: the
    replies unpublished before an upgrade (or a downgrade) are the ones the relay finds after."""
    url = empty_database_url
    await upgrade(url)
    async with ConversationStore(url) as store:
        opened = await conversation(store, Channel.SMS, "+15550005005")
        outs = await replies(store, opened, "first", "second", "third", "fourth")
        await store.mark_published(outs[1].message_id, outs[3].message_id)
        unpublished = [o.message_id for o in await store.unpublished()]
    assert unpublished == [outs[0].message_id, outs[2].message_id]

    await _sync(url, lambda connection: _downgrade(connection, "0004"))
    flags = await _sync(
        url,
        lambda c: {
            m: published
            for m, published in c.execute(
                sa.text("SELECT message_id, published FROM messages WHERE direction = 'out'")
            )
        },
    )
    assert {m: bool(published) for m, published in flags.items()} == {
        o.message_id: o.message_id not in unpublished for o in outs
    }
    assert "unpublished_replies" not in await _sync(url, _tables)

    assert (await upgrade(url)).after == head()
    async with ConversationStore(url) as store:
        assert [o.message_id for o in await store.unpublished()] == unpublished
        assert [o.message_id for o in await store.unpublished(opened["id"])] == unpublished
    assert await _sync(url, _differences) == []


def _downgrade(connection: sa.Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


# --- adopting a database made by create_all before migrations -------------------------------


async def test_a_create_all_database_from_before_migrations_is_adopted_and_keeps_its_rows(
    empty_database_url,
):
    schema = first_schema()

    def made_by_an_old_version(connection: sa.Connection) -> None:
        schema.create_all(connection)
        connection.execute(
            schema.tables["agent_credentials"].insert(),
            {"username": "ana", "password_hash": "$argon2id$kept"},
        )

    await _sync(empty_database_url, made_by_an_old_version)
    before = await current(empty_database_url)
    assert before.legacy and before.current is None

    done = await upgrade(empty_database_url)

    assert done.adopted and done.after == head()
    rows = await _sync(
        empty_database_url,
        lambda c: c.execute(sa.text("SELECT username, password_hash FROM agent_credentials")).all(),
    )
    assert [tuple(r) for r in rows] == [("ana", "$argon2id$kept")]
    assert await _sync(empty_database_url, _differences) == []


async def test_an_older_create_all_database_gains_the_columns_added_since_when_adopted(
    empty_database_url,
):
    def made_before_flags_existed(connection: sa.Connection) -> None:
        first_schema().create_all(connection)
        connection.execute(sa.text("ALTER TABLE conversations DROP COLUMN flags"))

    await _sync(empty_database_url, made_before_flags_existed)
    done = await upgrade(empty_database_url)
    assert done.adopted
    columns = await _sync(
        empty_database_url,
        lambda c: {col["name"] for col in sa.inspect(c).get_columns("conversations")},
    )
    assert "flags" in columns


async def test_tables_that_differ_from_the_first_revision_are_refused_and_left_as_they_were(
    empty_database_url,
):
    def not_ours(connection: sa.Connection) -> None:
        connection.execute(
            sa.text(
                "CREATE TABLE agent_credentials (username INTEGER PRIMARY KEY, "
                "password_hash VARCHAR(200) NOT NULL)"
            )
        )

    await _sync(empty_database_url, not_ours)
    with pytest.raises(SchemaError, match="differ") as refused:
        await upgrade(empty_database_url)
    assert "username" in str(refused.value)
    assert await _sync(empty_database_url, _tables) == {"agent_credentials"}


# --- who upgrades ---------------------------------------------------------------------------


async def test_run_with_every_service_in_one_process_upgrades_an_empty_database_itself(
    empty_database_url,
):
    async with new_router(make_settings(empty_database_url)) as router:
        assert router.store is not None
    assert (await current(empty_database_url)).at_head


async def test_a_database_migrated_by_a_newer_version_is_refused_at_once_without_waiting(
    database_url,
):
    await _sync(
        database_url,
        lambda c: c.execute(sa.text("UPDATE alembic_version SET version_num = '9999'")),
    )
    store = ConversationStore(database_url, schema_wait_seconds=3600)
    async with asyncio.timeout(60):  # the wait would be an hour
        with pytest.raises(SchemaNotReady, match="9999: unknown to this version"):
            await store.start()


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTROUTER_")}
    env.update(
        SUPPORTROUTER_DATABASE_URL=url,
        SUPPORTROUTER_CONFIG_DIR=str(CONFIG_DIR),
        SUPPORTROUTER_LOG_FORMAT="json",
        SUPPORTROUTER_HTTP_HOST="127.0.0.1",
        SUPPORTROUTER_HTTP_PORT=str(free_port()),
        SUPPORTROUTER_ADMIN_PASSWORD=ADMIN_PASSWORD,
        SUPPORTROUTER_CHANNELS='["chat"]',
    )
    env.update(extra)
    return env


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def _cli(env: dict[str, str], *args: str) -> Ran:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router.cli",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def test_a_service_alone_on_an_unmigrated_database_waits_then_exits_naming_db_upgrade(
    empty_database_url,
):
    env = _env(
        empty_database_url,
        SUPPORTROUTER_SCHEMA_WAIT_SECONDS="1",
        # The store starts before the bus: no broker is reached.
        SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
    )
    ran = await _cli(env, "run", "dispatcher")
    assert ran.code == 1
    assert "store.schema_behind" in ran.err  # it said so while it waited
    assert "cannot start:" in ran.err and "run `supportrouter db upgrade`" in ran.err
    assert "Traceback" not in ran.err
    assert (await current(empty_database_url)).current is None  # never made the schema itself


async def test_concurrent_db_upgrades_all_succeed_and_one_makes_the_schema(empty_database_url):
    env = _env(empty_database_url)
    runs = await asyncio.gather(*(_cli(env, "db", "upgrade") for _ in range(3)))
    assert [r.code for r in runs] == [0, 0, 0], [r.err for r in runs]
    assert sum(f"upgraded  (empty) -> {head()}" in r.out for r in runs) == 1
    assert sum("already there, nothing to do" in r.out for r in runs) == 2
    assert await _sync(empty_database_url, _differences) == []


class Service:
    """`supportrouter run ROLE` in its own process, its output in a file."""

    def __init__(self, role: str, env: dict[str, str], logs: Path):
        self.role, self.env, self.log = role, env, logs / f"{role}.out"
        self.process: asyncio.subprocess.Process | None = None

    async def spawn(self) -> None:
        with self.log.open("wb") as sink:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "router.cli",
                "run",
                self.role,
                env=self.env,
                cwd=ROOT,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
            )

    def says(self, text: str) -> bool:
        assert self.process is not None
        output = self.log.read_text()
        if self.process.returncode is not None:
            raise AssertionError(f"{self.role} exited: {output[-3000:]}")
        return text in output

    async def stop(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(60):
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            return None


async def _until(condition) -> None:
    async with asyncio.timeout(180):
        while not condition():
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("empty_database_url", ["postgres"], indirect=True)
async def test_services_started_together_on_an_empty_postgresql_all_come_up_once_db_upgrade_ran(
    empty_database_url, broker, tmp_path
):
    env = _env(empty_database_url, SUPPORTROUTER_SCHEMA_WAIT_SECONDS="600", **broker.env())
    services = [Service(role, env, tmp_path) for role in ("gateway", "dispatcher", "sender")]
    try:
        await asyncio.gather(*(s.spawn() for s in services))
        await _until(lambda: all(s.says("store.schema_behind") for s in services))
        # The deployment's one-shot step, here run three times at once for good measure.
        runs = await asyncio.gather(*(_cli(env, "db", "upgrade") for _ in range(3)))
        assert [r.code for r in runs] == [0, 0, 0], [r.err for r in runs]
        await _until(lambda: all(s.says("supportrouter is running") for s in services))
    finally:
        codes = [await s.stop() for s in services]
    assert codes == [0, 0, 0]


# --- the command line -----------------------------------------------------------------------


async def test_db_current_and_history_say_where_the_database_is(empty_database_url):
    env = _env(empty_database_url)
    empty = await _cli(env, "db", "current", "--check")
    assert empty.code == 3
    assert "none: an empty database" in empty.out and "supportrouter db upgrade" in empty.out

    assert (await _cli(env, "db", "upgrade")).code == 0
    now = await _cli(env, "db", "current", "--check")
    assert now.code == 0 and f"revision  {head()} (head)" in now.out

    history = await _cli(env, "db", "history")
    assert history.code == 0
    lines = history.out.splitlines()
    assert f" -> {head()}  (head)  " in lines[0]  # newest first
    assert lines[-1].startswith("(empty) -> 0001  ")


async def test_db_current_on_an_unreachable_database_exits_1_with_the_address_not_the_password():
    url = f"postgresql+asyncpg://router:s3cret@127.0.0.1:{free_port()}/none"
    ran = await _cli(_env(url), "db", "current")
    assert ran.code == 1
    assert "cannot reach the database at" in ran.err and "s3cret" not in ran.err
    assert "Traceback" not in ran.err


async def test_db_revision_writes_nothing_while_the_schema_matches_the_latest_revision():
    versions = MIGRATIONS / "versions"
    before = set(versions.glob("*.py"))
    try:
        ran = await _cli(_env("sqlite+aiosqlite:///unused.db"), "db", "revision", "-m", "nothing")
        assert ran.code == 1, ran.err
        assert "nothing written" in ran.out
    finally:
        for made in set(versions.glob("*.py")) - before:
            made.unlink()
    assert set(versions.glob("*.py")) == before
