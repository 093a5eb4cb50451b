"""What the throughput bench needs around the load: processes, their peak memory, the store's
view of what arrived, and a progress bar."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router.store.outbound import not_sent_yet  # noqa: E402
from router.store.schema import messages  # noqa: E402

REREAD = 500  # rows read again by each poll of what was stored
# The seqs one poll looks at, past the last it saw: a range with both ends, which PostgreSQL
# reads through the primary key. With only `seq > x`, on tables a run has just filled and
# nothing has analyzed yet, it guessed a third of the table and read all of messages at every
# poll (up to 14 ms each, on the cores the router is measured on).
POLL_SEQS = 5_000


class Progress:
    """One line on stderr: the phase, a bar, and a count."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()

    def show(self, phase: str, done: int, total: int) -> None:
        filled = self.width * min(done, total) // max(total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"  {phase:<34} [{bar}] {done:>6}/{total}"
        if self.tty:
            self.stream.write("\r" + line)
        elif done >= total:
            self.stream.write(line + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
        return found
    return []


def _tree(root: int) -> list[int]:
    """`root` and every process below it, each once."""
    found: list[int] = []
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.append(pid)
            stack += _children(pid)
    return found


def _status_kb(pid: int, field: str) -> int | None:
    """A size from /proc/PID/status (VmHWM: the peak resident set; VmRSS: the current one)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a process has used (/proc/PID/stat, fields 14 and 15)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def listening_pid(port: int) -> int | None:
    """The process listening on this TCP port of this machine (a Kafka or PostgreSQL server the
    bench did not start), from /proc/net/tcp{,6} and the processes' sockets; None if none is."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (process / "fd").iterdir()):
                return int(process.name)
    return None


def database_server_pid(url: str) -> int | None:
    """The PostgreSQL server of a database URL, when it listens on this machine (its backends
    are its children); None for SQLite or a server elsewhere."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    if parsed.host not in (None, "", "localhost", "127.0.0.1", "::1"):
        return None
    return listening_pid(parsed.port or 5432)


def _label(pid: int, root_label: str, is_root: bool) -> str:
    if is_root:
        return root_label
    with contextlib.suppress(OSError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = Path(argv[0].decode()).name
        if "tansu" in name:
            return f"{root_label}.broker"
        words = [a.decode() for a in argv if a]
        if "run" in words[:-1]:  # a worker: `run [--held] ROLE`, its role last
            return f"{root_label}.{words[-1]}"
        return f"{root_label}.{name or pid}"
    return f"{root_label}.{pid}"


class PeakMemory:
    """Samples every process of a tree (each one's VmHWM, its peak resident set) until stopped."""

    def __init__(self) -> None:
        self._roots: dict[int, str] = {}
        self._labels: dict[int, str] = {}  # the latest: a worker is its parent's copy until exec
        self._peaks: dict[int, float] = {}
        self._now: dict[int, float] = {}  # the latest resident set (VmRSS) of each process
        self._cpu: dict[int, float] = {}  # the CPU seconds each process had used, last sampled
        self._whole: set[int] = set()  # roots whose tree is one entry (a server's processes)
        self._task: asyncio.Task | None = None

    @property
    def peaks_mb(self) -> dict[str, float]:
        return self._named(self._peaks)

    def resident_mb(self) -> dict[str, float]:
        """Each process's resident set now, by the names of `peaks_mb`."""
        self.sample()
        return self._named(self._now)

    def cpu_seconds(self) -> dict[str, float]:
        """Each process's CPU time (user + system) so far, by the names of `peaks_mb`. What a
        process that has ended used (as last sampled) counts for the live one with its label:
        the embedded broker started again is one broker across its lives."""
        self.sample()
        named = self._named({pid: self._cpu[pid] for pid in self._now})
        for pid, seconds in self._cpu.items():
            if pid not in self._now and self._labels[pid] in named:
                named[self._labels[pid]] += seconds
        return named

    def cpu_ms_per_msg(self, since: dict[str, float], messages: int) -> dict[str, float]:
        """Each process's CPU time since `since` (an earlier `cpu_seconds()`), in ms a message."""
        return {
            name: round(1000 * (seconds - since.get(name, 0.0)) / max(1, messages), 3)
            for name, seconds in self.cpu_seconds().items()
        }

    def _named(self, sizes: dict[int, float]) -> dict[str, float]:
        named: dict[str, float] = {}
        for pid, mb in sizes.items():
            name = self._labels[pid]
            named[name if name not in named else f"{name}#{pid}"] = mb
        return named

    def watch(self, pid: int, label: str, *, whole: bool = False) -> None:
        """Sample `pid` and its children; with `whole`, as one entry (PostgreSQL's backends):
        their CPU and resident sets summed, of the processes alive when sampled."""
        self._roots[pid] = label
        if whole:
            self._whole.add(pid)
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def sample(self) -> None:
        self._now = {}  # the processes alive now only
        for root, label in list(self._roots.items()):
            if root in self._whole:
                self._sample_whole(root, label)
                continue
            for pid in _tree(root):
                kb = _status_kb(pid, "VmHWM")
                if kb is None:
                    continue
                self._labels[pid] = _label(pid, label, pid == root)
                self._peaks[pid] = max(self._peaks.get(pid, 0.0), round(kb / 1024, 1))
                self._now[pid] = round((_status_kb(pid, "VmRSS") or 0) / 1024, 1)
                self._cpu[pid] = _cpu_seconds(pid) or 0.0

    def _sample_whole(self, root: int, label: str) -> None:
        if _status_kb(root, "VmRSS") is None:
            return  # gone
        tree = _tree(root)
        mb = round(sum(_status_kb(pid, "VmRSS") or 0 for pid in tree) / 1024, 1)
        self._labels[root] = label
        self._peaks[root] = max(self._peaks.get(root, 0.0), mb)
        self._now[root] = mb
        self._cpu[root] = sum(_cpu_seconds(pid) or 0.0 for pid in tree)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        self.sample()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def stop_process(process: asyncio.subprocess.Process, timeout: float = 30) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()


def _open_log(path: Path):
    return open(path, "ab")  # noqa: SIM115  # closed by running()


def _tail(path: Path, lines: int = 30) -> str:
    """The last lines of a process's log that are not a library's (the Kafka client's
    connection errors, once the broker is gone, would fill any tail), then its very last."""
    if not path.exists():
        return ""
    every = path.read_text(errors="replace").splitlines()
    own = [line for line in every if '"logger":' not in line]
    return "\n".join([*own[-lines:], "...", *every[-5:]])


@contextlib.asynccontextmanager
async def running(
    command: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process for the length of the block, stopped with SIGTERM after it."""
    out = _open_log(log) if log else asyncio.subprocess.DEVNULL
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=out
    )
    try:
        yield process
    finally:
        await stop_process(process)
        if log:
            out.close()  # type: ignore[union-attr]


async def wait_ready(
    url: str, process: asyncio.subprocess.Process, timeout: float = 120, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                tail = _tail(log) if log else ""
                raise RuntimeError(f"{url}: the process exited ({process.returncode})\n{tail}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


class StoreView:
    """What the router has stored, read from its database as any other reader would."""

    def __init__(self, database_url: str):
        self.engine = create_async_engine(database_url)
        # SQLite has one writer, so seq grows in commit order and nothing is read twice.
        self.reread = 0 if database_url.startswith("sqlite") else REREAD

    async def count(self, prefix: str) -> int:
        query = sa.select(sa.func.count()).where(
            messages.c.direction == "in", messages.c.channel_message_id.like(f"SM{prefix}%")
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()

    async def stored_since(self, seq: int, prefix: str) -> tuple[int, list[str]]:
        """The highest seq read and the SIDs under `prefix` stored after `seq`, up to POLL_SEQS
        past it (the next poll reads on); the window reaches back a little, since PostgreSQL
        may commit a lower seq after a higher one."""
        query = (
            sa.select(messages.c.seq, messages.c.channel_message_id)
            .where(messages.c.seq > seq - self.reread, messages.c.seq <= seq + POLL_SEQS)
            .where(messages.c.direction == "in")
            .order_by(messages.c.seq)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        top = max(rows[-1][0], seq) if rows else seq
        return top, [sid for _, sid in rows if sid and sid.startswith(f"SM{prefix}")]

    async def unsent(self) -> int:
        """Replies stored and not yet through the sender (the sandbox outbox included)."""
        query = sa.select(sa.func.count()).where(
            messages.c.direction == "out", not_sent_yet(messages.c.delivery_status)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()

    async def quiet(self, timeout: float = 300) -> float:
        """Wait until every stored reply went through the sender (what a spike before left to
        send); the seconds waited."""
        start = time.monotonic()
        while await self.unsent() and time.monotonic() - start < timeout:
            await asyncio.sleep(0.2)
        return round(time.monotonic() - start, 1)

    async def top_seq(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.max(messages.c.seq)))).scalar() or 0

    async def close(self) -> None:
        await self.engine.dispose()


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB"
    return f"{os.cpu_count()} cores {model}{mem}, {platform.system()} {platform.release()}"
