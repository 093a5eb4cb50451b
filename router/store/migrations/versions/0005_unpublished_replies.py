"""The replies not yet on Kafka in a small table of their own, `unpublished_replies`, instead of
a `published` flag on each message: marking a chunk's replies published deletes a few short rows
instead of rewriting every reply and its indexes in `messages` (on PostgreSQL that update could
never be a HOT one, a partial index read the flag). The replies unpublished at the upgrade keep
their place in the new table, so the relay publishes them as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unpublished_replies",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )
    with op.batch_alter_table("unpublished_replies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_unpublished_replies_conversation_id"), ["conversation_id"], unique=False
        )
    op.execute(
        "INSERT INTO unpublished_replies (message_id, conversation_id)"
        " SELECT message_id, conversation_id FROM messages"
        " WHERE direction = 'out' AND published = false"
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_unpublished")
        batch_op.drop_column("published")


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("published", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.execute(
        "UPDATE messages SET published = false"
        " WHERE message_id IN (SELECT message_id FROM unpublished_replies)"
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.alter_column("published", server_default=None)
        batch_op.create_index(
            "ix_messages_unpublished",
            ["seq"],
            unique=False,
            sqlite_where=sa.text("published = 0"),
            postgresql_where=sa.text("published = false"),
        )
    op.drop_table("unpublished_replies")
