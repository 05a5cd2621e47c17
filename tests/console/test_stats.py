"""The dashboard's per-minute CDR series on SQLite and PostgreSQL (the minute bucket
and the delay are dialect-specific SQL)."""

from __future__ import annotations

import datetime as dt
import uuid

from callmask.console.stats import WINDOW_MINUTES, minute_series
from callmask.store.database import Database
from callmask.store.models import CallRecord
from tests.conftest import Tenant
from tests.console.test_console import _add_records


async def test_minute_series_counts_calls_answers_and_delay(
    database: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    await _add_records(database, tenant, 6)  # minutes 1, 4, ..., 16 ago; i % 3 != 0 answered
    await _add_records(database, other_tenant, 2)
    async with database.session() as session:
        mine = await minute_series(session, tenant.account_id)
        everyone = await minute_series(session, None)
    assert len(mine.minutes) == WINDOW_MINUTES
    assert mine.total_calls == 6 and everyone.total_calls == 8
    assert sum(mine.answered) == 4
    assert mine.answer_ratio is not None and abs(mine.answer_ratio - 4 / 6) < 1e-9
    # ringing 120 + i ms after the INVITE: mean over i = 0..5 is 122.5 ms.
    assert mine.mean_pdd_ms is not None and abs(mine.mean_pdd_ms - 122.5) < 1.0
    # Three minutes apart: each call in its own minute, in one-minute buckets.
    assert max(mine.calls) == 1 and sum(1 for c in mine.calls if c) == 6
    assert mine.minutes[-1] - mine.minutes[0] == (WINDOW_MINUTES - 1) * 60


async def test_calls_in_one_minute_but_different_seconds_share_its_bucket(
    database: Database, tenant: Tenant
) -> None:
    minute_start = (int(dt.datetime.now(dt.UTC).timestamp()) // 60 - 5) * 60
    async with database.session() as session:
        for second in (3, 41):
            invited = dt.datetime.fromtimestamp(minute_start + second, dt.UTC)
            session.add(
                CallRecord(
                    id=uuid.uuid4().hex,
                    call_id=f"C{uuid.uuid4().hex[:12].upper()}",
                    account_id=tenant.account_id,
                    direction="inbound",
                    service="number_masking",
                    did="+41793026731",
                    caller="+41793026000",
                    a_sip_call_id=f"sip-{second}",
                    invited_at=invited,
                    ended_at=invited + dt.timedelta(seconds=5),
                    duration_s=0,
                    status="busy",
                    hangup_cause="busy",
                )
            )
    async with database.session() as session:
        series = await minute_series(session, tenant.account_id)
    assert series.calls[series.minutes.index(minute_start)] == 2
