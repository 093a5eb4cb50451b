"""Shared fixtures: real brokers (embedded Tansu and Apache Kafka), real SQLite and PostgreSQL,
the whole router.

Where the services are: SUPPORTROUTER_TEST_POSTGRES and SUPPORTROUTER_TEST_KAFKA (`make test`
sets both), else var/devenv.json (`python -m devenv up`), else PostgreSQL on 127.0.0.1:5432 and
an Apache Kafka started here for the session. Under CI=true a missing service fails the run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from router.app import Router
from router.bus.embedded import EmbeddedBroker
from router.bus.kafka import KafkaBus
from router.core.settings import Settings
from router.policy.rules import Rules
from router.store.conversations import ConversationStore
from router.store.migrate import upgrade as upgrade_schema
from tests.brokers import KINDS, Broker, names_of_my_own, router_overrides, shared_kafka_address
from tests.chat_helpers import chat_ws_url

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
ADMIN_PASSWORD = "test-admin-password"
UNDER_CI = os.environ.get("CI") == "true"
# Services run alone in tests serve /metrics on a free port, never on the fixed defaults
# (8081-8083), which another test's service may still hold.
os.environ.setdefault("SUPPORTROUTER_STATUS_PORT", "0")


def _postgres_dsn() -> str:
    if os.environ.get("SUPPORTROUTER_TEST_POSTGRES"):
        return os.environ["SUPPORTROUTER_TEST_POSTGRES"]
    state = ROOT / "var" / "devenv.json"
    if state.exists():
        dsn = json.loads(state.read_text()).get("SUPPORTROUTER_TEST_POSTGRES")
        if dsn:
            return dsn
    return "postgresql://postgres@127.0.0.1:5432/test"


PG_ADMIN_DSN = _postgres_dsn()


def supportrouter(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`supportrouter ARGS` as an operator runs it, in `cwd`, with this checkout's code and `env`
    added to the environment; its exit status and output, never raised."""
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


def missing_service(what: str) -> None:
    """Skip with the reason, or fail under CI, where every service must be there."""
    if UNDER_CI:
        pytest.fail(f"{what} is required under CI=true", pytrace=False)
    pytest.skip(f"{what} (`make test` starts it)")


def pytest_sessionstart(session: pytest.Session) -> None:
    (ROOT / "var" / "fault-accounting.jsonl").unlink(missing_ok=True)  # this run's figures only


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        choices=("tansu", "kafka", "both"),
        default=os.environ.get("SUPPORTROUTER_TEST_BROKERS", "both"),
        help="which broker the Kafka-facing tests run on (default both; env SUPPORTROUTER_TEST_BROKERS)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = config.getoption("--broker")
    if chosen == "both":
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("broker_kind") if callspec else None
        (drop if kind is not None and kind != chosen else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def shared_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Apache Kafka every Kafka-facing test shares (each with names of its own)."""
    address = shared_kafka_address()
    if address:
        yield address
        return
    from devenv.kafka import TEST_OVERRIDES, KafkaServer

    server = KafkaServer(tmp_path_factory.mktemp("kafka"), overrides=dict(TEST_OVERRIDES))
    try:
        server.start()
    except Exception as exc:  # no Java, no Maven, no jars: say which
        missing_service(f"Apache Kafka could not be started here ({exc})")
    try:
        yield server.bootstrap_servers
    finally:
        server.stop()


@pytest.fixture(params=[KINDS[0], pytest.param(KINDS[1], marks=pytest.mark.kafka)])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Which broker: the test id names it (`tansu` or `kafka`)."""
    return request.param


@pytest.fixture
async def broker(broker_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    """A broker to put a bus on: a fresh Tansu, or the shared Apache Kafka with names of the
    test's own. Neither may be stopped by the test (see `own_broker`)."""
    if broker_kind == "tansu":
        async with EmbeddedBroker() as tansu:
            yield Broker("tansu", tansu.bootstrap_servers)
        return
    address = request.getfixturevalue("shared_kafka")
    yield Broker("kafka", address, {"kafka_bootstrap_servers": address, **names_of_my_own()})


@pytest.fixture
async def own_broker(broker_kind: str, tmp_path: Path) -> AsyncIterator[Broker]:
    """A broker the test alone uses, so it may stop and restart it."""
    if broker_kind == "tansu":
        tansu = EmbeddedBroker()
        await tansu.start()
        try:
            yield Broker("tansu", tansu.bootstrap_servers, _server=tansu)
        finally:
            await tansu.stop()
        return
    from devenv.kafka import TEST_OVERRIDES, KafkaServer

    kafka = KafkaServer(tmp_path / "kafka", overrides=dict(TEST_OVERRIDES))
    try:
        kafka.start()
    except Exception as exc:
        missing_service(f"Apache Kafka could not be started here ({exc})")
    try:
        yield Broker(
            "kafka",
            kafka.bootstrap_servers,
            {"kafka_bootstrap_servers": kafka.bootstrap_servers},
            _server=kafka,
        )
    finally:
        kafka.stop()
        shutil.rmtree(tmp_path / "kafka", ignore_errors=True)


async def _postgres_available() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


@contextlib.asynccontextmanager
async def fresh_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/store.db"
        return
    import asyncpg

    problem = await _postgres_available()
    if problem:
        missing_service(f"PostgreSQL at {PG_ADMIN_DSN} ({problem})")
    name = f"sr_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request, tmp_path) -> AsyncIterator[str]:
    """A fresh database of each kind, its schema at the latest revision (as after `supportrouter
    db upgrade`), no rows; `empty_database_url`: not even the schema."""
    async with fresh_database(request.param, tmp_path) as url:
        await upgrade_schema(url)
        yield url


@pytest.fixture
async def bus_and_store(database_url, broker):
    """A broker, a bus and a store (SQLite called on the loop, as the workers do), no router:
    for tests that play the dispatcher themselves, e.g. one that crashed. One partition."""
    settings = broker.settings(database_url=database_url, partitions=1)
    async with ConversationStore(database_url, sqlite_on_loop=True) as store:
        async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
            yield bus, store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_database_url(request, tmp_path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


async def migrated_sqlite(path: Path) -> str:
    """A SQLite database at `path` with the schema at the latest revision: its URL."""
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_schema(url)
    return url


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

    async def login(
        self, username: str = "admin", password: str = ADMIN_PASSWORD
    ) -> dict[str, str]:
        async with self.http.post(
            self.url("/api/login"), json={"username": username, "password": password}
        ) as r:
            assert r.status == 200, await r.text()
            return {"Authorization": "Bearer " + (await r.json())["token"]}

    async def chat_session(self, name: str | None = None) -> str:
        async with self.http.post(
            self.url("/chat/sessions"), json={"name": name} if name else {}
        ) as r:
            assert r.status == 201
            return (await r.json())["session"]

    async def chat_ws_url(self, token: str) -> str:
        return await chat_ws_url(self.http, self.base_url, token)


@functools.cache
def _rules_of(config_dir: Path) -> Rules:
    return Rules(config_dir)


def new_router(settings: Settings) -> Router:
    """A Router. On the shipped config/ it reuses one Rules per session: building them trains the
    classifier (about two seconds a router), and no test changes config/ itself (the reload
    tests work on copies)."""
    rules = _rules_of(CONFIG_DIR) if Path(settings.config_dir) == CONFIG_DIR else None
    return Router(settings, rules=rules)


def router_settings(
    database_url: str, broker_kind: str, request: pytest.FixtureRequest, **overrides
) -> Settings:
    """Settings for a whole Router on `broker_kind`: Tansu embedded by the Router itself (as
    `make run` does), or the shared Apache Kafka with topic and group names of the test's own."""
    shared = request.getfixturevalue("shared_kafka") if broker_kind == "kafka" else None
    return make_settings(database_url, **{**router_overrides(broker_kind, shared), **overrides})


@pytest.fixture(scope="module")
def rules() -> Rules:
    """The shipped rules (config/), the classifier built once for a module. A module that needs
    other rules defines its own `rules`."""
    return Rules(CONFIG_DIR)


@pytest.fixture
async def running_router(database_url, broker_kind, request) -> AsyncIterator[RunningRouter]:
    """The whole router on a free port, on each broker and each database."""
    settings = router_settings(database_url, broker_kind, request)
    async with new_router(settings) as router, aiohttp.ClientSession() as http:
        yield RunningRouter(router, http)


@pytest.fixture
async def router_on_its_own_broker(
    database_url, own_broker
) -> AsyncIterator[tuple[RunningRouter, Broker]]:
    """A whole router and a broker only it uses, which the test may stop and start: Tansu
    embedded by the router (memory only; `own_broker`'s Tansu is left idle), or an Apache Kafka
    of the test's own (durable log). Sessions of 2 s on both, so a short outage breaks every
    consumer's group session."""
    overrides = own_broker.overrides if own_broker.kind == "kafka" else {}
    settings = make_settings(database_url, consumer_session_timeout_ms=2000, **overrides)
    async with new_router(settings) as router, aiohttp.ClientSession() as http:
        if own_broker.kind == "kafka":
            yield RunningRouter(router, http), own_broker
        else:
            assert router.broker is not None
            yield (
                RunningRouter(router, http),
                Broker("tansu", router.broker.bootstrap_servers, _server=router.broker),
            )
