"""Shared PIN numbers: a participant's PIN joins the open-pair unique constraint, so
one party may hold a number in several open PIN sessions, one PIN each

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 19:50:00.000000
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAIR = ["proxy_identifier", "identifier", "active", "service_sid"]


def upgrade() -> None:
    with op.batch_alter_table("proxy_participants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pin", sa.String(length=15), server_default="", nullable=False)
        )
        batch_op.drop_constraint("uq_proxy_participants_open_pair", type_="unique")
        batch_op.create_unique_constraint("uq_proxy_participants_open_pair", [*PAIR, "pin"])
    # Sessions created before this revision keep working: their PIN moves from the
    # session's Plivo options onto the participant rows that enter it.
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT p.sid, p.friendly_name, s.plivo_options FROM proxy_participants p "
            "JOIN proxy_sessions s ON s.sid = p.session_sid "
            "WHERE s.plivo_options IS NOT NULL AND p.active IS TRUE"
        )
    ).all()
    for sid, role, options in rows:
        values = json.loads(options or "{}")
        if not values.get("is_pin_authentication_required"):
            continue
        pin = values.get(f"{role}_pin") or ""
        if pin:
            bind.execute(
                sa.text("UPDATE proxy_participants SET pin = :pin WHERE sid = :sid"),
                {"pin": str(pin), "sid": sid},
            )


def downgrade() -> None:
    with op.batch_alter_table("proxy_participants", schema=None) as batch_op:
        batch_op.drop_constraint("uq_proxy_participants_open_pair", type_="unique")
        batch_op.create_unique_constraint("uq_proxy_participants_open_pair", PAIR)
        batch_op.drop_column("pin")
