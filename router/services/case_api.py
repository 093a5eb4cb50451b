"""The cases API (docs/cases.md), mounted by the agents' API with the same logins:

- GET  /api/cases/{id}: the case, its conversations, every message across channels in time
  order, the transaction ids and amounts named, the protective action and the audit trail;
- POST /api/cases/{id}/link {"conversation_id"} and /unlink {"conversation_id"};
- POST /api/cases/{id}/messages {"text", "channel"?}: a reply on the channel the customer last
  wrote on, or the one the agent picks;
- POST /api/cases/{id}/protect/confirm and /protect/lift.

An agent sees a case when one of its conversations is in a queue they see; they see the whole
case then, since one agent owns it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from router.core.envelope import Outbound
from router.core.http import json_error, read_json
from router.core.settings import Settings
from router.operator_files.schemas.agents import Agent
from router.services.outbound_relay import OutboundRelay
from router.services.protect import agent_action, configured
from router.store.cases import CaseError
from router.store.conversations import ConversationStore

log = structlog.get_logger("router.services.case_api")

Auth = Callable[..., Callable]


class CaseApi:
    def __init__(
        self,
        settings: Settings,
        store: ConversationStore,
        auth: Auth,
        visible_queues: Callable[[Agent], list[str]],
        offer: Callable[[], Awaitable[None]],
        relay: OutboundRelay,
    ):
        self.settings, self.store, self.auth = settings, store, auth
        self.visible_queues, self.offer, self.relay = visible_queues, offer, relay

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/cases/{id}", self.auth(self.case))
        r.add_post("/api/cases/{id}/link", self.auth(self.link))
        r.add_post("/api/cases/{id}/unlink", self.auth(self.unlink))
        r.add_post("/api/cases/{id}/messages", self.auth(self.reply))
        r.add_post("/api/cases/{id}/protect/confirm", self.auth(self.confirm))
        r.add_post("/api/cases/{id}/protect/lift", self.auth(self.lift))

    async def case(self, request: web.Request, agent: Agent) -> web.Response:
        return web.json_response(await self._visible_case(request.match_info["id"], agent))

    async def link(self, request: web.Request, agent: Agent) -> web.Response:
        case = await self._visible_case(request.match_info["id"], agent)
        conversation_id = await self._visible_conversation(request, agent)
        await self._changing(self.store.cases.link(case["id"], conversation_id, agent.username))
        log.info("case.linked", case_id=case["id"], conversation_id=conversation_id)
        await self.offer()  # a waiting conversation goes to the case's owner now
        return web.json_response(await self._visible_case(case["id"], agent))

    async def unlink(self, request: web.Request, agent: Agent) -> web.Response:
        case = await self._visible_case(request.match_info["id"], agent)
        conversation_id = await self._visible_conversation(request, agent)
        new_case = await self._changing(
            self.store.cases.unlink(case["id"], conversation_id, agent.username)
        )
        log.info("case.unlinked", case_id=case["id"], conversation_id=conversation_id)
        view = await self._visible_case(case["id"], agent)
        return web.json_response({**view, "unlinked_to_case": new_case})

    async def reply(self, request: web.Request, agent: Agent) -> web.Response:
        """The agent's reply, in the case's conversation the customer last wrote in, or in the
        one on `channel`; the agent takes that conversation (409 if another agent holds it)."""
        case = await self._visible_case(request.match_info["id"], agent)
        body: Any = await read_json(request, max_depth=8)
        if not isinstance(body, dict):
            raise json_error(web.HTTPBadRequest, "body must be a JSON object")
        text, channel = body.get("text"), body.get("channel")
        if not isinstance(text, str) or not text.strip() or len(text) > 4000:
            raise json_error(web.HTTPBadRequest, "text must be a string of 1 to 4000 characters")
        conversation = _reply_conversation(case, channel)
        if not await self.store.claim(conversation["id"], agent.username):
            raise json_error(
                web.HTTPConflict, "this conversation is resolved or held by another agent"
            )
        out = Outbound(
            conversation_id=conversation["id"],
            conversation_key=conversation["conversation_key"],
            channel=conversation["channel"],
            to=conversation["customer_address"],
            text=text.strip(),
            kind="agent_reply",
            author=agent.name or agent.username,
        )
        await self.store.add_outbound(out)
        try:
            await self.relay.publish(out)
        except Exception as exc:  # stored; the dispatcher's relay publishes it later
            log.warning("case.reply_deferred", case_id=case["id"], error=repr(exc)[:300])
        answer = {"id": out.message_id, "conversation_id": out.conversation_id}
        return web.json_response({**answer, "channel": out.channel}, status=201)

    async def confirm(self, request: web.Request, agent: Agent) -> web.Response:
        return await self._protect(request, agent, "confirm")

    async def lift(self, request: web.Request, agent: Agent) -> web.Response:
        return await self._protect(request, agent, "lift")

    async def _protect(self, request: web.Request, agent: Agent, action: str) -> web.Response:
        case = await self._visible_case(request.match_info["id"], agent)
        status, reason = await agent_action(self.store, case["id"], action, agent.username)
        if status >= 400:
            raise json_error(web.HTTPConflict, reason)
        return web.json_response(
            {"status": reason, "case": await self._visible_case(case["id"], agent)}, status=status
        )

    # --- who sees what --------------------------------------------------------------------

    async def _visible_case(self, case_id: str, agent: Agent) -> dict[str, Any]:
        case = await self.store.cases.case(case_id) if len(case_id) <= 64 else None
        queues = set(self.visible_queues(agent))
        # Not found and not yours look the same: an agent learns nothing of other queues.
        if case is None or not any(c["queue"] in queues for c in case["conversations"]):
            raise json_error(web.HTTPNotFound, "no such case in your queues")
        freeze = next((r for r in case["protect_requests"] if r["action"] == "freeze"), None)
        case["protection"] = {
            "configured": configured(self.settings),
            "state": freeze["state"] if freeze else None,
            "message": None if configured(self.settings) else "not configured",
        }
        return case

    async def _visible_conversation(self, request: web.Request, agent: Agent) -> str:
        body: Any = await read_json(request, max_depth=8)
        if not isinstance(body, dict):
            raise json_error(web.HTTPBadRequest, "body must be a JSON object")
        conversation_id = body.get("conversation_id")
        if not isinstance(conversation_id, str) or not conversation_id.strip():
            raise json_error(web.HTTPBadRequest, "conversation_id must be a non-empty string")
        if len(conversation_id) > 64:
            raise json_error(web.HTTPBadRequest, "conversation_id is longer than 64 characters")
        conversation = await self.store.conversation(conversation_id.strip())
        if conversation is None or conversation["queue"] not in self.visible_queues(agent):
            raise json_error(web.HTTPNotFound, "no such conversation in your queues")
        return str(conversation["id"])

    @staticmethod
    async def _changing(work: Awaitable[Any]) -> Any:
        try:
            return await work
        except CaseError as exc:
            kind = web.HTTPNotFound if exc.status == 404 else web.HTTPConflict
            raise json_error(kind, str(exc)) from None


def _reply_conversation(case: dict[str, Any], channel: Any) -> dict[str, Any]:
    """The conversation a case's reply goes to: the one on `channel` the customer wrote in last,
    or (no channel) the one they wrote in last of all."""
    if channel is not None and not isinstance(channel, str):
        raise json_error(web.HTTPBadRequest, "channel must be a string")
    by_id = {c["id"]: c for c in case["conversations"]}
    wrote = [m["conversation_id"] for m in case["messages"] if m["direction"] == "in"]
    order = list(dict.fromkeys(reversed(wrote))) + [c for c in by_id if c not in wrote]
    for conversation_id in order:
        conversation = by_id[conversation_id]
        if channel is None or conversation["channel"] == channel:
            return conversation
    channels = sorted({c["channel"] for c in case["conversations"]})
    raise json_error(
        web.HTTPBadRequest, f"this case has no conversation on {channel!r}; it has {channels}"
    )
