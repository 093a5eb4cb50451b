"""Indexes for what the dispatcher asks again and again, which read every conversation ever
stored without them: the counts each chunk makes (conversations waiting per queue, priority and
urgency; what each agent holds), and the SLA timer's each second (first responses due).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

NO_RESPONSE_YET = "first_response_at IS NULL AND sla_breached_at IS NULL"

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversations_waiting_counts",
            ["status", "queue", "priority", "urgency_rank"],
            unique=False,
        )
        batch_op.create_index(
            "ix_conversations_agent_loads", ["status", "assignee", "channel"], unique=False
        )
        batch_op.create_index(
            "ix_conversations_breach_due",
            ["sla_due_at"],
            unique=False,
            sqlite_where=sa.text(NO_RESPONSE_YET),
            postgresql_where=sa.text(NO_RESPONSE_YET),
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_breach_due")
        batch_op.drop_index("ix_conversations_agent_loads")
        batch_op.drop_index("ix_conversations_waiting_counts")
