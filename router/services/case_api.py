"""The cases API (docs/cases.md), mounted by the agents' API with the same logins:

- GET  /api/cases/{id}: the case, its conversations, every message across channels in time
  order, the transaction ids and amounts named, the protective action and the audit trail;
- POST /api/cases/{id}/link {"conversation_id"} and /unlink {"conversation_id"};
- POST /api/cases/{id}/protect/confirm and /protect/lift.

An agent sees a case when one of its conversations is in a queue they see; they see the whole
case then, since one agent owns it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from router.core.http import json_error, read_json
from router.core.settings import Settings
from router.operator_files.schemas.agents import Agent
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
    ):
        self.settings, self.store, self.auth = settings, store, auth
        self.visible_queues, self.offer = visible_queues, offer

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/cases/{id}", self.auth(self.case))
        r.add_post("/api/cases/{id}/link", self.auth(self.link))
        r.add_post("/api/cases/{id}/unlink", self.auth(self.unlink))
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
