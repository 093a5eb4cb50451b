"""Health, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio


async def test_healthz_readyz_and_metrics(running_router):
    r = running_router
    async with r.http.get(r.url("/healthz")) as resp:
        assert resp.status == 200
    async with r.http.get(r.url("/readyz")) as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ready"
    async with r.http.get(r.url("/metrics")) as resp:
        assert resp.status == 200
        assert "supportrouter_messages_received_total" in await resp.text()


async def test_readyz_names_kafka_when_the_broker_is_gone_and_recovers_when_it_is_back(
    router_on_its_own_broker,
):
    r, broker = router_on_its_own_broker
    await broker.stop()
    try:
        async with r.http.get(r.url("/readyz")) as resp:
            body = await resp.json()
        assert resp.status == 503
        assert "kafka" in body["problems"] and "database" not in body["problems"]
    finally:
        await broker.start()  # same port: the clients reconnect
    for _ in range(100):
        async with r.http.get(r.url("/readyz")) as resp:
            if resp.status == 200:
                break
        await asyncio.sleep(0.1)
    assert resp.status == 200


async def test_readyz_names_the_database_when_it_cannot_be_opened(tmp_path):
    import aiohttp

    from router.app import Router
    from tests.conftest import make_settings

    db = tmp_path / "store.db"
    async with (
        Router(make_settings(f"sqlite+aiosqlite:///{db}")) as router,
        aiohttp.ClientSession() as http,
    ):
        await router.store.engine.dispose()  # no pooled connection hides the loss
        for leftover in tmp_path.glob("store.db*"):
            leftover.unlink()
        db.mkdir()  # where the database file was, a directory: SQLite cannot open it (even as root)
        async with http.get(f"http://127.0.0.1:{router.gateway.port}/readyz") as resp:
            body = await resp.json()
        db.rmdir()
    assert resp.status == 503
    assert "database" in body["problems"] and "kafka" not in body["problems"]
