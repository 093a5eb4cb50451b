"""Changing the schema: `supportrouter db upgrade` (and `supportrouter run`, everything in one
process) brings a database to a revision; `db revision` writes a new one.

One upgrade at a time per database: on PostgreSQL the whole upgrade is one transaction that
first takes a transaction-level advisory lock, so a second `db upgrade` waits, then finds the
schema at head and does nothing (PostgreSQL's DDL is transactional: a failed upgrade leaves
nothing half done). On SQLite it is one `BEGIN IMMEDIATE` transaction: the write lock is taken
before the revision is even read, and a second upgrader waits on the busy timeout.

A database made by `create_all` before there were migrations (tables, no `alembic_version`) is
adopted: what that start-up would still have added (a missing table or column) is added, the
tables are compared with revision 0001's, and it is stamped at 0001 if they match, then
upgraded like any other; if they differ nothing is changed and the differences are named.
"""

from __future__ import annotations

import asyncio
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from router.store.database import ensure_sqlite_dir
from router.store.revisions import (
    FIRST,
    SchemaState,
    alembic_config,
    first_schema,
    head,
    read_state,
)

log = structlog.get_logger("router.store.migrate")

# pg_advisory_xact_lock's key: any constant of our own; held until the upgrade commits.
_PG_LOCK_KEY = 0x5352_5343_4845_4D41  # "SRSCHEMA"
# A second upgrader on SQLite waits this long for the first one's write lock.
_SQLITE_BUSY_MS = 300_000
# A new revision is written in the house format (Alembic's post-write hook).
_RUFF_FORMAT = {
    "hooks": "ruff",
    "ruff.type": "module",
    "ruff.module": "ruff",
    "ruff.options": "format REVISION_SCRIPT_FILENAME",
}


class SchemaError(RuntimeError):
    """An upgrade that cannot be done: an unknown revision, a database that cannot be adopted."""


@dataclass(frozen=True)
class Upgraded:
    before: SchemaState
    after: str | None
    adopted: bool  # stamped at 0001 first: made by create_all before migrations


async def upgrade(url: str, revision: str = "head") -> Upgraded:
    """Bring the database at `url` to `revision` (default: the latest), one upgrader at a time."""
    engine = _migration_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            done: Upgraded = await conn.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()
    if done.before.current != done.after:
        log.info("store.schema_upgraded", before=done.before.current, after=done.after)
    return done


async def current(url: str) -> SchemaState:
    """The database's revision and what this version needs; changes nothing."""
    if _no_sqlite_file(url):  # and none made by looking
        return SchemaState(None, head(), legacy=False, known=True)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            state: SchemaState = await conn.run_sync(read_state)
            return state
    finally:
        await engine.dispose()


def _no_sqlite_file(url: str) -> bool:
    parsed = sa.engine.make_url(url)
    path = parsed.database
    return (
        parsed.get_backend_name() == "sqlite"
        and path not in (None, "", ":memory:")
        and not Path(str(path)).exists()
    )


def _migration_engine(url: str) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(url, poolclass=NullPool)
    ensure_sqlite_dir(url)
    engine = create_async_engine(url, poolclass=NullPool)

    def connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own BEGIN is deferred and skipped before DDL; emit ours (below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # The timeout first: turning WAL on may itself wait for another upgrader's lock.
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    def begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    sa.event.listen(engine.sync_engine, "connect", connect)
    sa.event.listen(engine.sync_engine, "begin", begin)
    return engine


def _upgrade(connection: sa.Connection, revision: str) -> Upgraded:
    before = read_state(connection)
    config = alembic_config()
    config.attributes["connection"] = connection
    try:
        if before.legacy:
            _adopt(connection)
            command.stamp(config, FIRST)
        command.upgrade(config, revision)
    except (CommandError, RevisionError) as exc:
        raise SchemaError(f"cannot upgrade to {revision!r}: {exc}") from exc
    after = read_state(connection)
    return Upgraded(before, after.current, adopted=before.legacy)


def _adopt(connection: sa.Connection) -> None:
    """Stamp-ready or refused: a database made by create_all before migrations."""
    schema = first_schema()
    have = set(sa.inspect(connection).get_table_names())
    added_tables = [t.name for t in schema.sorted_tables if t.name not in have]
    # What the start-up of those versions did every time: make missing tables, add columns.
    try:
        schema.create_all(connection)
        added_columns = _add_missing_columns(connection, schema)
    except sa.exc.DBAPIError as exc:
        raise SchemaError(
            f"the database has tables but no schema revision, and they cannot be completed to "
            f"revision {FIRST} (the schema before migrations); nothing was changed: {exc.orig}"
        ) from exc
    ours = set(schema.tables)
    context = MigrationContext.configure(
        connection,
        opts={"include_name": lambda name, kind, _parent: kind != "table" or name in ours},
    )
    differences = compare_metadata(context, schema)
    if differences:
        listed = "\n  ".join(str(d) for d in differences)
        raise SchemaError(
            f"the database has tables but no schema revision, and they differ from revision "
            f"{FIRST} (the schema before migrations); nothing was changed:\n  {listed}"
        )
    log.warning(
        "store.schema_adopted",
        revision=FIRST,
        detail="tables made by create_all before migrations; stamped, every row kept",
        added_tables=added_tables,
        added_columns=added_columns,
    )


def _add_missing_columns(connection: sa.Connection, schema: sa.MetaData) -> list[str]:
    """A database made by an older version gains the columns added since (all nullable or
    defaulted), as those versions' start did; create_all never alters a table that exists."""
    inspector = sa.inspect(connection)
    added = []
    for table in schema.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            kind = column.type.compile(dialect=connection.dialect)
            server_default = column.server_default
            default = (
                f" DEFAULT {server_default.arg}"
                if isinstance(server_default, sa.DefaultClause)
                else ""
            )
            null = "" if column.nullable else " NOT NULL"
            connection.execute(
                sa.text(
                    f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{default}{null}'
                )
            )
            added.append(f"{table.name}.{column.name}")
    return added


def new_revision(message: str, *, empty: bool = False) -> Path | None:
    """Write the next revision into router/store/migrations/versions/ (a source checkout):
    what differs between router/store/schema.py and a scratch SQLite database upgraded to head,
    as batch operations; None when nothing differs. `empty`: a blank revision to fill by hand."""
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{scratch}/scratch.db"
        asyncio.run(upgrade(url))
        engine = sa.create_engine(f"sqlite:///{scratch}/scratch.db", poolclass=NullPool)
        try:
            with engine.begin() as connection:
                config = alembic_config()
                config.attributes.update(connection=connection, skip_empty=not empty)
                if importlib.util.find_spec("ruff") is not None:  # the test extra has it
                    for key, value in _RUFF_FORMAT.items():
                        config.set_section_option("post_write_hooks", key, value)
                made = command.revision(
                    config, message, autogenerate=not empty, rev_id=f"{int(head()) + 1:04d}"
                )
        finally:
            engine.dispose()
    scripts = made if isinstance(made, list) else [made]
    written = [script for script in scripts if script is not None]
    return Path(written[0].path) if written else None
