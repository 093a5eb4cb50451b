"""Which revision of the schema a database is at, which one this version needs, and the wait of
a service for `supportrouter db upgrade` (the changing itself: router/store/migrate.py).

The revisions are Alembic's, in router/store/migrations/, configured here in code: nothing reads
an alembic.ini, so an installed wheel finds them beside this module."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger("router.store.revisions")

MIGRATIONS = Path(__file__).with_name("migrations")
FIRST = "0001"  # the schema create_all made before there were migrations
UPGRADE = "supportrouter db upgrade"
_LOG_EVERY = 5.0  # seconds between two "still waiting" lines


class SchemaNotReady(RuntimeError):
    """The database is not at the revision this version needs; the message says what to run."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # 0002_add_notes.py: numbered in order (ConfigParser needs the % doubled).
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return config


@functools.cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    found = scripts().get_current_head()
    assert found is not None  # versions/ always holds the first revision
    return found


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str
    is_head: bool


def history() -> list[Revision]:
    """Every revision, newest first."""
    return [
        Revision(
            script.revision,
            script.down_revision if isinstance(script.down_revision, str) else None,
            (script.doc or "").strip(),
            script.revision == head(),
        )
        for script in scripts().walk_revisions()
    ]


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the revision the database records; None: none
    head: str  # the one this version needs
    legacy: bool  # no revision but tables of ours: made by create_all before migrations
    known: bool  # `current` is one of this version's revisions (or None)

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.at_head:
            return f"{self.current} (head)"
        if self.legacy:
            return f"none: tables from before migrations (`{UPGRADE}` adopts them)"
        if self.current is None:
            return f"none: an empty database (`{UPGRADE}` makes the schema)"
        if not self.known:
            return (
                f"{self.current}: unknown to this version, whose latest is {self.head} (a newer "
                "version migrated this database)"
            )
        return f"{self.current}, behind the latest {self.head} (run `{UPGRADE}`)"


def read_state(connection: sa.Connection) -> SchemaState:
    heads = MigrationContext.configure(connection).get_current_heads()
    current = heads[0] if heads else None
    legacy = False
    if current is None:
        tables = set(sa.inspect(connection).get_table_names())
        legacy = bool(tables & set(first_schema().tables))
    known = current is None or _known(current)
    return SchemaState(current, head(), legacy, known)


def first_schema() -> sa.MetaData:
    """The tables revision 0001 makes (its frozen `SCHEMA`)."""
    script = scripts().get_revision(FIRST)
    assert script is not None
    schema: Any = script.module.SCHEMA
    return schema


def _known(revision: str) -> bool:
    try:
        return scripts().get_revision(revision) is not None
    except (CommandError, RevisionError):  # an id none of the revisions has
        return False


async def wait_for_schema(engine: AsyncEngine, seconds: float) -> None:
    """Return once the database is at head; wait up to `seconds` for `supportrouter db upgrade`
    (a line every few seconds), then raise `SchemaNotReady`. Never changes the schema."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    next_line = loop.time()
    while True:
        async with engine.connect() as conn:
            state = await conn.run_sync(read_state)
        if state.at_head:
            return
        if not state.known:
            raise SchemaNotReady(f"the database's schema is at {state.describe()}")
        now = loop.time()
        if now >= deadline:
            raise SchemaNotReady(
                f"the database's schema is at {state.describe()}; this version needs "
                f"{state.head}. Waited {seconds:g} s: run `{UPGRADE}` first"
            )
        if now >= next_line:
            log.warning(
                "store.schema_behind",
                current=state.current,
                head=state.head,
                legacy=state.legacy,
                waiting_seconds=round(deadline - now, 1),
                hint=f"run `{UPGRADE}`",
            )
            next_line = now + _LOG_EVERY
        await asyncio.sleep(min(1.0, deadline - now))
