"""The image's health check (deploy/healthcheck.py) and `make audit` (scripts/audit.py), run
for real: against processes holding real sockets, a real HTTP server, and the advisory services
as this machine reaches them."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# deploy/healthcheck.py, against real processes and sockets.

HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
# A stand-in for `supportrouter run ROLE`: the same command line, nothing else.
HOLDER = "import sys\nprint('ready', flush=True)\nsys.stdin.read()\n"


@contextlib.contextmanager
def process_like_router(role: str) -> Iterator[int]:
    """A process whose command line is `... run ROLE`."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "run", role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        yield child.pid
    finally:
        child.communicate(input="")


def health(pid: int, **environ: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, str(HEALTHCHECK), "--pid", str(pid)],
        capture_output=True,
        text=True,
        env={**os.environ, **environ},
    )
    return done.returncode, done.stdout.strip()


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("role", ["gateway", "dispatcher"])
@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_a_service_is_as_healthy_as_its_readyz_says(role: str, status: int, healthy: bool) -> None:
    handler = type("Readyz", (_Readyz,), {"status": status})
    variable = "SUPPORTROUTER_HTTP_PORT" if role == "gateway" else "SUPPORTROUTER_STATUS_PORT"
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with process_like_router(role) as pid:
                code, said = health(pid, **{variable: str(server.server_port)})
        finally:
            server.shutdown()
    assert (code == 0) is healthy, said
    assert f":{server.server_port}/readyz answered {status}" in said


# scripts/audit.py (`make audit`): never a pass that did not happen.


def test_the_audit_never_calls_a_known_vulnerable_pin_clean(tmp_path: Path) -> None:
    # Jinja2 2.10 has published advisories (CVE-2019-10906 and later ones).
    lock = tmp_path / "vulnerable.lock"
    lock.write_text("jinja2==2.10 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "audit.py"), str(lock)],
        capture_output=True,
        text=True,
        env={**os.environ, "AUDIT_REQUIRED": ""},
    )
    print(done.stdout, done.stderr)
    assert "audit passed" not in done.stdout
    if done.returncode == 1:  # an advisory service answered
        assert "VULNERABLE jinja2 2.10" in done.stdout
    else:  # none could: said so, naming the package
        assert done.returncode == 0
        assert "audit did NOT run for 1 of the 1 packages" in done.stdout
        assert "pins (jinja2)" in done.stdout


def health_of(pid: int, env: dict[str, str]) -> tuple[int, str]:
    return health(pid, **{k: v for k, v in env.items() if k.startswith("SUPPORTROUTER_")})


async def until_health(pid: int, env: dict[str, str], healthy: bool) -> str:
    """Poll the health check until it says `healthy` (or not); what it said last."""
    async with asyncio.timeout(60):
        while True:
            code, said = await asyncio.to_thread(health_of, pid, env)
            if (code == 0) is healthy:
                return said
            await asyncio.sleep(0.5)


async def banner_of(process: asyncio.subprocess.Process) -> str:
    """What `supportrouter run` prints once it is up (bounded generously: a loaded machine)."""
    assert process.stdout is not None
    lines = []
    async with asyncio.timeout(120):
        while not lines or not lines[-1].strip().startswith("supervisor login"):
            line = (await process.stdout.readline()).decode()
            assert line, f"the router exited early: {''.join(lines)}"
            lines.append(line)
    return "".join(lines)


async def test_the_health_check_follows_a_real_router_and_a_real_pipeline_service(
    tmp_path: Path,
) -> None:
    from router.bus.embedded import free_port
    from tests.test_process import _env, _start

    env = _env(tmp_path)
    router = await _start(env, stderr=asyncio.subprocess.DEVNULL)
    worker = None
    try:
        banner = await banner_of(router)
        said = await until_health(router.pid, env, healthy=True)
        assert "/readyz answered 200" in said
        (bootstrap,) = re.findall(r"embedded Kafka broker\s+(\S+)", banner)
        worker_env = _env(
            tmp_path,
            SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            SUPPORTROUTER_STATUS_PORT=str(free_port()),
        )
        worker = await _start(worker_env, "classifier", stderr=asyncio.subprocess.DEVNULL)
        said = await until_health(worker.pid, worker_env, healthy=True)
        assert f":{worker_env['SUPPORTROUTER_STATUS_PORT']}/readyz answered 200" in said
        router.send_signal(signal.SIGTERM)  # the broker goes with it
        await router.wait()
        said = await until_health(worker.pid, worker_env, healthy=False)
        assert "/readyz answered 503" in said
    finally:
        for process in (router, worker):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
