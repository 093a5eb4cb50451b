"""A whole router for the cases tests: the Twilio channels (SMS, WhatsApp, voice) pointed at the
Twilio stand-in, the protective action pointed at the wallet backend's stand-in, on each broker
and each database; two fraud agents, so "one agent" is a choice the router made."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from router.app import Router
from tests.conftest import RunningRouter, router_settings
from tests.routing_helpers import config_dir_with
from tests.twilio_standin import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_URL,
    TwilioRouter,
    TwilioStandIn,
)
from tests.wallet_standin import SECRET, WalletBackendStandIn

AGENT_PASSWORD = "agent-password-for-cases"
AGENTS = """\
version: 2
agents:
  - username: admin
    role: supervisor
  - {username: li.na, queues: [fraud, payments], skills: [fraud, payments]}
  - {username: wei, queues: [fraud, payments], skills: [fraud, payments]}
  - {username: sam, queues: [general, accounts, triage], languages: [en], skills: [accounts]}
"""
ACTIONS = """\
version: 1
freeze:
  backoff_seconds: 0.05
  backoff_max_seconds: 0.2
  max_attempts: 5
  timeout_seconds: 5
"""


@dataclass
class CaseRouter:
    twilio: TwilioRouter
    wallet: WalletBackendStandIn

    @property
    def http(self) -> aiohttp.ClientSession:
        return self.twilio.http

    def url(self, path: str) -> str:
        return self.twilio.url(path)

    async def agents_available(self, *usernames: str) -> dict[str, dict[str, str]]:
        """Each agent with a password (as `supportrouter agent password` sets it), logged in and
        available; their Authorization headers."""
        store = self.twilio.router.store
        assert store is not None
        headers = {}
        for username in usernames:
            await store.set_password(username, AGENT_PASSWORD)
            headers[username] = await self.twilio.running.login(username, AGENT_PASSWORD)
            async with self.http.post(
                self.url("/api/agents/me/status"),
                headers=headers[username],
                json={"status": "available"},
            ) as r:
                assert r.status == 200, await r.text()
        return headers

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.get(self.url(path), headers=headers or await self.twilio.login()) as r:
            return r.status, await r.json()

    async def post(
        self, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.http.post(
            self.url(path), json=body, headers=headers or await self.twilio.login()
        ) as r:
            return r.status, await r.json()

    async def case(self, case_id: str) -> dict[str, Any]:
        status, case = await self.get(f"/api/cases/{case_id}")
        assert status == 200, case
        return dict(case)

    async def case_until(
        self, case_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            case = await self.case(case_id)
            if predicate(case):
                return case
            assert asyncio.get_running_loop().time() < deadline, f"case never matched: {case}"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def case_router(
    database_url: str,
    broker_kind: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    protect: bool = True,
    fail_first: int = 0,
) -> AsyncIterator[CaseRouter]:
    config = config_dir_with(tmp_path, **{"agents.yaml": AGENTS, "actions.yaml": ACTIONS})
    for name, value in {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SUPPORTROUTER_TWILIO_RETRY_BACKOFF_SECONDS": "0.01",
    }.items():
        monkeypatch.setenv(name, value)
    async with (
        WalletBackendStandIn(fail_next=fail_first) as wallet,
        TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN) as twilio,
    ):
        monkeypatch.setenv("SUPPORTROUTER_TWILIO_API_BASE_URL", twilio.url)
        settings = router_settings(
            database_url,
            broker_kind,
            request,
            channels=["sms", "whatsapp", "voice"],
            public_url=PUBLIC_URL,
            config_dir=config,
            protect_url=wallet.url if protect else None,
            protect_secret=SECRET if protect else None,
            protect_poll_seconds=0.1,
        )
        async with Router(settings) as router, aiohttp.ClientSession() as http:
            yield CaseRouter(
                TwilioRouter(RunningRouter(router, http), twilio, PUBLIC_URL, AUTH_TOKEN), wallet
            )
