"""`supportrouter run` as an operator runs it: a real process, real signals, no orphans."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from router.bus.embedded import free_port
from tests.conftest import CONFIG_DIR

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTROUTER_")}
    env.update(
        SUPPORTROUTER_HTTP_PORT=str(free_port()),
        SUPPORTROUTER_HTTP_HOST="127.0.0.1",
        SUPPORTROUTER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/store.db",
        SUPPORTROUTER_CONFIG_DIR=str(CONFIG_DIR),
        SUPPORTROUTER_LOG_FORMAT="json",
        SUPPORTROUTER_STATUS_PORT="0",  # a free port for a service run alone
    )
    env.update(extra)
    return env


async def _start(
    env: dict[str, str], *args: str, stderr: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """`supportrouter run ARGS`; stderr=DEVNULL where nobody reads its logs, so a busy router
    never blocks on a full pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router.cli",
        "run",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )


async def _banner(process: asyncio.subprocess.Process) -> str:
    lines = []
    # A bound on a hang, not a measure: the workers' start shares two cores in CI.
    async with asyncio.timeout(90):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                err = (await process.stderr.read()).decode()
                raise AssertionError(f"router exited early: {''.join(lines)}\n{err[-3000:]}")
            lines.append(line)
            if line.strip().startswith("supervisor login"):
                return "".join(lines)


async def _kill_if_running(process: asyncio.subprocess.Process) -> None:
    """What a test leaves of its router when it failed half-way: nothing."""
    if process.returncode is None:
        process.kill()
        await process.wait()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_run_prints_where_things_are_and_a_signal_stops_it_without_an_orphan(tmp_path, sig):
    env = _env(tmp_path)
    process = await _start(env)
    try:
        banner = await _banner(process)
        port = env["SUPPORTROUTER_HTTP_PORT"]
        assert f"http://localhost:{port}/chat/" in banner
        assert f"http://localhost:{port}/console/" in banner
        assert "admin / " in banner and "generated now" in banner
        assert "embedded Kafka broker" in banner
        # the embedded broker, and by default (SUPPORTROUTER_PROCESSES=auto) on a machine of
        # two cores or more the gateway, the sender, and a dispatcher per two (the gateway
        # classifies: on the embedded broker there is no classifier stage)
        cores = os.cpu_count() or 1
        workers = 0 if cores < 2 else 2 + cores // 2
        children = _children(process.pid)
        assert len(children) == 1 + workers, children
        assert all(map(_alive, children))
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/readyz") as resp,
        ):
            assert resp.status == 200
        process.send_signal(sig)
        async with asyncio.timeout(30):
            code = await process.wait()
        assert code == 0
        assert not any(map(_alive, children))
        tail = (await process.stdout.read()).decode()
        assert "stopped." in tail
    finally:
        await _kill_if_running(process)


async def test_a_killed_router_takes_its_embedded_broker_and_workers_with_it(tmp_path):
    process = await _start(_env(tmp_path))
    try:
        await _banner(process)
        children = _children(process.pid)  # the broker and the workers
        assert children
        process.kill()  # no chance to clean up: the kernel's parent-death signal must do it
        await process.wait()
        async with asyncio.timeout(10):
            while any(map(_alive, children)):
                await asyncio.sleep(0.05)
    finally:
        await _kill_if_running(process)


async def test_with_bootstrap_servers_set_no_broker_is_started_and_that_cluster_is_used(
    tmp_path, broker
):
    env = _env(tmp_path, SUPPORTROUTER_ADMIN_PASSWORD="operator-chosen", **broker.env())
    process = await _start(env)
    try:
        banner = await _banner(process)
        assert f"Kafka                   {broker.bootstrap_servers}" in banner
        assert "embedded Kafka broker" not in banner
        assert "SUPPORTROUTER_ADMIN_PASSWORD" in banner and "operator-chosen" not in banner
        assert _children(process.pid) == []
        # The router made its topics on the given cluster.
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            assert set(broker.settings().topics.all()) <= set(await admin.list_topics())
        finally:
            await admin.close()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()


async def test_one_service_alone_needs_a_cluster_and_says_so(tmp_path):
    process = await _start(_env(tmp_path), "classifier")
    async with asyncio.timeout(30):
        code = await process.wait()
    err = (await process.stderr.read()).decode()
    assert code == 1
    assert "SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS" in err


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_tail_refuses_a_max_that_is_not_a_count(value):
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", "tail", "support.inbound", "--max", value],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"argument --max: expected a whole number from 1 to 1,000,000,000, not {value!r}" in (
        result.stderr
    )


async def test_tail_prints_the_records_of_a_topic_as_json_lines(tmp_path, broker):
    from router.bus.kafka import KafkaBus

    settings = broker.settings()
    async with KafkaBus(settings, broker.bootstrap_servers, embedded=broker.embedded) as bus:
        await bus.publish(bus.topics.classified, json.dumps({"hello": "世界"}).encode(), key=b"k1")
    env = _env(tmp_path, **broker.env())
    tail = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router.cli",
        "tail",
        settings.topics.classified,
        "--from-beginning",
        "--max",
        "1",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await tail.communicate()
    assert tail.returncode == 0, err.decode()
    record = json.loads(out.decode().strip())
    assert record["topic"] == settings.topics.classified and record["key"] == "k1"
    assert record["value"] == {"hello": "世界"}
