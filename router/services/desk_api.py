"""The agents' desk API, beside `router.services.api`: internal notes and tags on a
conversation, canned replies from config/templates/, search, and the customer panel (their
identities and history across channels). Every answer is limited to the asker's queues."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from router.core.http import json_error
from router.operator_files.schemas.agents import Agent
from router.routing.replies import Replies
from router.services.api import AgentApi, _json_object, _string_field

_TAG = re.compile(r"^[\w\u4e00-\u9fff][\w\u4e00-\u9fff .:/-]{0,39}$")


class DeskApi:
    def __init__(self, api: AgentApi):
        self.api = api
        self.store = api.store

    def routes(self, app: web.Application) -> None:
        r, auth = app.router, self.api.auth
        r.add_get("/api/conversations/{id}/desk", auth(self.desk))
        r.add_post("/api/conversations/{id}/notes", auth(self.add_note))
        r.add_post("/api/conversations/{id}/tags", auth(self.add_tag))
        r.add_delete("/api/conversations/{id}/tags/{tag}", auth(self.remove_tag))
        r.add_get("/api/canned", auth(self.canned))
        r.add_get("/api/search", auth(self.search))

    async def _desk(self, conversation: dict[str, Any], agent: Agent) -> dict[str, Any]:
        desk = self.store.desk
        return {
            "notes": await desk.notes(conversation["id"]),
            "tags": await desk.tags(conversation["id"]),
            "customer": await desk.customer(conversation, self.api.visible_queues(agent)),
        }

    async def desk(self, request: web.Request, agent: Agent) -> web.Response:
        """Notes, tags and the customer panel of one conversation, in one answer."""
        conversation = await self.api._visible_conversation(request, agent)
        return web.json_response(await self._desk(conversation, agent))

    async def add_note(self, request: web.Request, agent: Agent) -> web.Response:
        conversation = await self.api._visible_conversation(request, agent)
        text = _string_field(await _json_object(request), "text", 4000)
        note = await self.store.desk.add_note(conversation["id"], agent.username, text)
        return web.json_response(note, status=201)

    async def add_tag(self, request: web.Request, agent: Agent) -> web.Response:
        conversation = await self.api._visible_conversation(request, agent)
        tag = _string_field(await _json_object(request), "tag", 40).lower()
        if not _TAG.match(tag):
            raise json_error(
                web.HTTPBadRequest, "a tag is letters, digits, spaces and . : / - _ only"
            )
        added = await self.store.desk.add_tag(conversation["id"], tag, agent.username)
        return web.json_response(
            {"tags": await self.store.desk.tags(conversation["id"])}, status=201 if added else 200
        )

    async def remove_tag(self, request: web.Request, agent: Agent) -> web.Response:
        conversation = await self.api._visible_conversation(request, agent)
        if not await self.store.desk.remove_tag(conversation["id"], request.match_info["tag"]):
            raise json_error(web.HTTPNotFound, "this conversation has no such tag")
        return web.json_response({"tags": await self.store.desk.tags(conversation["id"])})

    async def canned(self, request: web.Request, agent: Agent) -> web.Response:
        """Canned replies from config/templates/replies.yaml, {ticket} filled when `ticket=`
        (left as "{ticket}" for the console to fill otherwise)."""
        ticket = request.query.get("ticket", "")[:16] or "{ticket}"
        templates = self.api.rules.config.templates
        replies = Replies(templates)
        return web.json_response(
            {
                "canned": [
                    {
                        "name": name,
                        **{
                            lang: replies.fill(getattr(texts, lang), ticket=ticket)
                            for lang in ("zh", "en")
                        },
                    }
                    for name, texts in templates.canned.items()
                ]
            }
        )

    async def search(self, request: web.Request, agent: Agent) -> web.Response:
        """By ticket, phone, email, name or transaction id (any text in a message)."""
        text = request.query.get("q", "").strip()
        if len(text) < 3:
            raise json_error(web.HTTPBadRequest, "q must be at least 3 characters")
        if len(text) > 200:
            raise json_error(web.HTTPBadRequest, "q is longer than 200 characters")
        results = await self.store.desk.search(text, self.api.visible_queues(agent))
        return web.json_response({"query": text, "results": results})
