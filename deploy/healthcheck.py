"""The image's health check: is the `supportrouter` process in this container doing its job?

Every role serves `/readyz` (ready: its broker answers and, where it has one, its store): the
gateway (`run gateway`, `run all`) on SUPPORTROUTER_HTTP_PORT, a classifier, dispatcher or
sender run alone on SUPPORTROUTER_STATUS_PORT (8081, 8082, 8083 by default). Healthy means it
answered 200.

Standard library only: it runs with the image's Python, beside the router, every few seconds.
`--pid` names the process to look at (default 1, the container's entry point).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

HTTP_ROLES = {"all", "gateway"}
# The same defaults as router/app.py's STATUS_PORTS (this file may not import the router).
STATUS_PORTS = {"classifier": 8081, "dispatcher": 8082, "sender": 8083}


def role_of(pid: int) -> str | None:
    """The role of `supportrouter run [ROLE]` (None: the process runs another command)."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    if "run" not in args:
        return None
    rest = [a for a in args[args.index("run") + 1 :] if a and not a.startswith("-")]
    return rest[0] if rest else "all"


def ready_over_http(port: int) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return response.status == 200, f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def port_of(role: str, environ: dict[str, str]) -> int | None:
    if role in HTTP_ROLES:
        return int(environ.get("SUPPORTROUTER_HTTP_PORT", "8080"))
    if role not in STATUS_PORTS:
        return None
    return int(environ.get("SUPPORTROUTER_STATUS_PORT") or STATUS_PORTS[role])


def check(pid: int, environ: dict[str, str]) -> tuple[bool, str]:
    role = role_of(pid)
    if role is None:
        return False, f"process {pid} is not `supportrouter run`"
    port = port_of(role, environ)
    if port is None:
        return False, f"unknown role {role!r}"
    return ready_over_http(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, default=1)
    args = parser.parse_args(argv)
    healthy, reason = check(args.pid, dict(os.environ))
    print(("healthy: " if healthy else "unhealthy: ") + reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
