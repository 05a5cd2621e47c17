"""call records (CDRs)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_records",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("did", sa.String(length=20), nullable=True),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("callee", sa.String(length=64), nullable=True),
        sa.Column("caller_id_shown", sa.String(length=64), nullable=True),
        sa.Column("action_key", sa.String(length=32), nullable=True),
        sa.Column("command", sa.String(length=16), nullable=True),
        sa.Column("file_id", sa.String(length=36), nullable=True),
        sa.Column("a_sip_call_id", sa.String(length=255), nullable=False),
        sa.Column("b_sip_call_id", sa.String(length=255), nullable=True),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ringing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sip_code", sa.Integer(), nullable=True),
        sa.Column("hangup_cause", sa.String(length=200), nullable=False),
        sa.Column("hangup_by", sa.String(length=16), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_call_records_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_records")),
        sa.UniqueConstraint("call_id", name=op.f("uq_call_records_call_id")),
    )
    op.create_index("ix_call_records_account_invited", "call_records", ["account_id", "invited_at"])


def downgrade() -> None:
    op.drop_index("ix_call_records_account_invited", table_name="call_records")
    op.drop_table("call_records")
