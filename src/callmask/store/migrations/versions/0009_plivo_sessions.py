"""Plivo masking sessions on the sessions store: the per-call time limit and the
Plivo-only options of a session

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("proxy_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("call_time_limit_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("plivo_options", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("proxy_sessions", schema=None) as batch_op:
        batch_op.drop_column("plivo_options")
        batch_op.drop_column("call_time_limit_s")
