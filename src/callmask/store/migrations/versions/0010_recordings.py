"""Call recordings: one row per recorded call, its status and its mixed file

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("session_sid", sa.String(length=34), nullable=True),
        sa.Column("media_call_id", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=191), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("file_format", sa.String(length=8), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_recordings_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
    )
    op.create_index(
        "ix_recordings_account_created", "recordings", ["account_id", "created_at"], unique=False
    )
    op.create_index("ix_recordings_node_status", "recordings", ["node_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_recordings_node_status", table_name="recordings")
    op.drop_index("ix_recordings_account_created", table_name="recordings")
    op.drop_table("recordings")
