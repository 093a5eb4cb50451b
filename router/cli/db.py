"""`supportrouter db upgrade|current|history|revision`: the schema's revisions (Alembic, in
router/store/migrations/).

`upgrade` is what a deployment runs once before the services (they wait for it); `supportrouter
run` with every service in one process runs it itself. Exit codes: 0 done; 1 the database could
not be reached or upgraded; 3 `current --check` on a database not at head."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from router.core.settings import Settings
from router.observability.logs import configure_logging

NOT_AT_HEAD = 3


def upgrade(args: argparse.Namespace) -> int:
    from router.store.migrate import SchemaError
    from router.store.migrate import upgrade as upgrade_schema

    url = _url(args)
    try:
        done = asyncio.run(upgrade_schema(url, args.revision))
    except SchemaError as exc:
        print(f"upgrade refused: {exc}", file=sys.stderr)
        return 1
    except (OSError, SQLAlchemyError) as exc:
        return _unreachable(url, exc)
    print(f"database  {_shown(url)}")
    if done.adopted:
        print(
            "adopted   tables made before migrations, matching revision 0001: stamped, "
            "every row kept"
        )
    before = done.before.current or "(empty)"
    if done.before.current == done.after:
        print(f"revision  {done.after}: already there, nothing to do")
    else:
        print(f"upgraded  {before} -> {done.after}")
    return 0


def current(args: argparse.Namespace) -> int:
    from router.store.migrate import current as current_state

    url = _url(args)
    try:
        state = asyncio.run(current_state(url))
    except (OSError, SQLAlchemyError) as exc:
        return _unreachable(url, exc)
    print(f"database  {_shown(url)}")
    print(f"revision  {state.describe()}")
    return NOT_AT_HEAD if args.check and not state.at_head else 0


def history(_args: argparse.Namespace) -> int:
    from router.store.revisions import history as revisions

    for revision in revisions():
        after = revision.down_revision or "(empty)"
        mark = "  (head)" if revision.is_head else ""
        title = " ".join(revision.message.split())
        print(f"{after} -> {revision.revision}{mark}  {title}")
    return 0


def revision(args: argparse.Namespace) -> int:
    from router.store.migrate import new_revision

    path = new_revision(args.message, empty=args.empty)
    if path is None:
        print("no change between router/store/schema.py and the latest revision: nothing written")
        return 1
    print(f"wrote {path}\nread it, run `ruff format` on it, and test it (docs/architecture.md)")
    return 0


def _url(args: argparse.Namespace) -> str:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return args.database_url or settings.database_url


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _unreachable(url: str, exc: BaseException) -> int:
    print(f"cannot reach the database at {_shown(url)}: {exc}", file=sys.stderr)
    return 1
