"""calls in progress and node heartbeats, for closing calls a killed node left open

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "open_calls",
        sa.Column("record_id", sa.String(length=32), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_open_calls")),
    )
    op.create_index(op.f("ix_open_calls_node_id"), "open_calls", ["node_id"])
    op.create_table(
        "node_heartbeats",
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_node_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("node_heartbeats")
    op.drop_index(op.f("ix_open_calls_node_id"), table_name="open_calls")
    op.drop_table("open_calls")
