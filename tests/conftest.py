"""Fixtures shared by the whole suite: databases (SQLite always, PostgreSQL when
``CALLMASK_TEST_DATABASE_URL`` is set), settings, the app, accounts, a loopback
HTTP receiver.

PostgreSQL: one scratch database per test session (created and dropped here, so
parallel runs do not collide), migrated once, emptied between tests. SQLite: one
migrated template file per session, copied for each test.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from callmask.accounts import create_account
from callmask.config import Settings
from callmask.node import node_app
from callmask.store.database import Database
from callmask.store.migrate import upgrade
from callmask.store.schema import Base
from tests.support.receiver import Receiver, running_receiver

POSTGRES_URL = os.environ.get("CALLMASK_TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "callmask.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    if not POSTGRES_URL:
        yield None
        return
    import asyncpg  # type: ignore[import-untyped]

    base = make_url(POSTGRES_URL)
    name = f"callmask_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _empty_postgres(url: str) -> None:
    database = Database(url)
    try:
        async with database.session() as session:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await session.execute(text(f"TRUNCATE {tables} CASCADE"))
    finally:
        await database.close()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
async def db_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_database: str | None,
) -> str:
    """A migrated, empty store: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "callmask.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    if postgres_database is None:
        pytest.skip("PostgreSQL not configured: set CALLMASK_TEST_DATABASE_URL")
    await _empty_postgres(postgres_database)
    return postgres_database


@pytest.fixture
async def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty SQLite store, for tests that are not about storage."""
    path = tmp_path / "callmask.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url)
    yield db
    await db.close()


ADMIN_KEY = "operator-test-key"


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "var",
        "database_url": database_url,
        "webhook_allow_private": True,
        "admin_key": ADMIN_KEY,
        "rtpengine": "127.0.0.1:1",  # tests that need media start their own
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url)


@pytest.fixture
async def app(settings: Settings, database: Database) -> AsyncIterator[FastAPI]:
    application = node_app(settings, database=database)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://callmask.test") as c:
        yield c


@dataclass(frozen=True)
class Tenant:
    account_id: str
    api_key: str

    @property
    def basic(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.account_id}:{self.api_key}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @property
    def app_key(self) -> dict[str, str]:
        return {"Authorization": f"App {self.api_key}"}


async def create_tenant(database: Database, name: str = "acme") -> Tenant:
    async with database.session() as session:
        account, api_key = await create_account(session, name)
    return Tenant(account.id, api_key)


@pytest.fixture
async def tenant(database: Database) -> Tenant:
    return await create_tenant(database, "acme")


@pytest.fixture
async def other_tenant(database: Database) -> Tenant:
    return await create_tenant(database, "globex")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as r:
        yield r
