"""The image's health check: is the `supportrouter` process in this container doing its job?

A role that serves HTTP (`run gateway`, `run all`) is healthy when its `/readyz` answers 200.
The pipeline roles (`run classifier|dispatcher|sender`) listen on no port, so one of them is
healthy when the process holds an established TCP connection to a Kafka bootstrap server's port
(its consumers' and producer's connections): a stuck or disconnected worker is reported.

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
ESTABLISHED = "01"


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


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def established_remote_ports(pid: int) -> set[int]:
    """Remote ports of the process's established TCP connections (IPv4 and IPv6)."""
    mine = socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(f"/proc/{pid}/net/{Path(table).name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == ESTABLISHED and inode in mine:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


def connected_to_kafka(pid: int, bootstrap_servers: str) -> tuple[bool, str]:
    wanted = {int(server.rsplit(":", 1)[1]) for server in bootstrap_servers.split(",") if server}
    held = established_remote_ports(pid)
    if wanted & held:
        return True, f"connected to Kafka (port {sorted(wanted & held)[0]})"
    return False, f"no established connection to Kafka ({bootstrap_servers})"


def check(pid: int, environ: dict[str, str]) -> tuple[bool, str]:
    role = role_of(pid)
    if role is None:
        return False, f"process {pid} is not `supportrouter run`"
    if role in HTTP_ROLES:
        return ready_over_http(int(environ.get("SUPPORTROUTER_HTTP_PORT", "8080")))
    bootstrap = environ.get("SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        return False, "SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS is not set"
    return connected_to_kafka(pid, bootstrap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, default=1)
    args = parser.parse_args(argv)
    healthy, reason = check(args.pid, dict(os.environ))
    print(("healthy: " if healthy else "unhealthy: ") + reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
