"""tata dialect: account webhook, agents, broadcast lead lists, leads and keys; CDR
columns and indexes for /v1/call/records

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 04:00:00

Existing call records get ``call_duration_s`` (INVITE to end, whole seconds) computed
here; new ones get it from the model's default.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECORD_INDEXES: dict[str, list[str]] = {
    "ix_call_records_account_invited_filters": [
        "account_id",
        "invited_at",
        "status",
        "direction",
        "service",
        "call_duration_s",
    ],
    "ix_call_records_account_caller": ["account_id", "caller", "invited_at"],
    "ix_call_records_account_callee": ["account_id", "callee", "invited_at"],
    "ix_call_records_account_agent": ["account_id", "agent_id", "invited_at"],
    "ix_call_records_account_department": ["account_id", "department", "invited_at"],
    "ix_call_records_account_ivr": ["account_id", "ivr", "invited_at"],
}


def _created_at() -> sa.Column[Any]:
    return sa.Column(
        "created_at",
        sa.DateTime(timezone=True),
        server_default=sa.text("(CURRENT_TIMESTAMP)"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "account_settings",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_settings_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_settings")),
    )
    op.create_table(
        "tata_agents",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("follow_me_number", sa.String(length=20), nullable=False),
        sa.Column("eid", sa.String(length=15), nullable=False),
        sa.Column("intercom", sa.String(length=4), nullable=True),
        sa.Column("custom_status", sa.Integer(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_tata_agents_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tata_agents")),
        sa.UniqueConstraint("eid", name=op.f("uq_tata_agents_eid")),
        sa.UniqueConstraint("account_id", "intercom", name="uq_tata_agents_account_intercom"),
        sa.UniqueConstraint(
            "account_id", "follow_me_number", name="uq_tata_agents_account_follow_me_number"
        ),
    )
    op.create_table(
        "tata_lead_lists",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_tata_lead_lists_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tata_lead_lists")),
    )
    op.create_index(
        op.f("ix_tata_lead_lists_account_id"), "tata_lead_lists", ["account_id"], unique=False
    )
    op.create_table(
        "tata_leads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lead_list_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("otp", sa.String(length=10), nullable=False),
        _created_at(),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["lead_list_id"],
            ["tata_lead_lists.id"],
            name=op.f("fk_tata_leads_lead_list_id_tata_lead_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tata_leads")),
        sa.UniqueConstraint("lead_list_id", "number", name="uq_tata_leads_lead_list_id_number"),
    )
    op.create_table(
        "tata_broadcast_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("lead_list_id", sa.String(length=32), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("caller_id", sa.String(length=20), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_tata_broadcast_keys_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["lead_list_id"],
            ["tata_lead_lists.id"],
            name=op.f("fk_tata_broadcast_keys_lead_list_id_tata_lead_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tata_broadcast_keys")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_tata_broadcast_keys_key_sha256")),
    )
    op.create_index(
        op.f("ix_tata_broadcast_keys_account_id"),
        "tata_broadcast_keys",
        ["account_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_tata_broadcast_keys_lead_list_id"),
        "tata_broadcast_keys",
        ["lead_list_id"],
        unique=False,
    )

    with op.batch_alter_table("call_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("call_duration_s", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("agent_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("custom_identifier", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("broadcast_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("department", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ivr", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        seconds = "CAST(ROUND((julianday(ended_at) - julianday(invited_at)) * 86400) AS INTEGER)"
    else:
        seconds = "CAST(ROUND(EXTRACT(EPOCH FROM (ended_at - invited_at))) AS INTEGER)"
    # Rows whose end is not after their start keep the server default, 0.
    op.execute(f"UPDATE call_records SET call_duration_s = {seconds} WHERE ended_at > invited_at")
    with op.batch_alter_table("call_records", schema=None) as batch_op:
        for name, columns in RECORD_INDEXES.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("call_records", schema=None) as batch_op:
        for name in RECORD_INDEXES:
            batch_op.drop_index(name)
        for column in (
            "ivr",
            "department",
            "broadcast_id",
            "custom_identifier",
            "agent_id",
            "call_duration_s",
        ):
            batch_op.drop_column(column)
    op.drop_index(op.f("ix_tata_broadcast_keys_lead_list_id"), table_name="tata_broadcast_keys")
    op.drop_index(op.f("ix_tata_broadcast_keys_account_id"), table_name="tata_broadcast_keys")
    op.drop_table("tata_broadcast_keys")
    op.drop_table("tata_leads")
    op.drop_index(op.f("ix_tata_lead_lists_account_id"), table_name="tata_lead_lists")
    op.drop_table("tata_lead_lists")
    op.drop_table("tata_agents")
    op.drop_table("account_settings")
