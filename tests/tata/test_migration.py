"""Migration 0004 (Tata tables, CDR columns and indexes) on a store that already has
call records: it upgrades, fills ``call_duration_s`` for the old rows, downgrades and
upgrades again, on SQLite and on a scratch PostgreSQL database."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url

from callmask.store.database import Database
from callmask.store.migrate import alembic_config, upgrade_async
from tests.conftest import POSTGRES_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not configured: set CALLMASK_TEST_DATABASE_URL")
    import asyncpg  # type: ignore[import-untyped]

    base = make_url(POSTGRES_URL)
    name = f"callmask_migration_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


async def test_0004_upgrades_a_store_with_call_records_and_downgrades_cleanly(
    empty_url: str,
) -> None:
    await upgrade_async(empty_url, "0003")
    invited = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
    database = Database(empty_url)
    try:
        async with database.session() as session:
            await session.execute(text("INSERT INTO accounts (id, name) VALUES ('a1', 'acme')"))
            await session.execute(
                text(
                    "INSERT INTO call_records (id, call_id, account_id, direction, service,"
                    " caller, a_sip_call_id, invited_at, ended_at, duration_s, status,"
                    " hangup_cause) VALUES ('r1', '1.000001', 'a1', 'inbound', 'anonymize',"
                    " '+919876501234', 'sip-1', :invited, :ended, 60, 'answered', 'normal')"
                ),
                {"invited": invited, "ended": invited + dt.timedelta(seconds=75)},
            )
        await upgrade_async(empty_url)
        async with database.session() as session:
            seconds = await session.scalar(text("SELECT call_duration_s FROM call_records"))
        assert seconds == 75
        await asyncio.to_thread(command.downgrade, alembic_config(empty_url), "0003")
        await upgrade_async(empty_url)
        async with database.session() as session:
            assert await session.scalar(text("SELECT count(*) FROM tata_agents")) == 0
            assert await session.scalar(text("SELECT call_duration_s FROM call_records")) == 75
    finally:
        await database.close()
