"""Dead letters: supervisors list, show and replay them (API and `supportrouter dlq`); a replay
is stored once however often it is repeated; what never parsed is refused."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from router.bus.dead_letters import DeadLetters
from router.core.envelope import Channel, Envelope, Sender
from tests.conftest import CONFIG_DIR, RunningRouter

ROOT = Path(__file__).resolve().parent.parent
POISON = b"\xff\xfe this is not an envelope"


async def wait_for(predicate, timeout: float = 20):
    async with asyncio.timeout(timeout):
        while not (result := await predicate()):
            await asyncio.sleep(0.1)
    return result


async def dead_letter_a_good_envelope(r: RunningRouter, key: str, text: str) -> Envelope:
    """What the dispatcher writes when the store stays away for three tries: the very
    KafkaBus.dead_letter, on a record as the dispatcher consumed it from support.classified."""
    router = r.router
    env = Envelope.new(
        channel=Channel.CHAT,
        channel_message_id=f"{key}-1",
        conversation_key=key,
        sender=Sender(address=key),
        text=text,
    )
    env = env.model_copy(update={"classification": router.rules.classify(text)})
    value = env.to_bytes()
    record = ConsumerRecord(
        topic=router.bus.topics.classified,
        partition=0,
        offset=41,
        timestamp=0,
        timestamp_type=0,
        key=env.kafka_key,
        value=value,
        checksum=None,
        serialized_key_size=len(env.kafka_key),
        serialized_value_size=len(value),
        headers=(),
    )
    await router.bus.dead_letter(record, "dispatch", ConnectionError("the store went away"))
    return env


async def poison_the_classifier(r: RunningRouter, key: str) -> None:
    """Bytes that are no envelope: whoever classifies dead-letters them at once."""
    bus = r.router.bus
    await bus.publish(bus.topics.inbound_standard, POISON, key=key.encode())


def poison_stage(r: RunningRouter) -> str:
    """The classifier stage's standard lane, or the dispatcher's where there is none (on the
    embedded broker: SUPPORTROUTER_CLASSIFY_IN); it classifies what reached it unclassified."""
    return "classify-standard" if r.router.settings.classifier_stage else "dispatch"


async def conversations_of(r: RunningRouter, env: Envelope) -> list[dict]:
    """The envelope's conversations, whichever queue the workflow put them in."""
    found = []
    for queue in r.router.rules.config.routing.queues:
        listing = await r.router.store.queue_conversations(queue)
        found += [c for c in listing if c["conversation_key"] == env.conversation_key]
    return found


async def test_supervisors_see_and_replay_dead_letters_and_nobody_else_does(running_router):
    r = running_router
    admin = await r.login()
    await r.router.store.set_password("sam", "sam-password-1")
    sam = await r.login("sam", "sam-password-1")  # an agent, not a supervisor

    await poison_the_classifier(r, "chat:dlq-poison")
    env = await dead_letter_a_good_envelope(r, "chat:dlq-good", "what is the top-up fee")

    async def both_listed():
        async with r.http.get(r.url("/api/dlq"), headers=admin) as resp:
            assert resp.status == 200, await resp.text()
            entries = (await resp.json())["entries"]
        return entries if len(entries) >= 2 else None

    entries = await wait_for(both_listed)
    by_key = {e["key"]: e for e in entries}
    poison, good = by_key["chat:dlq-poison"], by_key["chat:dlq-good"]
    assert (poison["stage"], good["stage"]) == (poison_stage(r), "dispatch")
    assert poison["topic"] == r.router.bus.topics.inbound_standard
    assert poison["value"] == {"base64": "//4gdGhpcyBpcyBub3QgYW4gZW52ZWxvcGU="}
    assert not poison["replayable"] and good["replayable"]
    assert good["topic"] == r.router.bus.topics.classified and good["key"] == "chat:dlq-good"
    assert good["error"] == "the store went away"

    async with r.http.get(r.url(f"/api/dlq?stage={poison_stage(r)}"), headers=admin) as resp:
        listed = {e["id"] for e in (await resp.json())["entries"]}
    assert listed == (
        {poison["id"], good["id"]} if poison["stage"] == "dispatch" else {poison["id"]}
    )
    async with r.http.get(r.url(f"/api/dlq/{good['id']}"), headers=admin) as resp:
        shown = await resp.json()
    assert shown == good and shown["value"]["message_id"] == env.message_id

    for method, path in [
        ("GET", "/api/dlq"),
        ("GET", f"/api/dlq/{good['id']}"),
        ("POST", f"/api/dlq/{good['id']}/replay"),
    ]:
        async with r.http.request(method, r.url(path), headers=sam) as resp:
            assert resp.status == 403, (method, path)
            assert "error" in await resp.json()

    async with r.http.post(r.url(f"/api/dlq/{poison['id']}/replay"), headers=admin) as resp:
        assert resp.status == 409
        assert "did not parse" in (await resp.json())["error"]
    async with r.http.get(r.url("/api/dlq/7-777777"), headers=admin) as resp:
        assert resp.status == 404 and "error" in await resp.json()
    async with r.http.post(r.url("/api/dlq/7-777777/replay"), headers=admin) as resp:
        assert resp.status == 404

    # Replayed twice (an operator's double click): the dispatcher stores it once.
    for _ in range(2):
        async with r.http.post(r.url(f"/api/dlq/{good['id']}/replay"), headers=admin) as resp:
            assert resp.status == 200, await resp.text()
            assert [e["id"] for e in (await resp.json())["replayed"]] == [good["id"]]
    [conversation] = await wait_for(lambda: conversations_of(r, env))
    await after_both_replays_are_handled(r, env)
    detail = await r.router.store.conversation(conversation["id"])
    assert [m["direction"] for m in detail["messages"]] == ["in", "out"]
    assert [c["id"] for c in await conversations_of(r, env)] == [conversation["id"]]


async def after_both_replays_are_handled(r: RunningRouter, env: Envelope) -> None:
    """A marker on the same partition (same key), published after both replays: once it is
    stored, the dispatcher, which works a partition in order, has handled both."""
    text = "how do I change my phone number"
    marker = Envelope.new(
        channel=Channel.CHAT,
        channel_message_id="dlq-marker",
        conversation_key="chat:dlq-marker",
        sender=Sender(address="chat:dlq-marker"),
        text=text,
    )
    marker = marker.model_copy(update={"classification": r.router.rules.classify(text)})
    bus = r.router.bus
    await bus.publish(bus.topics.classified, marker.to_bytes(), key=env.kafka_key)
    await wait_for(lambda: conversations_of(r, marker))


def cli_env(r: RunningRouter, **extra: str) -> dict[str, str]:
    """`supportrouter` in its own process, on the router's broker and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTROUTER_")}
    env["SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS"] = r.router.bus.bootstrap_servers
    for name, topic in r.router.settings.topics.model_dump().items():
        env[f"SUPPORTROUTER_TOPICS__{name.upper()}"] = topic
    env.update(SUPPORTROUTER_CONFIG_DIR=str(CONFIG_DIR), SUPPORTROUTER_LOG_FORMAT="json", **extra)
    return env


async def supportrouter(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router.cli",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the CLI reads only Kafka
async def test_dlq_command_lists_shows_and_replays(running_router, tmp_path):
    r = running_router
    await poison_the_classifier(r, "chat:cli-poison")
    env = await dead_letter_a_good_envelope(r, "chat:cli-good", "what is the withdrawal limit")
    await wait_for(lambda: _dlq_holds(r, 2))
    cli = cli_env(r)

    code, out, err = await supportrouter(cli, "dlq", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and "2 dead letter(s)" in err
    [good_id] = [line.split()[0] for line in lines if "chat:cli-good" in line]
    [poison_id] = [line.split()[0] for line in lines if "chat:cli-poison" in line]
    assert f" {poison_stage(r)} " in next(line for line in lines if line.startswith(poison_id))
    good_line = next(line for line in lines if line.startswith(good_id + " "))
    assert "chat:cli-good" in good_line and "the store went away" in good_line

    code, out, err = await supportrouter(cli, "dlq", "list", "--stage", "dispatch", "--json")
    assert code == 0, err
    listed = {json.loads(line)["id"] for line in out.splitlines()}
    assert listed == ({good_id, poison_id} if poison_stage(r) == "dispatch" else {good_id})

    code, out, err = await supportrouter(cli, "dlq", "show", good_id)
    assert code == 0, err
    assert json.loads(out)["value"]["message_id"] == env.message_id

    code, out, err = await supportrouter(cli, "dlq", "replay", poison_id)
    assert code == 1 and "did not parse" in err and out == ""

    code, out, err = await supportrouter(cli, "dlq", "replay", "--all")
    assert code == 0, err
    assert f"replayed {good_id} to {r.router.bus.topics.classified}" in out
    assert f"skipped  {poison_id}" in out and "1 replayed, 1 skipped" in out
    assert await wait_for(lambda: conversations_of(r, env))

    without = {k: v for k, v in cli.items() if k != "SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS"}
    code, out, err = await supportrouter(without, "dlq", "list")
    assert code == 2 and "SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS" in err


async def _dlq_holds(r: RunningRouter, count: int) -> bool:
    return len(await DeadLetters(r.router.bus).entries()) >= count
