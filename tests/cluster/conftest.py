"""Fixtures for the cluster tests: an empty, migrated PostgreSQL store (the cluster
exists only on PostgreSQL), skipped loudly without one."""

from __future__ import annotations

import pytest

from tests.conftest import _empty_postgres


@pytest.fixture
async def pg_url(postgres_database: str | None) -> str:
    if postgres_database is None:
        pytest.skip("PostgreSQL not configured: set CALLMASK_TEST_DATABASE_URL")
    await _empty_postgres(postgres_database)
    return postgres_database
