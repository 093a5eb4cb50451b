"""Logins against guessing and leaking: a few wrong passwords free, then 429 with Retry-After (per
username and per client address); the same hashing work for an unknown username; nothing typed
into the form in the logs; argon2id hashes, older hashes upgraded at the next login."""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa
from argon2 import PasswordHasher
from structlog.testing import capture_logs

from router.services.login_throttle import LoginThrottle
from router.store.schema import agent_credentials


async def _login(r, username: str, password: str):
    async with r.http.post(
        r.url("/api/login"), json={"username": username, "password": password}
    ) as resp:
        return resp.status, resp.headers.get("Retry-After"), await resp.json()


async def _stored_hash(r, username: str) -> str:
    async with r.router.store.engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(agent_credentials.c.password_hash).where(
                    agent_credentials.c.username == username
                )
            )
        ).scalar_one()


async def _verifications(r) -> dict[str, float]:
    async with r.http.get(r.url("/metrics")) as resp:
        text = await resp.text()
    found = re.findall(
        r'^supportrouter_password_verifications_total\{scheme="(\w+)"\} (\S+)$', text, re.M
    )
    return {scheme: float(value) for scheme, value in found}


async def test_after_five_wrong_passwords_the_username_gets_429_with_retry_after(running_router):
    r = running_router
    await r.router.store.set_password("sam", "sam-password-1")
    for _ in range(5):
        assert (await _login(r, "sam", "guess"))[0] == 401
    status, retry_after, body = await _login(r, "sam", "sam-password-1")
    assert status == 429
    assert retry_after is not None and int(retry_after) >= 1
    assert "try again" in body["error"]
    # Another username from the same address is not held up by sam's count.
    assert (await _login(r, "li.na", "guess"))[0] == 401


async def test_wrong_passwords_spread_over_usernames_block_the_address(running_router):
    r = running_router
    for i in range(20):  # four tries each at five usernames: no username reaches its limit
        assert (await _login(r, f"user{i % 5}", "guess"))[0] == 401
    status, retry_after, _ = await _login(r, "admin", "admin-password")
    assert status == 429 and retry_after is not None and int(retry_after) >= 1


def test_each_failure_beyond_the_free_ones_doubles_the_wait_up_to_the_cap():
    at = [1000.0]
    throttle = LoginThrottle(free=2, free_per_address=100, max_wait_seconds=8, clock=lambda: at[0])
    waits = []
    for _ in range(6):
        throttle.failed("sam", "10.0.0.1")
        waits.append(throttle.retry_after("sam", "10.0.0.1")[0])
        at[0] += waits[-1]  # the next try comes as soon as it is allowed
    assert waits == [0, 1, 2, 4, 8, 8]
    throttle.succeeded("sam")
    assert throttle.retry_after("sam", "10.0.0.1") == (0, None)


async def test_an_unknown_username_costs_one_password_verification_like_a_known_one(
    running_router,
):
    r = running_router
    await r.router.store.set_password("sam", "sam-password-1")
    for username in ("sam", "nobody-at-all", "li.na"):  # known; unknown; in config, no password
        before = await _verifications(r)
        assert (await _login(r, username, "wrong-password"))[0] == 401
        after = await _verifications(r)
        assert after["argon2id"] - before.get("argon2id", 0) == 1, username


async def test_a_password_typed_into_the_username_field_never_reaches_the_logs(running_router):
    r = running_router
    typed = "Tr0ub4dor&3-typed-in-the-wrong-box"
    with capture_logs() as logs:
        assert (await _login(r, typed, ""))[0] == 401
        assert (await _login(r, typed, "x"))[0] == 401
    failed = [e for e in logs if e["event"] == "agent.login_failed"]
    assert len(failed) == 2
    assert failed[0]["username_sha"] == hashlib.sha256(typed.encode()).hexdigest()[:12]
    assert not [e for e in logs if typed in repr(e)]
    assert not [e for e in logs if "Tr0ub4dor" in repr(e)]


async def test_an_old_scrypt_hash_still_logs_in_and_is_upgraded_to_argon2id(running_router):
    r = running_router
    salt = bytes(range(16))
    digest = hashlib.scrypt(b"sam-old-password", salt=salt, n=2**14, r=8, p=1)
    async with r.router.store.engine.begin() as conn:
        await conn.execute(
            agent_credentials.insert().values(
                username="sam", password_hash=f"scrypt${salt.hex()}${digest.hex()}"
            )
        )
    assert (await _login(r, "sam", "wrong"))[0] == 401
    assert (await _stored_hash(r, "sam")).startswith("scrypt$")  # a wrong password changes nothing
    await r.login("sam", "sam-old-password")
    assert (await _stored_hash(r, "sam")).startswith("$argon2id$")
    await r.login("sam", "sam-old-password")


async def test_an_argon2_hash_with_other_parameters_is_rehashed_at_login(running_router):
    r = running_router
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("sam-pw-1")
    async with r.router.store.engine.begin() as conn:
        await conn.execute(agent_credentials.insert().values(username="sam", password_hash=weak))
    await r.login("sam", "sam-pw-1")
    stored = await _stored_hash(r, "sam")
    assert stored != weak and "$m=19456,t=2,p=1$" in stored
    await r.login("sam", "sam-pw-1")
