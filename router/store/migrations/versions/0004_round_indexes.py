"""Indexes for the dispatcher's rounds, which read every reply or every waiting conversation
ever stored without them: the relay's replies not yet on Kafka (every 5 s), the ladder's steps
due (every second), the queue gauges (every 5 s). On the worker's event loop, each such read
held up the next chunk: with 24,000 conversations waiting, about 30, 10 and 15-25 ms
(bench/dispatcher_rounds.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_unpublished",
            ["seq"],
            unique=False,
            sqlite_where=sa.text("published = 0"),
            postgresql_where=sa.text("published = false"),
        )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index("ix_conversations_step_due", ["status", "step_due_at"], unique=False)
        batch_op.create_index(
            "ix_conversations_waiting_since", ["status", "queue", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_waiting_since")
        batch_op.drop_index("ix_conversations_step_due")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_unpublished")
