"""A PostgreSQL cluster the project owns: data under var/postgres, loopback only, trust auth.

Run as root, the server runs as Debian's `postgres` user (PostgreSQL refuses root), so its
directory is handed to that user. fsync is off: a test cluster trades durability for speed.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devenv.ports import free_port


def _bindir() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if not candidates:
        raise RuntimeError("PostgreSQL's server is not installed (Debian package postgresql)")
    return candidates[-1].parent


def _reachable(root: Path) -> Path:
    """`root`, or, when we are root and Debian's `postgres` user cannot reach it (a checkout
    under /root, say), a directory of the same name under /var/tmp that it can. The same
    checkout always maps to the same place, so `down` finds what `up` started."""
    if os.geteuid() != 0:
        return root
    parent = root.parent.resolve()
    while not parent.exists():
        parent = parent.parent
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(parent)], check=False
    )
    if probe.returncode == 0:
        return root
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"supportrouter-{tag}" / root.name


@dataclass
class PostgresCluster:
    root: Path  # var/postgres
    database: str = "test"
    port: int = 0

    def __post_init__(self) -> None:
        self.root = _reachable(self.root)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _as_owner(self, *command: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return list(command)

    def _run(self, *command: str) -> str:
        done = subprocess.run(self._as_owner(*command), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
            )
        return done.stdout

    def version(self) -> str:
        return self._run(str(_bindir() / "postgres"), "--version").split()[
            2
        ]  # postgres (PostgreSQL) 15.18 ...

    def running(self) -> bool:
        pid = self.data / "postmaster.pid"
        if not pid.exists():
            return False
        done = subprocess.run(
            self._as_owner(str(_bindir() / "pg_ctl"), "-D", str(self.data), "status"),
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def start(self) -> float:
        """Create the cluster if needed, start it, create the database; return the seconds taken."""
        began = time.monotonic()
        bindir = _bindir()
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.root.parent, self.root):  # the server must reach its directory
                path.chmod(path.stat().st_mode | 0o011)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            self._run(
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        if self.running():
            self.port = int((self.data / "postmaster.pid").read_text().splitlines()[3])
        else:
            self.port = self.port or free_port(5432)
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=300"
            )
            self._run(
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            )
        self._create_database()
        return time.monotonic() - began

    def _create_database(self) -> None:
        psql = [
            shutil.which("psql") or str(_bindir() / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = self._run(*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if exists.strip() != "1":
            self._run(*psql, f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if self.running():
            self._run(str(_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
