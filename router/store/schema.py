"""The schema: every table of the store and the dispatch order.

A change here needs a revision in router/store/migrations/versions/ (`supportrouter db revision
-m WHAT` writes it; docs/architecture.md), which is what changes a database: `supportrouter db
upgrade`. tests/test_migrations.py fails while the two differ."""

from __future__ import annotations

import sqlalchemy as sa

from router.core.envelope import Urgency

metadata = sa.MetaData()

_NO_RESPONSE_YET = "first_response_at IS NULL AND sla_breached_at IS NULL"

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("ticket", sa.String(16), nullable=False, unique=True),
    sa.Column("conversation_key", sa.String(200), nullable=False, index=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("customer_address", sa.String(320), nullable=False),
    sa.Column("customer_name", sa.String(200)),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("category", sa.String(40), nullable=False),
    sa.Column("urgency", sa.String(10), nullable=False),
    sa.Column("urgency_rank", sa.Integer, nullable=False),
    sa.Column("queue", sa.String(40), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # waiting | assigned | resolved
    sa.Column("assignee", sa.String(60)),
    sa.Column("preview", sa.String(200), nullable=False),
    sa.Column("rules_version", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Routing, SLA and assignment: router/routing/workflow.py, router/services/sla.py, router/services/assignment/.
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column(
        "rule", sa.String(80)
    ),  # the workflow filter (or triage/route/default) that placed it
    sa.Column("ladder_step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("step_due_at", sa.DateTime(timezone=True)),  # when the ladder moves on, if waiting
    sa.Column("sla_due_at", sa.DateTime(timezone=True)),  # first response due (business hours)
    sa.Column("sla_breached_at", sa.DateTime(timezone=True)),
    sa.Column("assigned_at", sa.DateTime(timezone=True)),
    sa.Column("accepted_at", sa.DateTime(timezone=True)),  # the agent claimed it
    sa.Column("first_response_at", sa.DateTime(timezone=True)),  # the first agent reply
    # What the agent must know before answering, e.g. {"thread_mismatch": true, "claimed_ticket":
    # "T1A2B3C4D"}: a mail claimed another customer's conversation and was given its own.
    sa.Column("flags", sa.JSON),
    sa.Column("case_id", sa.String(32), index=True),  # router/store/cases.py
    sa.Index("ix_conversations_queue_order", "queue", "status", "urgency_rank", "created_at"),
    # What every dispatcher chunk counts (router/store/assignments.py `presence`): the waiting
    # per queue, priority and urgency, and what each agent holds. Without these, each count
    # read every conversation ever stored, resolved ones included.
    sa.Index("ix_conversations_waiting_counts", "status", "queue", "priority", "urgency_rank"),
    sa.Index("ix_conversations_agent_loads", "status", "assignee", "channel"),
    # The SLA timer's question each second (router/store/timers.py): whose first response is
    # due and not yet given. Only those conversations are in it, so it stays small.
    sa.Index(
        "ix_conversations_breach_due",
        "sla_due_at",
        sqlite_where=sa.text(_NO_RESPONSE_YET),
        postgresql_where=sa.text(_NO_RESPONSE_YET),
    ),
    # The dispatcher's rounds (migration 0004): the ladder's steps due each second
    # (router/store/timers.py), the queue gauges' count and oldest every five (queues.py).
    sa.Index("ix_conversations_step_due", "status", "step_due_at"),
    sa.Index("ix_conversations_waiting_since", "status", "queue", "created_at"),
)

# Dispatch order, everywhere (queue listings, assignment, an agent's own list): critical first,
# whatever any priority says; then priority; then urgency; then the oldest.
DISPATCH_ORDER = (
    sa.case((conversations.c.urgency_rank >= Urgency.CRITICAL.rank, 1), else_=0).desc(),
    conversations.c.priority.desc(),
    conversations.c.urgency_rank.desc(),
    conversations.c.created_at,
    conversations.c.id,
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("direction", sa.String(4), nullable=False),  # in | out
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("channel_message_id", sa.String(200)),
    sa.Column("author", sa.String(200)),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("meta", sa.JSON, nullable=False),
    # Outbound only: queued → sending → sent | sandboxed | failed, then what the provider reports
    # (delivered, undelivered, read ...); provider_message_id ties a status callback to it.
    sa.Column("delivery_status", sa.String(20)),
    sa.Column("delivery_detail", sa.String(500)),
    sa.Column("provider_message_id", sa.String(200), index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # The send intent: a sender writes `sending` (or `resending`, the one retry of an unknown
    # outcome) with the time and a count before it calls a provider, so a reply still `sending`
    # after a crash is known to have an unknown outcome (router/services/sender.py).
    sa.Column("send_attempts", sa.Integer, server_default="0"),
    sa.Column("send_started_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("channel", "channel_message_id", name="uq_messages_channel_message"),
    sa.Index("ix_messages_conversation", "conversation_id", "seq"),
)

# The replies stored and not yet acknowledged by Kafka (router/store/outbound.py): a row is
# written with its reply, in the same transaction, and deleted once Kafka took the reply; what a
# crash or a lost broker left here the relay publishes again. A small table of its own, so that
# marking a chunk's replies published deletes a few short rows instead of rewriting each reply
# in `messages` and its indexes (docs/performance.md, "Twentieth round").
unpublished_replies = sa.Table(
    "unpublished_replies",
    metadata,
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("conversation_id", sa.String(32), nullable=False, index=True),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),
    sa.Column("conversation_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

agent_credentials = sa.Table(
    "agent_credentials",
    metadata,
    sa.Column("username", sa.String(60), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
)

agent_tokens = sa.Table(
    "agent_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(60), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# A phone number a channel verified belongs to one of its users (Telegram: the user shared
# their own contact through the contact button). Never written from anything unverified.
identities = sa.Table(
    "identities",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("channel_user_id", sa.String(200), primary_key=True),
    sa.Column("phone", sa.String(32), nullable=False, index=True),
    sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
)

# The agents' desk (router/store/desk.py): notes only agents see, and tags, on a conversation.
conversation_notes = sa.Table(
    "conversation_notes",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(32), nullable=False, index=True),
    sa.Column("author", sa.String(60), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

conversation_tags = sa.Table(
    "conversation_tags",
    metadata,
    sa.Column("conversation_id", sa.String(32), primary_key=True),
    sa.Column("tag", sa.String(40), primary_key=True),
    sa.Column("added_by", sa.String(60), nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
)

# An agent's availability (available | away | offline) and since when they have had no new work.
agent_state = sa.Table(
    "agent_state",
    metadata,
    sa.Column("username", sa.String(60), primary_key=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("idle_since", sa.DateTime(timezone=True), nullable=False),
)

# The agent who last accepted a conversation of this customer: a returning customer goes back.
customer_agents = sa.Table(
    "customer_agents",
    metadata,
    sa.Column("conversation_key", sa.String(200), primary_key=True),
    sa.Column("username", sa.String(60), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Every offer of a conversation to an agent, and how it ended: the assignment audit trail.
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(32), nullable=False, index=True),
    sa.Column("username", sa.String(60), nullable=False),
    sa.Column("reason", sa.String(20), nullable=False),  # longest_idle | returning | claimed
    sa.Column("worker", sa.String(80), nullable=False),  # which dispatcher process decided
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended", sa.String(20)),  # lapsed (not accepted) | timed_out (not answered)
)

# What the wallet knows of a customer (vip, segment ...): `customer.*` in routing filters.
customer_profiles = sa.Table(
    "customer_attributes",
    metadata,
    sa.Column("address", sa.String(320), primary_key=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

chat_sessions = sa.Table(
    "chat_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("conversation_key", sa.String(200), nullable=False, unique=True),
    sa.Column("name", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Moved forward at every renewal; NULL (a session made before sessions expired): created_at
    # plus the idle limit.
    sa.Column("expires_at", sa.DateTime(timezone=True)),
)

# A websocket is opened with one of these, never with a long-lived token in its URL: single use,
# valid for seconds, naming the credential (kind "agent": a token's hash; "chat": a session's
# conversation key) the socket then keeps checking.
socket_tickets = sa.Table(
    "socket_tickets",
    metadata,
    sa.Column("ticket_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


# Cases (router/store/cases.py): one incident, the conversations of one customer about it.
cases = sa.Table(
    "cases",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("customer_phone", sa.String(32), index=True),  # verified or the channel's own
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# What each inbound message said that joins conversations into a case: a transaction id, an
# amount, an unauthorized-transaction report, from which phone and when.
case_facts = sa.Table(
    "case_facts",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False),
    sa.Column("conversation_id", sa.String(32), nullable=False, index=True),
    sa.Column("phone", sa.String(32), index=True),
    sa.Column("kind", sa.String(20), nullable=False),  # transaction_id | amount | unauthorized
    sa.Column("value", sa.String(80), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("message_id", "kind", "value", name="uq_case_facts_message"),
)

# A case's audit trail: joined, linked, unlinked, and every step of its protective action.
case_events = sa.Table(
    "case_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(32), nullable=False, index=True),
    sa.Column("conversation_id", sa.String(32)),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("by", sa.String(60), nullable=False),  # an agent, "supportrouter" or "backend"
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# The protective action's outbox: one request per case and action (freeze, confirm, lift),
# sent and retried by router/services/protect.py until the wallet's backend answers.
protect_requests = sa.Table(
    "protect_requests",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(32), nullable=False),
    sa.Column("action", sa.String(10), nullable=False),  # freeze | confirm | lift
    sa.Column("idempotency_key", sa.String(80), nullable=False, unique=True),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column(
        "state", sa.String(16), nullable=False
    ),  # pending | answered | failed | not_configured
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("answer", sa.JSON),  # the backend's status and JSON answer
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("answered_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("case_id", "action", name="uq_protect_requests_case_action"),
)
