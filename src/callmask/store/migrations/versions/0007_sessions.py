"""sessions over a number pool (Twilio Proxy v1): services, pool numbers, sessions,
participants, interactions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 22:23:17.703602
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "proxy_services",
        sa.Column("sid", sa.String(length=34), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("unique_name", sa.String(length=191), nullable=False),
        sa.Column("default_ttl", sa.Integer(), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("intercept_callback_url", sa.Text(), nullable=True),
        sa.Column("out_of_session_callback_url", sa.Text(), nullable=True),
        sa.Column("number_selection_behavior", sa.String(length=16), nullable=False),
        sa.Column("geo_match_level", sa.String(length=16), nullable=False),
        sa.Column("chat_instance_sid", sa.String(length=34), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_proxy_services_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_proxy_services")),
        sa.UniqueConstraint(
            "account_id", "unique_name", name="uq_proxy_services_account_unique_name"
        ),
    )
    op.create_table(
        "proxy_pool_numbers",
        sa.Column("sid", sa.String(length=34), nullable=False),
        sa.Column("service_sid", sa.String(length=34), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("number_key", sa.String(length=32), nullable=False),
        sa.Column("e164", sa.String(length=20), nullable=False),
        sa.Column("is_reserved", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_proxy_pool_numbers_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["number_key"],
            ["numbers.number_key"],
            name=op.f("fk_proxy_pool_numbers_number_key_numbers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_sid"],
            ["proxy_services.sid"],
            name=op.f("fk_proxy_pool_numbers_service_sid_proxy_services"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_proxy_pool_numbers")),
        sa.UniqueConstraint("e164", name=op.f("uq_proxy_pool_numbers_e164")),
        sa.UniqueConstraint("number_key", name=op.f("uq_proxy_pool_numbers_number_key")),
    )
    with op.batch_alter_table("proxy_pool_numbers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_proxy_pool_numbers_service_sid"), ["service_sid"], unique=False
        )

    op.create_table(
        "proxy_sessions",
        sa.Column("sid", sa.String(length=34), nullable=False),
        sa.Column("service_sid", sa.String(length=34), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("unique_name", sa.String(length=191), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=24), nullable=False),
        sa.Column("ttl", sa.Integer(), nullable=False),
        sa.Column("date_expiry", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("date_started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("date_ended", sa.DateTime(timezone=True), nullable=True),
        sa.Column("date_last_interaction", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_reason", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_proxy_sessions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_sid"],
            ["proxy_services.sid"],
            name=op.f("fk_proxy_sessions_service_sid_proxy_services"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_proxy_sessions")),
        sa.UniqueConstraint(
            "service_sid", "unique_name", name="uq_proxy_sessions_service_unique_name"
        ),
    )
    with op.batch_alter_table("proxy_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_proxy_sessions_service_created", ["service_sid", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_proxy_sessions_status_expires", ["status", "expires_at"], unique=False
        )

    op.create_table(
        "proxy_interactions",
        sa.Column("sid", sa.String(length=34), nullable=False),
        sa.Column("session_sid", sa.String(length=34), nullable=False),
        sa.Column("service_sid", sa.String(length=34), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("inbound_participant_sid", sa.String(length=34), nullable=True),
        sa.Column("inbound_resource_sid", sa.String(length=64), nullable=True),
        sa.Column("inbound_resource_status", sa.String(length=16), nullable=True),
        sa.Column("inbound_resource_type", sa.String(length=16), nullable=True),
        sa.Column("outbound_participant_sid", sa.String(length=34), nullable=True),
        sa.Column("outbound_resource_sid", sa.String(length=64), nullable=True),
        sa.Column("outbound_resource_status", sa.String(length=16), nullable=True),
        sa.Column("outbound_resource_type", sa.String(length=16), nullable=True),
        sa.Column("duration_s", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_proxy_interactions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_sid"],
            ["proxy_sessions.sid"],
            name=op.f("fk_proxy_interactions_session_sid_proxy_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_proxy_interactions")),
    )
    with op.batch_alter_table("proxy_interactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_proxy_interactions_session_created", ["session_sid", "created_at"], unique=False
        )

    op.create_table(
        "proxy_participants",
        sa.Column("sid", sa.String(length=34), nullable=False),
        sa.Column("session_sid", sa.String(length=34), nullable=False),
        sa.Column("service_sid", sa.String(length=34), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("identifier", sa.String(length=191), nullable=False),
        sa.Column("friendly_name", sa.String(length=255), nullable=True),
        sa.Column("proxy_identifier", sa.String(length=20), nullable=False),
        sa.Column("pool_number_sid", sa.String(length=34), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.Column("date_deleted", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_proxy_participants_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pool_number_sid"],
            ["proxy_pool_numbers.sid"],
            name=op.f("fk_proxy_participants_pool_number_sid_proxy_pool_numbers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["service_sid"],
            ["proxy_services.sid"],
            name=op.f("fk_proxy_participants_service_sid_proxy_services"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_sid"],
            ["proxy_sessions.sid"],
            name=op.f("fk_proxy_participants_session_sid_proxy_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_proxy_participants")),
        sa.UniqueConstraint(
            "proxy_identifier",
            "identifier",
            "active",
            "service_sid",
            name="uq_proxy_participants_open_pair",
        ),
    )
    with op.batch_alter_table("proxy_participants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_proxy_participants_pool_number_sid"), ["pool_number_sid"], unique=False
        )
        batch_op.create_index(
            "ix_proxy_participants_service_identifier",
            ["service_sid", "identifier", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_proxy_participants_session_sid"), ["session_sid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("proxy_participants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_proxy_participants_session_sid"))
        batch_op.drop_index("ix_proxy_participants_service_identifier")
        batch_op.drop_index(batch_op.f("ix_proxy_participants_pool_number_sid"))

    op.drop_table("proxy_participants")
    with op.batch_alter_table("proxy_interactions", schema=None) as batch_op:
        batch_op.drop_index("ix_proxy_interactions_session_created")

    op.drop_table("proxy_interactions")
    with op.batch_alter_table("proxy_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_proxy_sessions_status_expires")
        batch_op.drop_index("ix_proxy_sessions_service_created")

    op.drop_table("proxy_sessions")
    with op.batch_alter_table("proxy_pool_numbers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_proxy_pool_numbers_service_sid"))

    op.drop_table("proxy_pool_numbers")
    op.drop_table("proxy_services")
