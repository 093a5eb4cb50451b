"""Shared fixtures: real embedded broker, real SQLite and PostgreSQL, the whole router."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from router.app import Router
from router.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
PG_ADMIN_DSN = os.environ.get("SUPPORTROUTER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_PASSWORD = "test-admin-password"


async def _postgres_available() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request, tmp_path) -> AsyncIterator[str]:
    """A fresh, empty database of each kind: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/store.db"
        return
    import asyncpg

    problem = await _postgres_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is required under CI: {problem}")
        pytest.skip(f"PostgreSQL at {PG_ADMIN_DSN} is not reachable: {problem}")
    name = f"sr_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def make_settings(database_url: str, **overrides) -> Settings:
    values = dict(
        database_url=database_url,
        http_host="127.0.0.1",
        http_port=0,
        config_dir=CONFIG_DIR,
        admin_password=ADMIN_PASSWORD,
    )
    values.update(overrides)
    return Settings(**values)


class RunningRouter:
    def __init__(self, router: Router, http: aiohttp.ClientSession):
        self.router = router
        self.http = http
        self.base_url = f"http://127.0.0.1:{router.gateway.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    async def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:
        async with self.http.post(self.url("/api/login"), json={"username": username, "password": password}) as r:
            assert r.status == 200, await r.text()
            return {"Authorization": "Bearer " + (await r.json())["token"]}

    async def chat_session(self, name: str | None = None) -> str:
        async with self.http.post(self.url("/chat/sessions"), json={"name": name} if name else {}) as r:
            assert r.status == 201
            return (await r.json())["session"]


@pytest.fixture
async def running_router(database_url) -> AsyncIterator[RunningRouter]:
    """The whole router, embedded broker included, on a free port."""
    async with Router(make_settings(database_url)) as router, aiohttp.ClientSession() as http:
        yield RunningRouter(router, http)
