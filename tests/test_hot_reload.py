"""Hot reload: a changed file takes effect without a restart, on its own or on SIGHUP; a bad file
is refused with file, line and reason while the rules in force keep routing; every decision
records the version of the rules that made it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal

from router.app import Router
from tests.conftest import make_settings
from tests.routing_helpers import classified, config_dir_with
from tests.test_process import _banner, _env, _start

TO_GENERAL = (
    "  - {category: transaction_failed, queue: payments}",
    "  - {category: transaction_failed, queue: general}",
)
BAD_TARGET = ("      - {queue: general, priority: 50}", "      - {queue: vip_desk, priority: 50}")


def edit(path, old: str, new: str) -> int:
    """Replace one line's text; return its line number."""
    lines = path.read_text().splitlines()
    at = lines.index(old)
    lines[at] = new
    path.write_text("\n".join(lines) + "\n")
    return at + 1


async def eventually(predicate, timeout: float = 60, what: str = "condition"):
    async with asyncio.timeout(timeout):
        while not (result := await predicate()):
            await asyncio.sleep(0.05)
    return result


async def route(router: Router, key: str) -> dict:
    """A pending transfer through the running dispatcher; its stored conversation."""
    env = classified("transaction_failed", "normal", key=key)
    await router.bus.publish(router.bus.topics.classified, env.to_bytes(), key=env.kafka_key)

    async def stored():
        for queue in router.rules.config.routing.queues:
            for conversation in await router.store.queue_conversations(queue):
                if conversation["conversation_key"] == key:
                    return conversation
        return None

    return await eventually(stored)


async def test_a_changed_file_is_reloaded_and_a_bad_one_refused_while_the_rules_in_force_keep_routing(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SUPPORTROUTER_CONFIG_POLL_SECONDS", "0.1")
    config_dir = config_dir_with(tmp_path)
    routing = config_dir / "routing.yaml"
    async with Router(
        make_settings(f"sqlite+aiosqlite:///{tmp_path}/s.db", config_dir=config_dir)
    ) as router:
        first_version = router.rules.version
        before = await route(router, "chat:before")
        assert (before["queue"], before["rules_version"]) == ("payments", first_version)

        edit(routing, *TO_GENERAL)
        await eventually(lambda: _changed(router, first_version))
        second_version = router.rules.version
        after = await route(router, "chat:after")
        assert (after["queue"], after["rules_version"]) == ("general", second_version)
        assert (await router.store.conversation(before["id"]))["rules_version"] == first_version

        line = edit(routing, *BAD_TARGET)
        await eventually(lambda: _refused(router))
        assert router.watcher.problems == [
            f"routing.yaml:{line}: workflow.2.targets.1.queue: unknown queue 'vip_desk'"
        ]
        assert router.rules.version == second_version
        still = await route(router, "chat:while-refused")
        assert (still["queue"], still["rules_version"]) == ("general", second_version)

        edit(
            routing, BAD_TARGET[1], BAD_TARGET[0]
        )  # fixed: the problems go, the version is the second again
        await eventually(lambda: _cleared(router))
        assert router.rules.version == second_version


async def _changed(router: Router, version: str) -> bool:
    return router.rules.version != version


async def _refused(router: Router) -> bool:
    return bool(router.watcher.problems)


async def _cleared(router: Router) -> bool:
    return not router.watcher.problems


class LogLines:
    """A process's JSON log lines on stderr, read as they come so the pipe never fills."""

    def __init__(self, stream):
        self.events: list[dict] = []
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream) -> None:
        while line := await stream.readline():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass

    async def wait_for(self, event: str, after: int = 0, timeout: float = 60) -> dict:
        return (await self.wait_for_each(event, 1, after, timeout))[0]

    async def wait_for_each(
        self, event: str, count: int, after: int = 0, timeout: float = 60
    ) -> list[dict]:
        """The first `count` lines of `event` (one from each of `count` processes)."""
        async with asyncio.timeout(timeout):
            while True:
                found = [e for e in self.events[after:] if e.get("event") == event]
                if len(found) >= count:
                    return found[:count]
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # it may have ended at EOF already
            await self._task


async def test_sighup_reloads_and_a_bad_file_is_refused_with_file_line_and_reason(tmp_path):
    config_dir = config_dir_with(tmp_path)
    routing = config_dir / "routing.yaml"
    env = _env(
        tmp_path, SUPPORTROUTER_CONFIG_DIR=str(config_dir), SUPPORTROUTER_CONFIG_POLL_SECONDS="0"
    )
    process = await _start(env)
    logs = LogLines(process.stderr)
    try:
        await _banner(process)
        edit(routing, *TO_GENERAL)
        await asyncio.sleep(0.5)  # polling is off: only the signal may reload
        assert not [e for e in logs.events if e.get("event") == "config.reloaded"]
        workers = len((await logs.wait_for("workers.started"))["roles"])
        process.send_signal(signal.SIGHUP)
        # Every worker reloads (each in its own time): all of them before the next edit, or a
        # slow one would read the bad file for this signal.
        each = await logs.wait_for_each("config.reloaded", workers)
        assert {(e["reason"], e["version"], e["previous"]) for e in each} == {
            ("signal", each[0]["version"], each[0]["previous"])
        }
        reloaded = each[0]
        assert reloaded["version"] != reloaded["previous"]

        line = edit(routing, *BAD_TARGET)
        mark = len(logs.events)
        process.send_signal(signal.SIGHUP)
        refused = await logs.wait_for("config.refused", after=mark)
        assert refused["version_in_force"] == reloaded["version"]
        assert refused["problems"] == [
            f"routing.yaml:{line}: workflow.2.targets.1.queue: unknown queue 'vip_desk'"
        ]

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0  # still running after the refusal, and stops cleanly
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await logs.close()
