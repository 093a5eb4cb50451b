"""Hostile input against the running router: every route it serves, listed from its aiohttp app
at test time (so a new route is fuzzed too), and the chat socket. No input gets a 5xx answer or
an unhandled fault, and the router still answers /healthz after.

Hypothesis draws the inputs (tests/fuzz_strategies.py) with a fixed seed (`derandomize`), so a
run here is the run in CI. Its engine is synchronous: it runs in a worker thread and hands each
input to the test's event loop, where the router runs.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from multidict import MultiDict
from yarl import URL

from tests import telegram_standin as tg
from tests.chat_helpers import chat_ws_url
from tests.fuzz_strategies import HostileRequest, chat_frames, hostile_requests
from tests.twilio_standin import TwilioRouter, twilio_router

HTTP_INPUTS = 9_000  # spread over every route: each drawn input goes to all of them
SOCKET_FRAMES = 1_500
SECRET = "fuzz-Secret_token"
CHANNELS = ["chat", "sms", "whatsapp", "voice", "telegram"]
INTERNAL_FAULT = "frame not handled; it was logged"  # the chat socket's 500

# The router's own tasks (Kafka clients' jitter, ids) use `random` while Hypothesis draws in its
# thread; Hypothesis takes that for a strategy using `random`. Ours do not.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,  # a fixed seed: CI fuzzes what this machine fuzzed
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture
async def fuzz_router(tmp_path, monkeypatch) -> AsyncIterator[TwilioRouter]:
    """One router for a whole family of inputs: every channel with a route, Twilio signed and
    Telegram by webhook, on its embedded broker and SQLite."""
    async with tg.BotApiStandIn() as api:
        env = {
            "TELEGRAM_BOT_TOKEN": api.token,
            "TELEGRAM_SECRET_TOKEN": SECRET,
            "SUPPORTROUTER_TELEGRAM_API_BASE_URL": api.base_url,
        }
        async with twilio_router(
            f"sqlite+aiosqlite:///{tmp_path}/fuzz.db", monkeypatch, env=env, channels=CHANNELS
        ) as t:
            yield t


class Fuzzer:
    """Sends drawn inputs to the router from Hypothesis's thread; counts what came back."""

    def __init__(self, t: TwilioRouter, token: str, session: str):
        self.t, self.token, self.session = t, token, session
        self.loop = asyncio.get_running_loop()
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []
        self.routes = sorted(
            {
                (route.method, route.resource.canonical)
                for route in t.router.gateway.build_app().router.routes()
                if route.resource is not None
            }
        )

    def run(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=300)

    def fail(self, what: str) -> None:
        self.failures.append(what[:600])

    # --- HTTP ----------------------------------------------------------------------------

    async def send_everywhere(self, req: HostileRequest) -> None:
        await asyncio.gather(*(self.send(method, path, req) for method, path in self.routes))

    async def send(self, method: str, template: str, req: HostileRequest) -> None:
        segment = quote(req.segment, safe="", errors="surrogatepass")
        path = template.replace("{id}", segment).replace("{queue}", segment)
        headers = self._headers(path, req)
        body = None if method in ("GET", "HEAD") else req.body
        query = dict(req.query)
        if "valid" in query:
            query.update(session=self.session, token=self.token)
        url = self.t.url(path) + ("?" + urlencode(query, errors="surrogatepass") if query else "")
        self.counts["inputs"] += 1
        try:
            async with self.t.http.request(
                method,
                URL(url, encoded=True),
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as resp:
                answer = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.counts["no answer"] += 1
            self.fail(f"{method} {template}: no answer ({exc!r}) to {req!r}")
            return
        self.counts[f"{resp.status // 100}xx"] += 1
        if resp.status >= 500:
            self.fail(f"{method} {template}: {resp.status} {answer[:200]!r} to {req!r}")

    def _headers(self, path: str, req: HostileRequest) -> dict[str, str]:
        headers = {}
        if req.content_type is not None:
            headers["Content-Type"] = req.content_type
        if req.auth != "none":
            headers["Authorization"] = "Bearer " + (
                self.token if req.auth == "valid" else "garbage"
            )
        if path.startswith("/webhooks/twilio") and req.signature != "none":
            # Valid: what Twilio signs, the form as the router reads it (UTF-8, U+FFFD).
            form = MultiDict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
            valid = self.t.sign(path, form)  # type: ignore[arg-type]
            headers["X-Twilio-Signature"] = valid if req.signature == "valid" else "Zm9yZ2Vk"
        if path == "/webhooks/telegram" and req.secret != "none":
            headers["X-Telegram-Bot-Api-Secret-Token"] = SECRET if req.secret == "right" else "no"
        return headers

    # --- the chat socket -----------------------------------------------------------------

    async def frame(self, ws: aiohttp.ClientWebSocketResponse, data: str | bytes) -> None:
        self.counts["inputs"] += 1
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_str(data)
        while True:
            msg = await ws.receive(timeout=60)
            if msg.type != aiohttp.WSMsgType.TEXT:
                self.counts["socket lost"] += 1
                self.fail(
                    f"socket {msg.type.name} ({msg.data!r}, {msg.extra!r}) after {data!r}"[:600]
                )
                raise AssertionError("the chat socket closed: " + self.failures[-1])
            answer = json.loads(msg.data)
            if answer["type"] in ("accepted", "error"):
                break
        self.counts[answer["type"]] += 1
        if answer.get("error") == INTERNAL_FAULT or answer.get("retry"):
            self.counts["5xx"] += 1
            self.fail(f"frame {data!r}: {answer!r}")

    # --- after ---------------------------------------------------------------------------

    async def healthy(self) -> bool:
        async with self.t.http.get(self.t.url("/healthz")) as resp:
            return resp.status == 200 and (await resp.json())["status"] == "ok"

    def report(self, capsys: pytest.CaptureFixture[str], what: str) -> None:
        fivexx = self.counts["5xx"] + self.counts["no answer"]
        with capsys.disabled():
            print(
                f"\nfuzz {what}: {self.counts['inputs']} inputs, {fivexx} answers of 5xx or none;"
                f" {dict(sorted(self.counts.items()))}"
            )


async def _fuzzer(t: TwilioRouter) -> Fuzzer:
    token = (await t.login())["Authorization"].removeprefix("Bearer ")
    return Fuzzer(t, token, await t.running.chat_session("fuzz"))


async def test_no_hostile_request_to_any_route_gets_a_5xx(fuzz_router, capsys):
    fz = await _fuzzer(fuzz_router)
    paths = {path for _, path in fz.routes}
    assert {"/api/login", "/chat/sessions", "/webhooks/telegram"} <= paths
    assert {"/webhooks/twilio/messaging", "/webhooks/twilio/voice/gather"} <= paths

    @fuzz_settings(math.ceil(HTTP_INPUTS / len(fz.routes)))
    @given(hostile_requests)
    def one_input_to_every_route(req: HostileRequest) -> None:
        fz.run(fz.send_everywhere(req))

    await asyncio.to_thread(one_input_to_every_route)
    fz.report(capsys, f"HTTP ({len(fz.routes)} routes)")
    assert fz.counts["inputs"] >= HTTP_INPUTS
    assert fz.failures == [], "\n".join(fz.failures[:10])
    assert await fz.healthy()


async def test_no_hostile_frame_breaks_the_chat_socket(fuzz_router, capsys):
    fz = await _fuzzer(fuzz_router)
    async with fz.t.http.ws_connect(await chat_ws_url(fz.t.http, fz.t.url(""), fz.session)) as ws:
        assert json.loads((await ws.receive(timeout=30)).data)["type"] == "history"

        @fuzz_settings(SOCKET_FRAMES)
        @given(chat_frames)
        def one_frame(data: str | bytes) -> None:
            fz.run(fz.frame(ws, data))

        await asyncio.to_thread(one_frame)
        fz.report(capsys, "chat socket")
        assert fz.counts["inputs"] >= SOCKET_FRAMES
        assert fz.failures == [], "\n".join(fz.failures[:10])
        await fz.frame(ws, json.dumps({"type": "message", "text": "still here?", "id": "last"}))
        assert fz.counts["accepted"] >= 1
    assert await fz.healthy()


async def test_a_frame_past_64_kib_closes_only_its_own_socket(fuzz_router):
    fz = await _fuzzer(fuzz_router)
    async with fz.t.http.ws_connect(await chat_ws_url(fz.t.http, fz.t.url(""), fz.session)) as ws:
        await ws.receive(timeout=30)  # the history
        await ws.send_str(json.dumps({"type": "message", "text": "x" * 70_000}))
        closed = await ws.receive(timeout=30)
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1009  # message too big
    async with fz.t.http.ws_connect(await chat_ws_url(fz.t.http, fz.t.url(""), fz.session)) as ws:
        await ws.receive(timeout=30)
        await fz.frame(ws, json.dumps({"type": "message", "text": "hello again", "id": "again"}))
    assert fz.counts["accepted"] == 1


async def test_every_route_that_reads_a_body_answers_413_past_the_limit(fuzz_router):
    fz = await _fuzzer(fuzz_router)
    async with fz.t.http.ws_connect(await chat_ws_url(fz.t.http, fz.t.url(""), fz.session)) as ws:
        await ws.receive(timeout=30)  # the history
        await fz.frame(ws, json.dumps({"type": "message", "text": "my transfer failed"}))
    [conversation] = await fz.t.wait_for_queue("payments", lambda c: len(c) == 1)
    limit = fz.t.router.settings.max_body_bytes
    req = HostileRequest(
        body=b'{"text":"' + b"x" * limit + b'"}',
        content_type="application/json",
        auth="valid",
        signature="forged",  # a signature to check: the body is read for it
        secret="right",
        segment=conversation["id"],  # a conversation the routes find, so they read on
    )
    # These act on the URL alone and never read a body.
    no_body = {"claim", "resolve", "replay", "ticket", "logout", "renew", "confirm", "lift"}
    statuses = {}
    for method, template in fz.routes:
        if method == "POST" and template.rsplit("/", 1)[-1] not in no_body:
            # A case's routes need the conversation's case, or they answer 404 before reading.
            ident = conversation["case_id"] if template.startswith("/api/cases/") else req.segment
            path = template.replace("{id}", ident)
            async with fz.t.http.post(
                fz.t.url(path), data=req.body, headers=fz._headers(path, req)
            ) as resp:
                statuses[template] = resp.status
    assert len(statuses) >= 10
    assert set(statuses.values()) == {413}, statuses
