"""Alembic's environment for the store's revisions.

`router/store/migrate.py` always hands over a connection it opened (and locked) itself, through
`config.attributes["connection"]`, and runs Alembic inside its transaction. Without one (Alembic
run by hand with `sqlalchemy.url` set), the async recipe: an async engine of its own, the
migrations run on its connection through `run_sync`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from router.store.schema import metadata

config = context.config


def _skip_empty(_context: Any, _revision: Any, directives: list[Any]) -> None:
    """`supportrouter db revision` writes no file when autogenerate found no change."""
    if config.attributes.get("skip_empty") and directives and directives[0].upgrade_ops.is_empty():
        directives[:] = []


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it: autogenerate writes batch operations, which are
        # plain ALTERs on PostgreSQL.
        render_as_batch=True,
        compare_type=True,
        process_revision_directives=_skip_empty,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_own_engine(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError(
        "offline (--sql) migrations are not supported: use `supportrouter db upgrade`"
    )
shared = config.attributes.get("connection")
if shared is not None:
    run_on(shared)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url: use `supportrouter db upgrade`")
    asyncio.run(_run_on_own_engine(url))
