"""tata dialect: account webhook, agents, broadcast lead lists, leads and keys; CDR
columns and indexes for /v1/call/records

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 04:00:00

Existing call records get ``call_duration_s`` (INVITE to end, whole seconds) computed
here; new ones get it from the model's default.

``call_record_daily_counts`` (CDRs per account, UTC day, direction, service, answered)
is filled here from the existing rows and from then on kept exact by triggers on
``call_records``: on PostgreSQL statement-level triggers with transition tables (one
grouped upsert per statement, so a bulk COPY costs one trigger run, not one per row),
on SQLite row-level triggers with an upsert.
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


COUNT_KEY = "account_id, day, direction, service, answered"

POSTGRES_COUNTS_FUNCTION = f"""
CREATE FUNCTION call_record_daily_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE call_record_daily_counts AS c SET calls = c.calls - o.calls
        FROM (
            SELECT account_id, (invited_at AT TIME ZONE 'UTC')::date AS day, direction,
                   service, status = 'answered' AS answered, count(*) AS calls
            FROM old_rows WHERE account_id IS NOT NULL
            GROUP BY 1, 2, 3, 4, 5
        ) AS o
        WHERE c.account_id = o.account_id AND c.day = o.day AND c.direction = o.direction
          AND c.service = o.service AND c.answered = o.answered;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        -- ORDER BY: concurrent bulk writers lock count rows in one order, no deadlock.
        INSERT INTO call_record_daily_counts AS c ({COUNT_KEY}, calls)
        SELECT account_id, (invited_at AT TIME ZONE 'UTC')::date, direction, service,
               status = 'answered', count(*)
        FROM new_rows WHERE account_id IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5
        ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT ({COUNT_KEY}) DO UPDATE SET calls = c.calls + EXCLUDED.calls;
    END IF;
    RETURN NULL;
END $$
"""

POSTGRES_COUNTS_TRIGGERS = [
    "CREATE TRIGGER call_records_counts_insert AFTER INSERT ON call_records"
    " REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION call_record_daily_counts_apply()",
    "CREATE TRIGGER call_records_counts_update AFTER UPDATE ON call_records"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION call_record_daily_counts_apply()",
    "CREATE TRIGGER call_records_counts_delete AFTER DELETE ON call_records"
    " REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION call_record_daily_counts_apply()",
]


def _sqlite_count_change(row: str, delta: int) -> str:
    """SQL that moves ``row``'s (NEW or OLD) count by ``delta``."""
    if delta > 0:
        return (
            f"INSERT INTO call_record_daily_counts ({COUNT_KEY}, calls)"
            f" SELECT {row}.account_id, date({row}.invited_at), {row}.direction,"
            f" {row}.service, {row}.status = 'answered', 1"
            f" WHERE {row}.account_id IS NOT NULL"
            f" ON CONFLICT ({COUNT_KEY}) DO UPDATE SET calls = calls + 1;"
        )
    return (
        "UPDATE call_record_daily_counts SET calls = calls - 1"
        f" WHERE account_id = {row}.account_id AND day = date({row}.invited_at)"
        f" AND direction = {row}.direction AND service = {row}.service"
        f" AND answered = ({row}.status = 'answered');"
    )


SQLITE_COUNTS_TRIGGERS = [
    "CREATE TRIGGER call_records_counts_insert AFTER INSERT ON call_records"
    f" BEGIN {_sqlite_count_change('NEW', 1)} END",
    "CREATE TRIGGER call_records_counts_update"
    " AFTER UPDATE OF account_id, invited_at, direction, service, status ON call_records"
    f" BEGIN {_sqlite_count_change('OLD', -1)} {_sqlite_count_change('NEW', 1)} END",
    "CREATE TRIGGER call_records_counts_delete AFTER DELETE ON call_records"
    f" BEGIN {_sqlite_count_change('OLD', -1)} END",
]


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

    op.create_table(
        "call_record_daily_counts",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("answered", sa.Boolean(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_call_record_daily_counts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "account_id",
            "day",
            "direction",
            "service",
            "answered",
            name=op.f("pk_call_record_daily_counts"),
        ),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    day = "date(invited_at)" if sqlite else "(invited_at AT TIME ZONE 'UTC')::date"
    op.execute(
        f"INSERT INTO call_record_daily_counts ({COUNT_KEY}, calls)"
        f" SELECT account_id, {day}, direction, service, status = 'answered', count(*)"
        " FROM call_records WHERE account_id IS NOT NULL GROUP BY 1, 2, 3, 4, 5"
    )
    if sqlite:
        for statement in SQLITE_COUNTS_TRIGGERS:
            op.execute(statement)
    else:
        op.execute(POSTGRES_COUNTS_FUNCTION)
        for statement in POSTGRES_COUNTS_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for event in ("insert", "update", "delete"):
        # PostgreSQL names a trigger per table; SQLite's names are per schema.
        table = "" if sqlite else " ON call_records"
        op.execute(f"DROP TRIGGER IF EXISTS call_records_counts_{event}{table}")
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS call_record_daily_counts_apply()")
    op.drop_table("call_record_daily_counts")
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
