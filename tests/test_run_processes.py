"""`supportrouter run` with the stages in processes of their own (SUPPORTROUTER_PROCESSES):
one command, one signal, the whole pipeline, and no process left behind."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from router.bus.reader import read_to_end
from router.cli import run
from router.cli.main import build_parser
from router.store.conversations import ConversationStore
from tests.conftest import migrated_sqlite
from tests.test_process import _alive, _children, _env, _kill_if_running, _start

TOKEN = "multi-process-twilio-token"
FRAUD = "someone made a payment from my wallet that I did not make"


def _tree(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        for child in _children(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def _roles(pids: list[int]) -> list[str]:
    """What each process runs: the last word of its command line (`... run ROLE`), sorted."""
    return sorted(
        Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-2].decode() for pid in pids
    )


async def _banner(process: asyncio.subprocess.Process) -> str:
    """Every worker trains the classifier at its start: on a busy machine that takes a while."""
    lines = []
    async with asyncio.timeout(240):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"router exited early: {''.join(lines)}")
            lines.append(line)
            if line.strip().startswith("supervisor login"):
                return "".join(lines)


async def _post_sms(
    http: aiohttp.ClientSession, base: str, sid: str, body: str, sender: str = "+15550001234"
) -> None:
    """A signed Twilio SMS webhook to the router's gateway at `base`, answered 200."""
    url = f"{base}/webhooks/twilio/messaging"
    params = {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": "+15550000000",
        "Body": body,
        "NumMedia": "0",
    }
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)}
    async with http.post(url, data=params, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def _fraud_report_reaches_the_fraud_queue(
    env: dict[str, str], sid: str = "SM" + "7" * 32, sender: str = "+15550001234"
) -> None:
    """A signed SMS fraud report through the router's gateway, until the store has it queued."""
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{env['SUPPORTROUTER_HTTP_PORT']}"
        await _post_sms(http, base, sid, FRAUD, sender)
    async with ConversationStore(env["SUPPORTROUTER_DATABASE_URL"]) as store:
        async with asyncio.timeout(120):
            while not any(
                sender in c["conversation_key"] for c in await store.queue_conversations("fraud")
            ):
                await asyncio.sleep(0.2)


async def _stops_leaving_nothing(process: asyncio.subprocess.Process, tree: list[int]) -> None:
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        assert await process.wait() == 0
    assert [pid for pid in tree if _alive(pid)] == []


def _env_for_processes(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = _env(
        tmp_path,
        SUPPORTROUTER_CHANNELS='["sms"]',
        SUPPORTROUTER_ADMIN_PASSWORD="multi-process-admin",
        TWILIO_AUTH_TOKEN=TOKEN,
        **extra,
    )
    env["SUPPORTROUTER_PUBLIC_URL"] = f"http://127.0.0.1:{env['SUPPORTROUTER_HTTP_PORT']}"
    return env


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_run_in_processes_takes_a_webhook_end_to_end_and_a_signal_leaves_no_orphan(
    tmp_path: Path, sig: signal.Signals
):
    env = _env_for_processes(tmp_path, SUPPORTROUTER_PROCESSES="2")
    process = await _start(env, stderr=asyncio.subprocess.DEVNULL)
    try:
        banner = await _banner(process)
        # On the embedded broker the gateway classifies: no classifier stage.
        assert "processes               1 dispatcher, 1 sender, 1 gateway" in banner
        tree = _tree(process.pid)
        assert len(tree) == 4  # the broker and three workers
        await _fraud_report_reaches_the_fraud_queue(env)
        process.send_signal(sig)
        async with asyncio.timeout(60):
            code = await process.wait()
        assert code == 0
        assert [pid for pid in tree if _alive(pid)] == []
    finally:
        await _kill_if_running(process)


async def test_run_on_a_cluster_it_was_given_starts_its_workers_there_when_told_how_many(
    tmp_path: Path, broker
):
    """On a cluster `auto` is one process (tests/test_process.py); a number starts the workers,
    on that cluster, with no broker of their own: the pipeline end to end, then a clean stop."""
    env = _env_for_processes(tmp_path, SUPPORTROUTER_PROCESSES="2", **broker.env())
    process = await _start(env, stderr=asyncio.subprocess.DEVNULL)
    try:
        banner = await _banner(process)
        assert "1 classifier, 1 dispatcher, 1 sender, 1 gateway" in banner
        assert f"Kafka                   {broker.bootstrap_servers}" in banner
        tree = _tree(process.pid)
        assert _roles(tree) == ["classifier", "dispatcher", "gateway", "sender"]  # no broker
        await _fraud_report_reaches_the_fraud_queue(env)
        await _stops_leaving_nothing(process, tree)
    finally:
        await _kill_if_running(process)


async def test_run_in_processes_starts_its_grown_broker_again_and_still_takes_a_webhook(
    tmp_path: Path,
):
    """The embedded broker past its memory limit (1 MB: from its start) is started again by the
    supervisor once it holds a record everyone read; the workers and the gateway's journal follow
    it, and nothing is left behind."""
    env = _env_for_processes(
        tmp_path,
        SUPPORTROUTER_PROCESSES="2",
        SUPPORTROUTER_EMBEDDED_BROKER_MAX_MB="1",
        SUPPORTROUTER_EMBEDDED_BROKER_CHECK_SECONDS="0.5",
    )
    process = await _start(env, stderr=asyncio.subprocess.DEVNULL)
    try:
        await _banner(process)

        def brokers() -> set[int]:
            return {pid for pid in _children(process.pid) if "memory://" in _cmdline(pid)}

        first = brokers()
        assert len(first) == 1
        await _fraud_report_reaches_the_fraud_queue(env)  # an empty broker is never restarted
        async with asyncio.timeout(60):
            while not (now := brokers()) or now == first:
                await asyncio.sleep(0.1)
        assert not any(_alive(pid) for pid in first)  # ended, not left running beside it
        await _fraud_report_reaches_the_fraud_queue(env, "SM" + "8" * 32, "+15550005678")
        tree = _tree(process.pid)
        await _stops_leaving_nothing(process, tree)
    finally:
        await _kill_if_running(process)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def test_the_supervisors_gateway_is_not_ready_until_told_and_keeps_what_it_takes_meanwhile(
    tmp_path: Path, broker
):
    """The gateway worker serves the whole router's /readyz: it answers 503 until the supervisor
    says (SIGUSR2) every other worker is up, so nothing takes a started gateway for a ready
    router. A webhook it takes meanwhile still gets its 200 and is kept: it is on the broker."""
    env = _env_for_processes(tmp_path, **broker.env())
    await migrated_sqlite(tmp_path / "store.db")  # the database _env names, at the latest schema
    process = await _start(env, "--held", "gateway", stderr=asyncio.subprocess.DEVNULL)
    base = f"http://127.0.0.1:{env['SUPPORTROUTER_HTTP_PORT']}"
    try:
        await _banner(process)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503
                assert "still starting" in (await resp.json())["problems"]["workers"]
            await _post_sms(http, base, "SM" + "5" * 32, "my transfer failed twice today")
            topics = broker.settings().topics
            lanes = [topics.inbound_standard, topics.inbound_urgent]
            records = await read_to_end(broker.bootstrap_servers, lanes)
            assert [r for r in records if r.value and b"SM" + b"5" * 32 in r.value]
            process.send_signal(signal.SIGUSR2)
            async with asyncio.timeout(30):
                while True:
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                        assert set((await resp.json())["problems"]) == {"workers"}
                    await asyncio.sleep(0.1)
        await _stops_leaving_nothing(process, [])
    finally:
        await _kill_if_running(process)


@pytest.mark.parametrize("role", ["all", "dispatcher"])
def test_held_is_refused_but_for_a_gateway(role: str, capsys) -> None:
    """`--held` waits for a supervisor's word; anywhere but its gateway worker nobody gives it."""
    assert run.command(build_parser().parse_args(["run", "--held", role])) == 2
    assert "--held is the supervisor's own" in capsys.readouterr().err


async def test_a_reload_asked_while_the_workers_start_reaches_each_once_it_is_up(tmp_path: Path):
    """SIGHUP to the supervisor while its workers are still starting: a worker's handlers may
    not be in place yet, and a SIGHUP's default is to end the process. The supervisor holds the
    signal until the worker is up, so the router starts, and every worker reloads."""
    env = _env_for_processes(tmp_path, SUPPORTROUTER_PROCESSES="2")
    process = await _start(env)
    assert process.stderr is not None
    logs: list[bytes] = []
    reading = asyncio.ensure_future(_read_lines(process.stderr, logs))
    try:
        async with asyncio.timeout(60):
            while _workers(process.pid) != ["dispatcher", "gateway", "sender"]:
                await asyncio.sleep(0.01)
        process.send_signal(signal.SIGHUP)
        banner = await _banner(process)
        assert "processes               1 dispatcher, 1 sender, 1 gateway" in banner
        async with asyncio.timeout(60):
            while sum(b'"config.unchanged"' in line for line in logs) < 3:
                await asyncio.sleep(0.1)
        await _stops_leaving_nothing(process, [])
    finally:
        await _kill_if_running(process)
        reading.cancel()


def _workers(pid: int) -> list[str]:
    """The roles of the worker processes started so far."""
    lines = [_cmdline(child) for child in _tree(pid)]
    return sorted(line.split()[-1] for line in lines if " router.cli run " in line)


async def _read_lines(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    while line := await stream.readline():
        into.append(line)
