"""Initial schema: every table and index, as create_all made them before migrations.

The tables are a frozen copy, never the live `router.store.schema`: this revision must make the
same tables whatever the schema becomes later, and a database made by create_all is adopted
(stamped at this revision) only when it matches `SCHEMA` (router/store/migrate.py).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = sa.MetaData()

conversations = sa.Table(
    "conversations",
    SCHEMA,
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
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("assignee", sa.String(60)),
    sa.Column("preview", sa.String(200), nullable=False),
    sa.Column("rules_version", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rule", sa.String(80)),
    sa.Column("ladder_step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("step_due_at", sa.DateTime(timezone=True)),
    sa.Column("sla_due_at", sa.DateTime(timezone=True)),
    sa.Column("sla_breached_at", sa.DateTime(timezone=True)),
    sa.Column("assigned_at", sa.DateTime(timezone=True)),
    sa.Column("accepted_at", sa.DateTime(timezone=True)),
    sa.Column("first_response_at", sa.DateTime(timezone=True)),
    sa.Column("flags", sa.JSON),
    sa.Index("ix_conversations_queue_order", "queue", "status", "urgency_rank", "created_at"),
)

messages = sa.Table(
    "messages",
    SCHEMA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("direction", sa.String(4), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("channel_message_id", sa.String(200)),
    sa.Column("author", sa.String(200)),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("published", sa.Boolean, nullable=False),
    sa.Column("delivery_status", sa.String(20)),
    sa.Column("delivery_detail", sa.String(500)),
    sa.Column("provider_message_id", sa.String(200), index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("send_attempts", sa.Integer, server_default="0"),
    sa.Column("send_started_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("channel", "channel_message_id", name="uq_messages_channel_message"),
    sa.Index("ix_messages_conversation", "conversation_id", "seq"),
)

outbox = sa.Table(
    "outbox",
    SCHEMA,
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
    SCHEMA,
    sa.Column("username", sa.String(60), primary_key=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
)

agent_tokens = sa.Table(
    "agent_tokens",
    SCHEMA,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(60), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

identities = sa.Table(
    "identities",
    SCHEMA,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("channel_user_id", sa.String(200), primary_key=True),
    sa.Column("phone", sa.String(32), nullable=False, index=True),
    sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
)

agent_state = sa.Table(
    "agent_state",
    SCHEMA,
    sa.Column("username", sa.String(60), primary_key=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("idle_since", sa.DateTime(timezone=True), nullable=False),
)

customer_agents = sa.Table(
    "customer_agents",
    SCHEMA,
    sa.Column("conversation_key", sa.String(200), primary_key=True),
    sa.Column("username", sa.String(60), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

assignments = sa.Table(
    "assignments",
    SCHEMA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(32), nullable=False, index=True),
    sa.Column("username", sa.String(60), nullable=False),
    sa.Column("reason", sa.String(20), nullable=False),
    sa.Column("worker", sa.String(80), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended", sa.String(20)),
)

customer_profiles = sa.Table(
    "customer_attributes",
    SCHEMA,
    sa.Column("address", sa.String(320), primary_key=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

chat_sessions = sa.Table(
    "chat_sessions",
    SCHEMA,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("conversation_key", sa.String(200), nullable=False, unique=True),
    sa.Column("name", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
)

socket_tickets = sa.Table(
    "socket_tickets",
    SCHEMA,
    sa.Column("ticket_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


def upgrade() -> None:
    SCHEMA.create_all(op.get_bind())


def downgrade() -> None:
    SCHEMA.drop_all(op.get_bind())
