"""Two nodes create sessions for the same customer and agent at the same moment on one
PostgreSQL, with a pool too small for all of them: the database's unique index, not a
lock in either process, keeps every created session conflict-free."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from callmask.phone import region_of
from callmask.sessions import errors
from callmask.sessions.repository import PoolNumbers, Services
from callmask.store.database import Database
from callmask.store.models import ProxyParticipant, ProxySession
from callmask.store.repositories import Numbers
from tests.conftest import _empty_postgres, create_tenant

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
POOL_SIZE = 50
PER_PROCESS = 100


async def run_creator(url: str, account: str, service: str) -> dict[str, list[object]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.sessions.create_sessions",
        url,
        account,
        service,
        str(PER_PROCESS),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    result: dict[str, list[object]] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_200_concurrent_creates_over_two_processes_never_double_allocate(
    postgres_database: str | None,
) -> None:
    if postgres_database is None:
        pytest.skip("PostgreSQL not configured: set CALLMASK_TEST_DATABASE_URL")
    await _empty_postgres(postgres_database)
    database = Database(postgres_database)
    try:
        tenant = await create_tenant(database)
        async with database.session() as session:
            service = await Services(session).create(tenant.account_id, unique_name="rides")
            for i in range(POOL_SIZE):
                e164 = f"+417930{27000 + i}"
                await Numbers(session).add_to_inventory(e164, region_of(e164), tenant.account_id)
                await PoolNumbers(session).add(tenant.account_id, service.sid, phone_number=e164)
        runs = await asyncio.gather(
            *(run_creator(postgres_database, tenant.account_id, service.sid) for _ in range(2))
        )
        created = [sid for run in runs for sid in run["created"]]
        refused = [code for run in runs for code in run["refused"]]
        assert len(created) + len(refused) == 2 * PER_PROCESS
        assert all(runs[i]["created"] for i in range(2)), "both processes created sessions"
        assert set(refused) <= {errors.ALL_NUMBERS_IN_USE}, refused
        assert len(created) == POOL_SIZE, "every number of the pool went to one session"
        async with database.session() as session:
            doubled = (
                await session.execute(
                    select(ProxyParticipant.identifier, ProxyParticipant.proxy_identifier)
                    .where(ProxyParticipant.active.is_(True))
                    .group_by(ProxyParticipant.identifier, ProxyParticipant.proxy_identifier)
                    .having(func.count() > 1)
                )
            ).all()
            sessions = await session.scalar(select(func.count()).select_from(ProxySession))
            half_written = (
                await session.execute(
                    select(ProxyParticipant.session_sid)
                    .group_by(ProxyParticipant.session_sid)
                    .having(func.count() != 2)
                )
            ).all()
        assert doubled == [], "no identifier holds a number twice among open sessions"
        assert sessions == len(created) and half_written == []
    finally:
        await database.close()
