"""ConversationStore: conversations, messages, the sandbox outbox, agents' credentials.

One SQLAlchemy Core layer over SQLite (aiosqlite) and PostgreSQL (asyncpg). Every write that a
Kafka consumer makes is idempotent by message_id, so a redelivered record changes nothing.

The store is a facade: each aggregate's statements live in their own repository, all on the
one engine of `Database`.

- `router.store.schema`: the tables and the dispatch order;
- `router.store.inbound`: inbound messages, each in its conversation, with its acknowledgement;
- `router.store.outbound`: replies, their publishing and delivery, the sandbox outbox;
- `router.store.queues`: conversations as agents see and handle them, email threading lookups;
- `router.store.agents`: agents' passwords and tokens;
- `router.store.assignments`: agents' status and load, offering conversations to them and taking
  them back;
- `router.store.timers`: ladder steps and SLAs that are due;
- `router.store.customers`: verified identities and customers' attributes;
- `router.store.chat`: web chat sessions and the transcript under a conversation key;
- `router.store.tickets`: one-time tickets that open a websocket;
- `router.store.cases` (`store.cases`) and `router.store.protect_outbox` (`store.protect`): cases
  and their protective action's requests.
- `router.store.desk` (`store.desk`): agents' notes and tags, search, a customer's history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from router.core.envelope import Envelope, Outbound
from router.store.agents import AgentAccounts
from router.store.assignments import Assignments, Loads, Offer
from router.store.cases import Cases
from router.store.chat import LEGACY_IDLE, ChatSessions
from router.store.customers import Customers
from router.store.database import PAGE_CACHE_MB, Database
from router.store.desk import Desk
from router.store.inbound import Acknowledge, Inbound, InboundMessages, OnStored, Recorded
from router.store.outbound import OutboundMessages, SendIntent
from router.store.protect_outbox import ProtectOutbox
from router.store.queues import ConversationQueues
from router.store.tickets import SocketTickets
from router.store.timers import Due, Timers


class ConversationStore:
    def __init__(
        self,
        url: str,
        *,
        schema_wait_seconds: float = 0,
        sqlite_on_loop: bool = False,
        page_cache_mb: int = PAGE_CACHE_MB,
        **engine_options: Any,
    ):
        self._database = Database(
            url,
            schema_wait_seconds=schema_wait_seconds,
            sqlite_on_loop=sqlite_on_loop,
            page_cache_mb=page_cache_mb,
            **engine_options,
        )
        self._inbound = InboundMessages(self._database)
        self._outbound = OutboundMessages(self._database)
        self._queues = ConversationQueues(self._database)
        self._agents = AgentAccounts(self._database)
        self._assignments = Assignments(self._database)
        self._timers = Timers(self._database)
        self._customers = Customers(self._database)
        self._chat = ChatSessions(self._database)
        self._tickets = SocketTickets(self._database)
        self.cases = Cases(self._database)
        self.protect = ProtectOutbox(self._database)
        self.desk = Desk(self._database)  # notes, tags, search, customers across channels

    @property
    def url(self) -> str:
        return self._database.url

    @property
    def engine(self) -> AsyncEngine:
        return self._database.engine

    async def start(self) -> None:
        await self._database.start()

    async def stop(self) -> None:
        await self._database.stop()

    async def __aenter__(self) -> ConversationStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def ping(self) -> None:
        await self._database.ping()

    # --- inbound: router.store.inbound ----------------------------------------------------

    async def record_inbound(
        self,
        envelope: Envelope,
        queue: str,
        acknowledge: Acknowledge,
        placement: dict[str, Any] | None = None,
        decision: dict[str, Any] | None = None,
    ) -> Recorded:
        return await self._inbound.record_inbound(envelope, queue, acknowledge, placement, decision)

    async def record_inbound_many(
        self, items: list[Inbound], on_stored: OnStored | None = None
    ) -> list[Recorded]:
        return await self._inbound.record_inbound_many(items, on_stored)

    async def stored_message_ids(self, message_ids: list[str]) -> set[str]:
        return await self._inbound.stored_message_ids(message_ids)

    # --- outbound: router.store.outbound --------------------------------------------------

    async def add_outbound(self, out: Outbound) -> None:
        await self._outbound.add_outbound(out)

    async def unpublished(
        self,
        conversation_id: str | None = None,
        older_than: float = 0,
        *,
        conversation_ids: list[str] | None = None,
    ) -> list[Outbound]:
        return await self._outbound.unpublished(
            conversation_id, older_than, conversation_ids=conversation_ids
        )

    async def mark_published(self, *message_ids: str) -> None:
        await self._outbound.mark_published(*message_ids)

    async def set_delivery_status(
        self,
        message_id: str | None = None,
        status: str = "sent",
        *,
        provider_message_id: str | None = None,
        detail: str | None = None,
    ) -> bool:
        return await self._outbound.set_delivery_status(
            message_id, status, provider_message_id=provider_message_id, detail=detail
        )

    async def record_send_intent(self, message_id: str, status: str = "sending") -> bool:
        return await self._outbound.record_send_intent(message_id, status)

    async def clear_send_intent(self, message_id: str) -> bool:
        return await self._outbound.clear_send_intent(message_id)

    async def send_intent(self, message_id: str) -> SendIntent | None:
        return await self._outbound.send_intent(message_id)

    async def requeue_unsent(self, skip_channels: Collection[str] = ("chat",)) -> int:
        return await self._outbound.requeue_unsent(skip_channels)

    async def unpublished_ids(self, skip_channels: Collection[str] = ("chat",)) -> list[str]:
        return await self._outbound.unpublished_ids(skip_channels)

    async def requeue_published(self, message_ids: Collection[str]) -> tuple[list[str], int]:
        return await self._outbound.requeue_published(message_ids)

    async def record_sandbox_delivery(self, out: Outbound) -> bool:
        return await self._outbound.record_sandbox_delivery(out)

    async def record_sandbox_deliveries(self, outs: list[Outbound]) -> list[str]:
        return await self._outbound.record_sandbox_deliveries(outs)

    async def delivery_statuses(self, message_ids: list[str]) -> dict[str, str | None]:
        return await self._outbound.delivery_statuses(message_ids)

    async def list_outbox(self, limit: int = 200) -> list[dict[str, Any]]:
        return await self._outbound.list_outbox(limit)

    # --- conversations: router.store.queues -----------------------------------------------

    async def conversation_by_message_ids(
        self, channel: str, ids: list[str]
    ) -> dict[str, Any] | None:
        return await self._queues.conversation_by_message_ids(channel, ids)

    async def conversation_by_key(self, conversation_key: str) -> dict[str, Any] | None:
        return await self._queues.conversation_by_key(conversation_key)

    async def conversation_by_ticket(self, ticket: str) -> dict[str, Any] | None:
        return await self._queues.conversation_by_ticket(ticket)

    async def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        return await self._queues.conversation(conversation_id)

    async def queue_conversations(self, queue: str) -> list[dict[str, Any]]:
        return await self._queues.queue_conversations(queue)

    async def agent_conversations(self, username: str) -> list[dict[str, Any]]:
        return await self._queues.agent_conversations(username)

    async def queue_summaries(self) -> dict[str, dict[str, Any]]:
        return await self._queues.queue_summaries()

    async def claim(self, conversation_id: str, username: str) -> bool:
        return await self._queues.claim(conversation_id, username)

    async def resolve(self, conversation_id: str) -> bool:
        return await self._queues.resolve(conversation_id)

    async def transfer(self, conversation_id: str, queue: str) -> bool:
        return await self._queues.transfer(conversation_id, queue)

    async def first_customer_messages(
        self, since: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        return await self._queues.first_customer_messages(since, limit)

    # --- agents' credentials: router.store.agents -----------------------------------------

    async def set_password(self, username: str, password: str) -> None:
        await self._agents.set_password(username, password)

    async def add_password(self, username: str, password: str) -> bool:
        return await self._agents.add_password(username, password)

    async def has_password(self, username: str) -> bool:
        return await self._agents.has_password(username)

    async def check_password(self, username: str, password: str) -> bool:
        return await self._agents.check_password(username, password)

    async def issue_token(self, username: str, ttl_seconds: int) -> str:
        return await self._agents.issue_token(username, ttl_seconds)

    async def token_user(self, token: str) -> str | None:
        return await self._agents.token_user(token)

    async def token_by_hash(self, token_hash: str) -> tuple[str, datetime] | None:
        return await self._agents.token_by_hash(token_hash)

    async def revoke_token(self, token: str) -> bool:
        return await self._agents.revoke_token(token)

    async def issue_ticket(self, kind: str, subject: str, ttl_seconds: float) -> str:
        return await self._tickets.issue_ticket(kind, subject, ttl_seconds)

    async def redeem_ticket(self, kind: str, ticket: str) -> str | None:
        return await self._tickets.redeem_ticket(kind, ticket)

    # --- assignment: router.store.assignments ---------------------------------------------

    async def set_agent_status(self, username: str, status: str, at: datetime) -> None:
        await self._assignments.set_status(username, status, at)

    async def agent_state(self, username: str) -> tuple[Any, Loads]:
        return await self._assignments.agent_state(username)

    async def presence(
        self, *, waiting: bool = True
    ) -> tuple[set[str], Loads, Counter[tuple[str, int, int]]]:
        return await self._assignments.presence(waiting=waiting)

    async def waiting_to_offer(
        self, staffed: Callable[[set[str]], Collection[str]], limit: int
    ) -> list[str]:
        return await self._assignments.waiting_to_offer(staffed, limit)

    def offering(self, conversation_id: str) -> AbstractAsyncContextManager[Offer]:
        return self._assignments.offering(conversation_id)

    async def overdue(
        self, accept_before: datetime | None, answer_before: datetime | None
    ) -> list[str]:
        return await self._assignments.overdue(accept_before, answer_before)

    async def release(
        self,
        conversation_id: str,
        accept_before: datetime | None,
        answer_before: datetime | None,
        at: datetime,
        away_after_lapses: int,
    ) -> tuple[Any, str, bool] | None:
        return await self._assignments.release(
            conversation_id, accept_before, answer_before, at, away_after_lapses
        )

    async def conversation_urgency(self, conversation_id: str) -> Any:
        return await self._assignments.urgency(conversation_id)

    async def last_agents(self, conversation_keys: list[str], since: datetime) -> dict[str, str]:
        return await self._assignments.last_agents(conversation_keys, since)

    # --- timers: router.store.timers -----------------------------------------------------

    async def ladder_steps_due(self, at: datetime) -> list[str]:
        return await self._timers.ladder_steps_due(at)

    async def breaches_due(self, at: datetime) -> list[str]:
        return await self._timers.breaches_due(at)

    def ladder_step_due(
        self, conversation_id: str, at: datetime
    ) -> AbstractAsyncContextManager[Due]:
        return self._timers.ladder_step_due(conversation_id, at)

    def breach_due(self, conversation_id: str, at: datetime) -> AbstractAsyncContextManager[Due]:
        return self._timers.breach_due(conversation_id, at)

    # --- customers: router.store.customers ------------------------------------------------

    async def link_identity(self, channel: str, channel_user_id: str, phone: str) -> None:
        await self._customers.link_identity(channel, channel_user_id, phone)

    async def identity_for(self, channel: str, channel_user_id: str) -> dict[str, Any] | None:
        return await self._customers.identity_for(channel, channel_user_id)

    async def set_customer_attributes(self, address: str, attributes: dict[str, Any]) -> None:
        await self._customers.set_customer_attributes(address, attributes)

    async def customer_attributes(self, address: str) -> dict[str, Any]:
        return await self._customers.customer_attributes(address)

    async def customer_attributes_many(self, addresses: list[str]) -> dict[str, dict[str, Any]]:
        return await self._customers.customer_attributes_many(addresses)

    # --- chat sessions: router.store.chat -------------------------------------------------

    async def new_chat_session(
        self, name: str | None, idle_seconds: float = LEGACY_IDLE.total_seconds()
    ) -> tuple[str, str]:
        return await self._chat.new_chat_session(name, idle_seconds)

    async def chat_session(self, token: str) -> dict[str, Any] | None:
        return await self._chat.chat_session(token)

    async def chat_session_by_key(self, conversation_key: str) -> dict[str, Any] | None:
        return await self._chat.chat_session_by_key(conversation_key)

    async def renew_chat_session(self, token: str, idle_seconds: float) -> str | None:
        return await self._chat.renew_chat_session(token, idle_seconds)

    async def history(self, conversation_key: str) -> list[dict[str, Any]]:
        return await self._chat.history(conversation_key)
