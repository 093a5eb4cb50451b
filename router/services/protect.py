"""ProtectService: sends the protective action's requests (freeze, then an agent's confirm or lift)
to the wallet's backend from the store's outbox (router/store/protect_outbox.py), signed
(router/core/signature.py), with an Idempotency-Key, retried with backoff until it answers;
records the answer on the case and tells the customer on the channel they last wrote on.

The backend decides: a freeze request asks it to hold the wallet, and its answer's `decision`
("held", or anything else) is what the case shows. Nothing is final until an agent confirms or
lifts the hold (`agent_action`, called by the cases API).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import aiohttp
import structlog

from router.core.envelope import Outbound, now
from router.core.settings import Settings
from router.core.signature import HEADER, signature_header
from router.core.tasks import cancel_and_wait
from router.operator_files.schemas.actions import FreezeAction
from router.policy.rules import Rules
from router.services.cases import request_body
from router.services.outbound_relay import OutboundRelay
from router.store.conversations import ConversationStore

log = structlog.get_logger("router.services.protect")

# What the customer is told when the backend has done what each action asks.
TOLD = {"freeze": "held", "confirm": "confirmed", "lift": "lifted"}
_RETRY_STATUSES = {408, 409, 425, 429}


def configured(settings: Settings) -> bool:
    return bool(settings.protect_url and settings.protect_secret)


class ProtectService:
    def __init__(
        self, settings: Settings, store: ConversationStore, rules: Rules, relay: OutboundRelay
    ):
        self.settings, self.store, self.rules, self.relay = settings, store, rules, relay
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("ProtectService already started")
        if not configured(self.settings):
            return
        self._http = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._loop(), name="protect:outbox")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.protect_poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.send_due()
            except Exception as exc:  # the database is away: the next round tries again
                log.warning("protect.round_failed", error=repr(exc)[:300])

    async def send_due(self) -> None:
        rules = self.rules.config.actions.freeze
        lease = timedelta(seconds=rules.timeout_seconds + 5)
        for request in await self.store.protect.take_due(now(), lease):
            await self._send(request, rules)

    async def _send(self, request: dict[str, Any], rules: FreezeAction) -> None:
        assert self._http is not None and self.settings.protect_secret is not None
        # Each attempt signs a body of its own (its number, when sent): a retry is never the
        # byte-for-byte replay a backend's guard refuses; the Idempotency-Key makes it one request.
        sent = {**request["body"], "attempt": request["attempts"], "sent_at": now().isoformat()}
        body = json.dumps(sent, ensure_ascii=False, sort_keys=True).encode()
        secret = self.settings.protect_secret.get_secret_value()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": request["idempotency_key"],
            HEADER: signature_header(secret, body),
        }
        try:
            async with self._http.post(
                str(self.settings.protect_url),
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=rules.timeout_seconds),
            ) as resp:
                status, text = resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._failed(request, rules, repr(exc), retry=True)
            return
        if 200 <= status < 300:
            answer = _json_or_text(text)
            row = await self.store.protect.answered(request["seq"], status, answer)
            log.info("protect.answered", case_id=request["case_id"], action=request["action"])
            if row is not None and _done(request["action"], answer):
                await self.tell_customer(request["case_id"], TOLD[request["action"]])
            return
        retry = status >= 500 or status in _RETRY_STATUSES
        await self._failed(request, rules, f"HTTP {status}: {text[:200]}", retry=retry)

    async def _failed(
        self, request: dict[str, Any], rules: FreezeAction, error: str, *, retry: bool
    ) -> None:
        attempts = request["attempts"]
        retry_at = None
        if retry and attempts < rules.max_attempts:
            delay = min(rules.backoff_seconds * 2 ** (attempts - 1), rules.backoff_max_seconds)
            retry_at = now() + timedelta(seconds=delay)
        await self.store.protect.failed_attempt(request["seq"], error, retry_at)
        log.warning(
            "protect.attempt_failed",
            case_id=request["case_id"],
            action=request["action"],
            attempt=attempts,
            retrying=retry_at is not None,
            error=error[:300],
        )

    async def tell_customer(self, case_id: str, what: str) -> None:
        """The template `what` (templates/protect.yaml) to the customer, on the channel of the
        conversation they last wrote in, in its language."""
        case = await self.store.cases.case(case_id)
        if case is None:
            return
        inbound = [m for m in case["messages"] if m["direction"] == "in"]
        if not inbound:
            return
        conv = next(c for c in case["conversations"] if c["id"] == inbound[-1]["conversation_id"])
        text = protect_text(self.rules, what, conv)
        out = Outbound(
            message_id=f"protect-{case_id}-{what}",
            conversation_id=conv["id"],
            conversation_key=conv["conversation_key"],
            channel=conv["channel"],
            to=conv["customer_address"],
            kind="protective_action",
            author="supportrouter",
            text=text,
        )
        try:
            await self.store.add_outbound(out)
        except Exception as exc:  # told before (a retried round): the message id is taken
            log.info("protect.customer_told_before", case_id=case_id, error=repr(exc)[:200])
            return
        await self.store.protect.note(
            case_id,
            "protect.customer_told",
            detail={"what": what, "conversation_id": conv["id"], "channel": conv["channel"]},
        )
        try:
            await self.relay.publish(out)
        except Exception as exc:  # stored: the dispatcher's relay publishes it later
            log.warning("protect.publish_deferred", case_id=case_id, error=repr(exc)[:300])


async def agent_action(
    store: ConversationStore, case_id: str, action: str, username: str
) -> tuple[int, str]:
    """An agent confirms or lifts the hold: (HTTP status, reason). The request to the backend is
    written to the outbox (sent by ProtectService); the case's audit trail names the agent."""
    requests = await store.protect.requests(case_id)
    freeze = requests.get("freeze")
    if freeze is None:
        return 409, "no protective action was requested for this case"
    if freeze["state"] == "not_configured":
        return 409, "the protective action is not configured (SUPPORTROUTER_PROTECT_URL)"
    if freeze["state"] != "answered":
        return 409, "the backend has not answered the freeze request yet"
    if action == "confirm" and "lift" in requests:
        return 409, "the hold was lifted; it cannot be confirmed"
    if action in requests:
        return 409, f"already {'confirmed' if action == 'confirm' else 'lifted'}"
    case = await store.cases.case(case_id)
    assert case is not None  # it has a request
    await store.protect.queue(case_id, action, request_body(case, action, username), username)
    log.info("protect.agent_action", case_id=case_id, action=action, username=username)
    return 202, "queued"


def protect_text(rules: Rules, what: str, conversation: dict[str, Any]) -> str:
    config = rules.config
    reply = getattr(config.protect_templates, what)
    channel = conversation["channel"]
    texts = reply.texts(channel, config.templates.form(channel))
    language = conversation["language"] if conversation["language"] in ("zh", "en") else "en"
    return str(getattr(texts, language).format(ticket=conversation["ticket"], wait=""))


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text[:500]


def _done(action: str, answer: Any) -> bool:
    """Did the backend do what was asked? A freeze it declined is for the agent to explain."""
    if action != "freeze":
        return True
    return isinstance(answer, dict) and answer.get("decision") == "held"
