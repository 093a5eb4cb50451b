"""A 200 means the message is safe: `supportrouter run` killed (-9) or stopped (SIGTERM) in the
middle of a burst of signed SMS, then started again on the same files, has every message it said
yes to stored exactly once. On the embedded broker (memory only) the intake journal carries them;
on Apache Kafka the broker does. Each run prints its message-id accounting.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from twilio.request_validator import RequestValidator

from router.bus.embedded import free_port
from router.store.schema import messages
from tests.accounting import record
from tests.brokers import router_env
from tests.test_process import _banner, _env
from tests.test_process import _start as start_router

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "journal-test-token"
PATH = "/webhooks/twilio/messaging"
WORKERS = 16


@dataclass
class Burst:
    """Signed SMS from many customers at once, until the router stops answering."""

    base_url: str
    first: int = 0  # numbers and SIDs from here, so two bursts never share one
    accepted: set[str] = field(default_factory=set)
    refused: int = 0
    sent: int = 0
    stopped: bool = False

    def stop(self) -> None:
        """Send no more (those in flight still count)."""
        self.stopped = True

    async def run(self) -> None:
        validator = RequestValidator(TOKEN)
        counter = iter(range(self.first, self.first + 10**5))
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def worker() -> None:
                while not self.stopped:
                    n = next(counter)
                    sid = f"SM{n:032x}"
                    params = {
                        "MessageSid": sid,
                        "AccountSid": "AC" + "0" * 32,
                        "From": f"+1555{n:07d}",
                        "To": "+15550001111",
                        "Body": f"my transfer number {n} failed, the money left my card",
                        "NumMedia": "0",
                    }
                    signature = validator.compute_signature(self.base_url + PATH, params)
                    self.sent += 1
                    try:
                        async with http.post(
                            self.base_url + PATH,
                            data=params,
                            headers={"X-Twilio-Signature": signature},
                        ) as resp:
                            await resp.read()
                            if resp.status == 200:
                                self.accepted.add(sid)
                            else:
                                self.refused += 1
                    except (TimeoutError, aiohttp.ClientError):
                        return  # the router is gone: a provider would retry later

            await asyncio.gather(*(worker() for _ in range(WORKERS)))


async def _start(env: dict[str, str]) -> asyncio.subprocess.Process:
    process = await start_router(env, stderr=asyncio.subprocess.DEVNULL)
    await _banner(process)
    return process


def sms_router_env(tmp_path: Path, database_url: str, port: int, **extra: str) -> dict[str, str]:
    """A router in its own process on `port`, taking SMS signed with TOKEN."""
    return _env(
        tmp_path,
        SUPPORTROUTER_HTTP_PORT=str(port),
        SUPPORTROUTER_DATABASE_URL=database_url,
        SUPPORTROUTER_PUBLIC_URL=f"http://127.0.0.1:{port}",
        TWILIO_AUTH_TOKEN=TOKEN,
        **extra,
    )


async def _stored(database_url: str, sids: set[str]) -> dict[str, int]:
    """How many times each of these SMS is stored."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(messages.c.channel_message_id, sa.func.count())
                .where(messages.c.direction == "in")
                .where(messages.c.channel_message_id.in_(sorted(sids)))
                .group_by(messages.c.channel_message_id)
            )
            return {sid: count for sid, count in rows}
    finally:
        await engine.dispose()


async def _unanswered(database_url: str, sids: set[str]) -> int:
    """How many of these SMS have no acknowledgement delivered (the sandbox outbox here)."""
    inbound, reply = messages.alias("inbound"), messages.alias("reply")
    answered = (
        sa.select(reply.c.message_id)
        .where(reply.c.conversation_id == inbound.c.conversation_id)
        .where(reply.c.direction == "out")
        .where(reply.c.delivery_status == "sandboxed")
    )
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = (
                sa.select(sa.func.count())
                .select_from(inbound)
                .where(inbound.c.channel_message_id.in_(sorted(sids)))
                .where(~answered.exists())
            )
            return (await conn.execute(query)).scalar_one()
    finally:
        await engine.dispose()


async def _eventually(probe, done, timeout: float):
    """probe() again and again until done(result), or until `timeout` passed; the last result."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if done(result) or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.5)


async def _all_answered(database_url: str, sids: set[str], timeout: float = 60) -> int:
    return await _eventually(lambda: _unanswered(database_url, sids), lambda n: not n, timeout)


async def _all_stored(database_url: str, sids: set[str], timeout: float = 90) -> dict[str, int]:
    """What is stored once every one of them is, or once `timeout` passed."""
    return await _eventually(
        lambda: _stored(database_url, sids), lambda stored: set(stored) >= sids, timeout
    )


async def _stop(process: asyncio.subprocess.Process, how: signal.Signals) -> None:
    process.send_signal(how)
    async with asyncio.timeout(120):
        await process.wait()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_every_sms_answered_200_is_stored_once_after_the_router_stopped_mid_burst(
    tmp_path, database_url, broker_kind, request, how
):
    shared = request.getfixturevalue("shared_kafka") if broker_kind == "kafka" else None
    port = free_port()
    env = sms_router_env(
        tmp_path,
        database_url,
        port,
        SUPPORTROUTER_JOURNAL_PATH=str(tmp_path / "intake.journal"),
        SUPPORTROUTER_DRAIN_SECONDS="120",  # this test waits for the drain, however slow
    )
    env.update(router_env(broker_kind, shared))

    first = await _start(env)
    burst = Burst(f"http://127.0.0.1:{port}")
    flood = asyncio.create_task(burst.run())
    try:
        async with asyncio.timeout(120):
            while len(burst.accepted) < 200:
                assert not flood.done(), "the burst stopped before the router was stopped"
                await asyncio.sleep(0.05)
        await _stop(first, how)
        await flood
    finally:
        flood.cancel()
        if first.returncode is None:
            first.kill()
    accepted = set(burst.accepted)

    if how is signal.SIGTERM:  # a stop drains: the store has it all before any restart
        stored = await _stored(database_url, accepted)
        assert set(stored) == accepted, f"{len(accepted - set(stored))} not drained"

    second = await _start(env)
    try:
        stored = await _all_stored(database_url, accepted)
        unanswered = await _all_answered(database_url, accepted)
    finally:
        await _stop(second, signal.SIGTERM)
    twice = sorted(sid for sid, count in stored.items() if count > 1)
    record(
        fault=f"router {how.name}",
        broker=broker_kind,
        database=database_url.split("+")[0],
        accepted=len(accepted),
        refused=burst.refused,
        stored=len(stored),
        lost=len(accepted - set(stored)),
        stored_twice=len(twice),
        unanswered=unanswered,
    )
    lost = sorted(accepted - set(stored))
    assert not lost, f"{len(lost)} of {len(accepted)} accepted were lost, e.g. {lost[:3]}"
    assert not twice, f"stored twice: {twice[:5]}"
    assert not unanswered, f"{unanswered} accepted SMS got no acknowledgement"
