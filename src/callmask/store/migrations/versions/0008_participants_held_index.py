"""an index that answers 'which pool numbers does this identifier hold now' alone, and
the pool's exhaustion events (the console's pool view)

The allocator reads it for every participant it places; for an agent with hundreds of
open sessions the older index (service_sid, identifier, created_at) made that a table
lookup per held row (0.6 ms of a 5 ms session create on SQLite).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 13:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_proxy_participants_held",
        "proxy_participants",
        ["service_sid", "identifier", "active", "pool_number_sid"],
    )
    op.create_table(
        "proxy_pool_exhaustions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("service_sid", sa.String(length=34), nullable=False),
        sa.Column("identifier", sa.String(length=191), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["service_sid"], ["proxy_services.sid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_proxy_pool_exhaustions_service_created",
        "proxy_pool_exhaustions",
        ["service_sid", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_proxy_pool_exhaustions_service_created", table_name="proxy_pool_exhaustions")
    op.drop_table("proxy_pool_exhaustions")
    op.drop_index("ix_proxy_participants_held", table_name="proxy_participants")
