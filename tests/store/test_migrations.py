"""Alembic migrations: an empty SQLite file and an empty PostgreSQL database both go to
head, match the models exactly (no drift), and go back down to nothing and up again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from callmask.store.database import Database
from callmask.store.migrate import alembic_config, upgrade_async
from callmask.store.schema import Base
from tests.conftest import POSTGRES_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no tables at all: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not configured: set CALLMASK_TEST_DATABASE_URL")
    import asyncpg  # type: ignore[import-untyped]

    base = make_url(POSTGRES_URL)
    name = f"callmask_migrate_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _tables(url: str) -> set[str]:
    database = Database(url)
    try:
        async with database.engine.connect() as connection:
            names: list[str] = await connection.run_sync(lambda c: inspect(c).get_table_names())
            return set(names)
    finally:
        await database.close()


async def _drift(url: str) -> list[Any]:
    database = Database(url)
    try:
        async with database.engine.connect() as connection:
            return await connection.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
    finally:
        await database.close()


async def _revision(url: str) -> str | None:
    database = Database(url)
    try:
        async with database.engine.connect() as connection:
            result = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return result.scalar_one_or_none()
    finally:
        await database.close()


async def test_migrations_build_the_whole_schema_on_an_empty_database(empty_url: str) -> None:
    assert await _tables(empty_url) == set()
    await upgrade_async(empty_url)
    model_tables = {t.name for t in Base.metadata.sorted_tables}
    assert await _tables(empty_url) == model_tables | {"alembic_version"}
    head = ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
    assert await _revision(empty_url) == head
    # Every model change has its migration: what the models say is what the database has.
    assert await _drift(empty_url) == []
    # Upgrading again is a no-op, as `callmask run` does on every start.
    await upgrade_async(empty_url)
    assert await _revision(empty_url) == head


async def test_migrations_go_down_to_nothing_and_up_again(empty_url: str) -> None:
    await upgrade_async(empty_url)
    await asyncio.to_thread(command.downgrade, alembic_config(empty_url), "base")
    assert await _tables(empty_url) <= {"alembic_version"}
    await upgrade_async(empty_url)
    assert await _drift(empty_url) == []


async def test_there_is_one_line_of_migrations() -> None:
    # Two heads mean two people added a migration on the same parent: `upgrade head`
    # would refuse to run on every operator's machine.
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()
