"""Migration 0002: its tables match the models on both databases, and accounts that
existed before it get a signing secret."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from callmask.store.database import Database
from callmask.store.migrate import upgrade
from callmask.store.schema import Base

WEBHOOK_TABLES = {"webhook_events", "webhook_attempts", "webhook_secrets"}


def _mentions_webhook_table(diff: object) -> bool:
    return any(table in repr(diff) for table in WEBHOOK_TABLES)


async def test_the_webhook_tables_match_the_models(database: Database) -> None:
    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async with database.engine.connect() as connection:
        diffs = await connection.run_sync(compare)
    assert [d for d in diffs if _mentions_webhook_table(d)] == []


def test_accounts_from_before_the_outbox_get_a_signing_secret(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url, "0001")
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO accounts (id, name) VALUES (?, ?)", [("a1", "acme"), ("a2", "globex")]
        )
    upgrade(url, "0002")
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT account_id, secret, revoked_at FROM webhook_secrets ORDER BY account_id"
        ).fetchall()
    assert [(a, revoked) for a, _, revoked in rows] == [("a1", None), ("a2", None)]
    assert all(secret.startswith("whsec_") and len(secret) == 50 for _, secret, _ in rows)
