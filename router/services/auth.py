"""Agents' logins and tokens: POST /api/login (throttled per username and per address),
POST /api/logout (revokes the token), POST /api/events/ticket (a one-time ticket that opens the
events socket, so no long-lived token travels in a URL).

Nothing typed into the login form is logged: a failed login logs a short hash of the username
and its length, since people type their password into the username field."""

from __future__ import annotations

import hashlib
from typing import Any

import structlog
from aiohttp import web

from router.core.http import json_error, read_json
from router.core.settings import Settings
from router.observability.metrics import LOGINS_THROTTLED
from router.operator_files.schemas.agents import Agent
from router.policy.rules import Rules
from router.services.login_throttle import LoginThrottle
from router.store.conversations import ConversationStore
from router.store.credentials import token_hash

log = structlog.get_logger("router.services.auth")

TICKET_SECONDS = 30
MAX_USERNAME_CHARS = 100
MAX_PASSWORD_CHARS = 1000


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""


def username_fingerprint(username: str) -> str:
    """What a log may say about a username that did not log in."""
    return hashlib.sha256(username.encode()).hexdigest()[:12]


async def _login_fields(request: web.Request) -> tuple[str, str]:
    body: Any = await read_json(request, max_depth=8)  # 415, 400 or 413 for hostile bodies
    if not isinstance(body, dict):
        raise json_error(web.HTTPBadRequest, "body must be a JSON object")
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise json_error(web.HTTPBadRequest, "username and password must be strings")
    if len(username) > MAX_USERNAME_CHARS or len(password) > MAX_PASSWORD_CHARS:
        raise json_error(web.HTTPBadRequest, "username or password is too long")
    return username, password


class AgentLogins:
    def __init__(self, settings: Settings, store: ConversationStore, rules: Rules):
        self.settings, self.store, self.rules = settings, store, rules
        self.throttle = LoginThrottle(
            settings.login_free_failures,
            settings.login_free_failures_per_address,
            settings.login_backoff_max_seconds,
        )

    async def login(self, request: web.Request) -> dict[str, Any]:
        """The logged-in agent and a new token, or a 400, 401 or 429 raised."""
        username, password = await _login_fields(request)
        address = request.remote or "unknown"
        wait, by = self.throttle.retry_after(username, address)
        if wait:
            LOGINS_THROTTLED.labels(by=by).inc()
            log.warning(
                "agent.login_throttled",
                by=by,
                username_sha=username_fingerprint(username),
                retry_after=wait,
            )
            raise json_error(
                web.HTTPTooManyRequests,
                f"too many failed logins; try again in {wait} seconds",
                headers={"Retry-After": str(wait)},
            )
        # The password is checked whether or not the agent exists: the answer takes as long.
        matches = await self.store.check_password(username, password)
        agent = self.rules.config.agent(username)
        if agent is None or not matches:
            self.throttle.failed(username, address)
            log.info(
                "agent.login_failed",
                username_sha=username_fingerprint(username),
                username_chars=len(username),
            )
            raise json_error(web.HTTPUnauthorized, "wrong username or password")
        self.throttle.succeeded(username)
        token = await self.store.issue_token(username, self.settings.agent_token_ttl_seconds)
        log.info("agent.logged_in", username=username)
        return {"token": token, "agent": agent}

    async def logout(self, request: web.Request) -> str:
        """Revokes the request's token; returns its hash."""
        token = bearer_token(request)
        if not token or not await self.store.revoke_token(token):
            raise json_error(web.HTTPUnauthorized, "log in first: Authorization: Bearer <token>")
        return token_hash(token)

    async def agent_for_hash(self, hashed: str) -> tuple[Agent, str] | None:
        found = await self.store.token_by_hash(hashed)
        agent = self.rules.config.agent(found[0]) if found else None
        return (agent, hashed) if agent else None

    async def events_ticket(self, request: web.Request, agent: Agent) -> web.Response:
        subject = token_hash(bearer_token(request))
        ticket = await self.store.issue_ticket("agent", subject, TICKET_SECONDS)
        return web.json_response({"ticket": ticket, "expires_in": TICKET_SECONDS}, status=201)

    async def socket_agent(self, request: web.Request) -> tuple[Agent, str]:
        """Who opens the events socket: a one-time ?ticket=, or an Authorization header (clients
        that can set one). Returns the agent and the hash of the token it stands for."""
        ticket = request.query.get("ticket", "")
        if ticket:
            hashed = await self.store.redeem_ticket("agent", ticket)
        else:
            token = bearer_token(request)
            hashed = token_hash(token) if token else None
        found = await self.agent_for_hash(hashed) if hashed else None
        if found is None:
            raise json_error(
                web.HTTPUnauthorized,
                "log in first, then open the socket with ?ticket= from POST /api/events/ticket",
            )
        return found
