"""The store's statements per message: what the router asks its database for each one.

Runs the whole router in this process (SQLite, the embedded broker), posts --messages signed
SMS webhooks (one customer each, 32 at a time) and waits until every message is stored; a
SQLAlchemy cursor listener counts each statement and sums its wall time (the time waiting for
SQLite's lock included). Prints the totals and the statements that took the most time.

    .venv/bin/python bench/store_statements.py [--messages 1000] [--top 20] [--database-url URL]

With --database-url (an empty PostgreSQL database, e.g. under `python -m devenv run`) the store
is there instead, and each statement's time is its round trip to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from loadgen import PATH, sign_sms  # noqa: E402
from options import whole  # noqa: E402
from throughput import TOKEN, texts  # noqa: E402

from router.app import Router  # noqa: E402
from router.cli.main import database_url_argument  # noqa: E402
from router.core.settings import Settings  # noqa: E402


class Statements:
    """Each statement's count and summed wall time, keyed by its first 110 characters."""

    def __init__(self, engine: sa.Engine):
        self.count: collections.Counter[str] = collections.Counter()
        self.seconds: collections.Counter[str] = collections.Counter()
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    @staticmethod
    def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info.setdefault("started", []).append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        key = re.sub(r"\s+", " ", statement)[:110]
        self.count[key] += 1
        self.seconds[key] += time.perf_counter() - conn.info["started"].pop()


async def run(messages: int, top: int, database_url: str | None) -> None:
    os.environ["TWILIO_AUTH_TOKEN"] = TOKEN
    directory = tempfile.mkdtemp(prefix="store-statements-")
    settings = Settings(
        database_url=database_url or f"sqlite+aiosqlite:///{directory}/store.db",
        http_host="127.0.0.1",
        http_port=0,
        status_port=0,
        config_dir=ROOT / "config",
        admin_password="store-statements-password",
        channels=["sms"],
    )
    async with Router(settings) as router:
        statements = Statements(router.store.engine.sync_engine)
        base = f"http://127.0.0.1:{router.gateway.port}"
        requests = sign_sms(base + PATH, TOKEN, "5e", texts(messages))
        started = time.perf_counter()
        gate = asyncio.Semaphore(32)
        async with aiohttp.ClientSession() as http:

            async def post(body: str, signature: str) -> None:
                headers = {
                    "X-Twilio-Signature": signature,
                    "Content-Type": "application/x-www-form-urlencoded",
                }
                async with gate, http.post(base + PATH, data=body, headers=headers) as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"{answer.status}: {await answer.text()}")

            await asyncio.gather(*(post(r.body, r.signature) for r in requests))
        accepted = time.perf_counter()
        stored = sa.text("SELECT count(*) FROM messages WHERE direction = 'in'")
        while True:
            async with router.store.engine.connect() as conn:
                if (await conn.execute(stored)).scalar_one() >= messages:
                    break
            await asyncio.sleep(0.05)
        done = time.perf_counter()
    total = sum(statements.count.values())
    print(
        f"{messages} messages: accepted at {messages / (accepted - started):.0f}/s, "
        f"stored at {messages / (done - started):.0f}/s (this process also posts them)"
    )
    print(
        f"{total} statements, {total / messages:.2f} per message, "
        f"{sum(statements.seconds.values()):.1f} s inside them (the counting query included)"
    )
    for key, seconds in statements.seconds.most_common(top):
        print(f"{statements.count[key]:7d} {seconds:7.2f} s  {key}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=whole(1, 1_000_000), default=1000)
    parser.add_argument("--top", type=whole(1, 10_000), default=20)
    parser.add_argument(
        "--database-url",
        type=database_url_argument,
        help="default: SQLite in a temporary directory",
    )
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.top, args.database_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
