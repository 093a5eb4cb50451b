"""The agents' API: login and logout (router/services/auth.py), queues in dispatch order, conversations, replies, queue events.

An agent sees only the queues config/agents.yaml gives them; a supervisor sees every queue, the
sandbox outbox and the dead letters (and may replay them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import structlog
from aiohttp import WSCloseCode, web
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from router.bus.dead_letters import DeadLetters, NotReplayable, UnknownDeadLetter
from router.bus.fanout import TopicFanout
from router.bus.kafka import KafkaBus
from router.core.envelope import Outbound, QueueEvent
from router.core.http import json_error, read_json
from router.core.settings import Settings
from router.core.socket_auth import CLOSE_UNAUTHORIZED, closed_when_invalid
from router.operator_files.schemas.agents import Agent
from router.policy.rules import Rules
from router.services.assignment.availability import STATUSES
from router.services.assignment.offers import Assigner
from router.services.auth import AgentLogins, bearer_token
from router.services.case_api import CaseApi
from router.services.outbound_relay import OutboundRelay
from router.services.sla import SystemClock
from router.store.conversations import ConversationStore

log = structlog.get_logger("router.services.api")

T = TypeVar("T")


async def _json_object(request: web.Request) -> dict[str, Any]:
    # Every field the API reads is a flat string; a little room for extra fields, no more.
    body: dict[str, Any] = await read_json(request, max_depth=8)
    return body


def _string_field(body: dict[str, Any], name: str, max_chars: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise json_error(web.HTTPBadRequest, f"{name} must be a non-empty string")
    if len(value) > max_chars:
        raise json_error(web.HTTPBadRequest, f"{name} is longer than {max_chars} characters")
    return value.strip()


class AgentApi:
    def __init__(
        self, settings: Settings, store: ConversationStore, bus: KafkaBus, rules: Rules, clock=None
    ):
        self.settings, self.store, self.bus, self.rules = settings, store, bus, rules
        self.relay = OutboundRelay(bus, store)
        self.dead_letters = DeadLetters(bus)
        self.assigner = Assigner(store, rules, clock or SystemClock(), publish=self._publish)
        self.logins = AgentLogins(settings, store, rules)
        self._sockets: dict[web.WebSocketResponse, Agent] = {}
        self._socket_tokens: dict[web.WebSocketResponse, str] = {}
        self._fanout = TopicFanout(bus, bus.topics.events, self._broadcast)

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/login", self.login)
        r.add_post("/api/logout", self.logout)
        r.add_post("/api/events/ticket", self.auth(self.logins.events_ticket))
        r.add_get("/api/queues", self.auth(self.queues))
        r.add_get("/api/queues/{queue}/conversations", self.auth(self.queue_conversations))
        r.add_get("/api/conversations/{id}", self.auth(self.conversation))
        r.add_post("/api/conversations/{id}/claim", self.auth(self.claim))
        r.add_post("/api/conversations/{id}/messages", self.auth(self.reply))
        r.add_post("/api/conversations/{id}/transfer", self.auth(self.transfer))
        r.add_post("/api/conversations/{id}/resolve", self.auth(self.resolve))
        r.add_get("/api/outbox", self.auth(self.outbox, supervisor=True))
        r.add_get("/api/agents/me", self.auth(self.me))
        r.add_post("/api/agents/me/status", self.auth(self.set_status))
        r.add_get("/api/agents", self.auth(self.agents, supervisor=True))
        r.add_get("/api/dlq", self.auth(self.dlq, supervisor=True))
        r.add_get("/api/dlq/{id}", self.auth(self.dlq_entry, supervisor=True))
        r.add_post("/api/dlq/{id}/replay", self.auth(self.dlq_replay, supervisor=True))
        r.add_get("/api/events", self.events)
        CaseApi(
            self.settings, self.store, self.auth, self.visible_queues, self._offer, self.relay
        ).routes(app)

    async def start(self) -> None:
        await self._fanout.start()

    async def stop(self) -> None:
        await self._fanout.stop()
        sockets, self._sockets, self._socket_tokens = list(self._sockets), {}, {}
        await asyncio.gather(
            *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets),
            return_exceptions=True,
        )

    # --- who is asking --------------------------------------------------------------------

    def visible_queues(self, agent: Agent) -> list[str]:
        queues = self.rules.config.routing.queues
        return (
            list(queues) if agent.role == "supervisor" else [q for q in agent.queues if q in queues]
        )

    async def _agent_for(self, token: str) -> Agent | None:
        username = await self.store.token_user(token) if token else None
        return self.rules.config.agent(username) if username else None

    def auth(self, handler: Callable, supervisor: bool = False) -> Callable:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            agent = await self._agent_for(bearer_token(request))
            if agent is None:
                raise json_error(
                    web.HTTPUnauthorized, "log in first: Authorization: Bearer <token>"
                )
            if supervisor and agent.role != "supervisor":
                raise json_error(web.HTTPForbidden, "supervisors only")
            return await handler(request, agent)

        return wrapped

    async def _visible_conversation(self, request: web.Request, agent: Agent) -> dict[str, Any]:
        conversation = await self.store.conversation(request.match_info["id"])
        # Not found and not yours look the same: an agent learns nothing of other queues.
        if conversation is None or conversation["queue"] not in self.visible_queues(agent):
            raise json_error(web.HTTPNotFound, "no such conversation in your queues")
        return conversation

    # --- handlers -------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        logged_in = await self.logins.login(request)
        agent = logged_in["agent"]
        return web.json_response(
            {
                "token": logged_in["token"],
                "username": agent.username,
                "role": agent.role,
                "queues": self.visible_queues(agent),
            }
        )

    async def logout(self, request: web.Request) -> web.Response:
        revoked = await self.logins.logout(request)
        for ws, hashed in list(self._socket_tokens.items()):
            if hashed == revoked:
                await ws.close(code=CLOSE_UNAUTHORIZED, message=b"logged out")
        return web.json_response({"status": "logged out"})

    async def queues(self, request: web.Request, agent: Agent) -> web.Response:
        summaries = await self.store.queue_summaries()
        queues = self.rules.config.routing.queues
        return web.json_response(
            {
                "queues": [
                    {
                        "name": name,
                        "description": queues[name].description,
                        "sla_seconds": queues[name].first_response_sla_seconds,
                        "waiting": summaries.get(name, {}).get("waiting", 0),
                        "oldest_wait_seconds": summaries.get(name, {}).get(
                            "oldest_wait_seconds", 0.0
                        ),
                    }
                    for name in self.visible_queues(agent)
                ]
            }
        )

    async def queue_conversations(self, request: web.Request, agent: Agent) -> web.Response:
        queue = request.match_info["queue"]
        if queue not in self.rules.config.routing.queues:
            raise json_error(web.HTTPNotFound, f"no queue named {queue!r}")
        if queue not in self.visible_queues(agent):
            raise json_error(web.HTTPForbidden, f"you are not a member of queue {queue!r}")
        return web.json_response(
            {"queue": queue, "conversations": await self.store.queue_conversations(queue)}
        )

    async def conversation(self, request: web.Request, agent: Agent) -> web.Response:
        return web.json_response(await self._visible_conversation(request, agent))

    async def claim(self, request: web.Request, agent: Agent) -> web.Response:
        conversation = await self._visible_conversation(request, agent)
        if not await self.store.claim(conversation["id"], agent.username):
            raise json_error(
                web.HTTPConflict, "this conversation is resolved or held by another agent"
            )
        await self._event("conversation.claimed", conversation, agent.username)
        log.info(
            "conversation.claimed", conversation_id=conversation["id"], username=agent.username
        )
        return web.json_response(await self.store.conversation(conversation["id"]))

    async def reply(self, request: web.Request, agent: Agent) -> web.Response:
        conversation = await self._visible_conversation(request, agent)
        body = await _json_object(request)
        text = _string_field(body, "text", 4000)
        if conversation["status"] == "resolved":
            raise json_error(web.HTTPConflict, "this conversation is resolved")
        if not await self.store.claim(conversation["id"], agent.username):
            raise json_error(web.HTTPConflict, "another agent holds this conversation")
        out = Outbound(
            conversation_id=conversation["id"],
            conversation_key=conversation["conversation_key"],
            channel=conversation["channel"],
            to=conversation["customer_address"],
            text=text,
            kind="agent_reply",
            author=agent.name or agent.username,
        )
        await self.store.add_outbound(out)
        try:
            await self.relay.publish(out)
        except Exception as exc:  # stored; the dispatcher's relay publishes it when Kafka is back
            log.warning(
                "reply.publish_deferred", conversation_id=out.conversation_id, error=repr(exc)[:300]
            )
            return web.json_response({"id": out.message_id, "status": "queued"}, status=202)
        log.info(
            "conversation.replied",
            conversation_id=out.conversation_id,
            username=agent.username,
            trace_id=out.trace_id,
        )
        return web.json_response({"id": out.message_id, "status": "published"}, status=201)

    async def transfer(self, request: web.Request, agent: Agent) -> web.Response:
        conversation = await self._visible_conversation(request, agent)
        queue = _string_field(await _json_object(request), "queue", 40)
        if queue not in self.rules.config.routing.queues:
            raise json_error(web.HTTPBadRequest, f"no queue named {queue!r}")
        if not await self.store.transfer(conversation["id"], queue):
            raise json_error(web.HTTPConflict, "this conversation is resolved")
        transferred = await self.store.conversation(conversation["id"])
        assert transferred is not None  # conversations are never deleted
        await self._event("conversation.transferred", transferred, None)
        await self._offer()
        return web.json_response(transferred)

    async def resolve(self, request: web.Request, agent: Agent) -> web.Response:
        conversation = await self._visible_conversation(request, agent)
        if not await self.store.resolve(conversation["id"]):
            raise json_error(web.HTTPConflict, "this conversation is already resolved")
        await self._event("conversation.resolved", conversation, agent.username)
        await self._offer()
        return web.json_response(await self.store.conversation(conversation["id"]))

    async def outbox(self, request: web.Request, agent: Agent) -> web.Response:
        return web.json_response({"outbox": await self.store.list_outbox()})

    # --- dead letters (supervisors) ------------------------------------------------------

    async def dlq(self, request: web.Request, agent: Agent) -> web.Response:
        stage = request.query.get("stage") or None
        entries = await self._reading_dlq(self.dead_letters.entries(stage))
        return web.json_response({"entries": [e.as_dict() for e in entries]})

    async def dlq_entry(self, request: web.Request, agent: Agent) -> web.Response:
        entry = await self._reading_dlq(self.dead_letters.entry(request.match_info["id"]))
        return web.json_response(entry.as_dict())

    async def dlq_replay(self, request: web.Request, agent: Agent) -> web.Response:
        """Safe to repeat: the consumers are idempotent by message_id."""
        entry_id = request.match_info["id"]
        result = await self._reading_dlq(self.dead_letters.replay([entry_id], by=agent.username))
        return web.json_response({"replayed": [e.as_dict() for e in result.replayed]})

    async def _reading_dlq(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except UnknownDeadLetter as exc:
            raise json_error(web.HTTPNotFound, str(exc)) from None
        except NotReplayable as exc:
            raise json_error(web.HTTPConflict, str(exc)) from None
        except (KafkaError, TimeoutError, LookupError) as exc:
            # The broker is away or the DLQ topic is missing: say so, never a bare 500.
            log.warning("dlq.unreadable", error=repr(exc)[:300])
            raise json_error(
                web.HTTPServiceUnavailable, f"the DLQ cannot be read now: {exc}"
            ) from None

    # --- agents' availability ------------------------------------------------------------

    async def me(self, request: web.Request, agent: Agent) -> web.Response:
        view = await self.assigner.agent_view(agent.username)
        view["conversations"] = await self.store.agent_conversations(agent.username)
        return web.json_response(view)

    async def set_status(self, request: web.Request, agent: Agent) -> web.Response:
        status = _string_field(await _json_object(request), "status", 20)
        if status not in STATUSES:
            raise json_error(web.HTTPBadRequest, f"status must be one of {', '.join(STATUSES)}")
        view = await self.assigner.set_status(agent.username, status)
        if status == "available":
            await self._offer()
        return web.json_response(view)

    async def agents(self, request: web.Request, agent: Agent) -> web.Response:
        views = [
            await self.assigner.agent_view(a.username) for a in self.rules.config.agents.agents
        ]
        return web.json_response({"agents": views})

    async def _offer(self) -> None:
        """Capacity or an agent became free: offer waiting conversations now, not at the next tick."""
        try:
            await self.assigner.assign_waiting()
        except Exception as exc:  # the dispatcher's timers offer them on their next round
            log.warning("assignment.deferred", error=repr(exc)[:300])

    async def _publish(self, event: QueueEvent) -> None:
        try:
            await self.bus.publish(
                self.bus.topics.events, event.to_bytes(), key=event.conversation_id.encode()
            )
        except Exception as exc:  # the change is stored; consoles also poll
            log.warning("event.publish_failed", type=event.type, error=repr(exc)[:300])

    # --- queue events ---------------------------------------------------------------------

    async def _event(self, kind: str, conversation: dict[str, Any], assignee: str | None) -> None:
        event = QueueEvent(
            type=kind,
            conversation_id=conversation["id"],
            queue=conversation["queue"],
            urgency=conversation["urgency"],
            status=conversation["status"],
            assignee=assignee,
        )
        try:
            await self.bus.publish(
                self.bus.topics.events, event.to_bytes(), key=conversation["id"].encode()
            )
        except Exception as exc:  # the change is stored; consoles also poll
            log.warning("event.publish_failed", type=kind, error=repr(exc)[:300])

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        agent, hashed = await self.logins.socket_agent(request)

        async def valid_until() -> datetime | None:
            found = await self.store.token_by_hash(hashed)
            return found[1] if found else None

        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        self._sockets[ws], self._socket_tokens[ws] = agent, hashed
        try:
            async with closed_when_invalid(
                ws, valid_until, self.settings.socket_auth_check_seconds
            ):
                async for _ in ws:
                    pass  # the stream is one-way; anything the console sends is ignored
        finally:
            self._sockets.pop(ws, None)
            self._socket_tokens.pop(ws, None)
        return ws

    async def _broadcast(self, record: ConsumerRecord) -> None:
        if not self._sockets:  # no desk open: nothing to decode for
            return
        try:
            event = QueueEvent.from_bytes(record.value)
        except ValidationError:
            return
        frame = event.model_dump(mode="json")
        for ws, agent in list(self._sockets.items()):
            if event.queue in self.visible_queues(agent) and not ws.closed:
                await ws.send_json(frame)
