"""A node dies with calls up; the survivors close them from its stale heartbeat. Two
survivors (and the dead node itself, started again) race over the same calls on a real
PostgreSQL: every call gets one CDR and one status report, whoever wins it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import func, select, text

from callmask.calls import recovery
from callmask.calls.outcome import CallSummary, CallTimes
from callmask.cluster import takeover
from callmask.routing import infobip
from callmask.routing.reports import payload_for
from callmask.routing.route import Report
from callmask.store.database import Database
from callmask.store.models import CallRecord, NodeHeartbeat, OpenCall, WebhookEvent, utcnow
from tests.conftest import create_tenant

pytestmark = pytest.mark.postgres

CALLS = 40


async def leave_calls_open(
    database: Database, node_id: str, account_id: str, count: int, *, beat_age_s: float
) -> list[str]:
    """``count`` calls up on ``node_id`` (half of them answered) whose heartbeat is
    ``beat_age_s`` old: what a node leaves behind when it is killed."""
    now = utcnow()
    public_ids = []
    async with database.session() as session:
        session.add(
            NodeHeartbeat(node_id=node_id, heartbeat_at=now - dt.timedelta(seconds=beat_age_s))
        )
        for n in range(count):
            summary = CallSummary(
                record_id=uuid.uuid4().hex,
                public_call_id=f"{node_id}-{n}",
                direction="inbound",
                service="number_masking",
                caller="+41793026727",
                a_sip_call_id=f"a-{uuid.uuid4().hex}",
                times=CallTimes(invited=0.0),
                invited_utc=now - dt.timedelta(seconds=beat_age_s + 30),
                account_id=account_id,
                did="+41793026731",
            )
            report = Report("http://127.0.0.1:9/status", infobip.STATUS_REPORT, {})
            await recovery.open_call(session, node_id, summary, report)
            await session.flush()
            if n % 2 == 0:
                await recovery.mark_answered(
                    session, summary.record_id, now - dt.timedelta(seconds=beat_age_s + 20)
                )
            public_ids.append(summary.public_call_id)
    return public_ids


async def test_two_survivors_and_the_restarted_node_close_each_call_once(pg_url: str) -> None:
    setup = Database(pg_url)
    survivors = [Database(pg_url), Database(pg_url)]
    restarted = Database(pg_url)
    try:
        tenant = await create_tenant(setup)
        dead = await leave_calls_open(
            setup, "node-2", tenant.account_id, CALLS, beat_age_s=takeover.DEAD_AFTER_S + 5
        )
        # A live survivor's own calls are not anybody else's to close.
        mine = await leave_calls_open(setup, "node-1", tenant.account_id, 3, beat_age_s=0)

        # A real race, not whoever happens to come first: the dead node's rows are
        # locked while all three closers list them and wait on their first claim, then
        # released, so every row is fought over by three transactions at once.
        async with setup.session() as holder:
            await holder.execute(
                select(OpenCall.record_id).where(OpenCall.node_id == "node-2").with_for_update()
            )
            racers = [
                asyncio.create_task(
                    takeover.take_over_dead_nodes(survivors[0], "node-1", payload_for)
                ),
                asyncio.create_task(
                    takeover.take_over_dead_nodes(survivors[1], "node-3", payload_for)
                ),
                asyncio.create_task(recovery.close_orphans(restarted, "node-2", payload_for)),
            ]
            await waiting_on_locks(setup, 3)
        closed = await asyncio.gather(*racers)
        assert sum(closed) == CALLS, closed

        async with setup.session() as session:
            records = (await session.scalars(select(CallRecord))).all()
            events = (await session.scalars(select(WebhookEvent))).all()
            still_open = await session.scalar(
                select(func.count()).select_from(OpenCall).where(OpenCall.node_id == "node-2")
            )
            ours = await session.scalar(
                select(func.count()).select_from(OpenCall).where(OpenCall.node_id == "node-1")
            )
        assert still_open == 0
        assert ours == len(mine)
        assert sorted(r.call_id for r in records) == sorted(dead)  # one CDR each
        assert sorted(e.ordering_key or "" for e in events) == sorted(dead)  # one report each
        for record in records:
            answered = int(record.call_id.split("-")[-1]) % 2 == 0
            assert record.status == ("answered" if answered else "failed")
            assert json.loads(record.details)["recovered"] is True
        reports = [json.loads(e.payload) for e in events]
        assert {r["status"] for r in reports} == {"answered", "failed"}
        # And a later scan finds nothing left to do.
        assert await takeover.take_over_dead_nodes(survivors[0], "node-1", payload_for) == 0
    finally:
        for database in (setup, *survivors, restarted):
            await database.close()


async def waiting_on_locks(database: Database, count: int) -> None:
    """Until ``count`` other sessions of this database wait on a row lock (bounded)."""
    for _ in range(200):
        async with database.session() as session:
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting is not None and waiting >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} closers did not reach the locked rows within 10 s")


async def test_a_node_with_a_fresh_heartbeat_keeps_its_calls(pg_url: str) -> None:
    database = Database(pg_url)
    try:
        tenant = await create_tenant(database)
        await leave_calls_open(database, "node-2", tenant.account_id, 5, beat_age_s=1)
        assert await takeover.is_alive(database, "node-2")
        assert await takeover.fresh_nodes(database) == {"node-2"}
        assert await takeover.take_over_dead_nodes(database, "node-1", payload_for) == 0
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(OpenCall)) == 5
            assert await session.scalar(select(func.count()).select_from(CallRecord)) == 0
        assert not await takeover.is_alive(database, "node-never-seen")
    finally:
        await database.close()


async def test_the_calls_of_a_dead_node_end_at_its_last_heartbeat(pg_url: str) -> None:
    database = Database(pg_url)
    try:
        tenant = await create_tenant(database)
        await leave_calls_open(database, "node-2", tenant.account_id, 2, beat_age_s=60)
        assert await takeover.take_over_dead_nodes(database, "node-1", payload_for) == 2
        async with database.session() as session:
            beat = await session.get(NodeHeartbeat, "node-2")
            records = (await session.scalars(select(CallRecord))).all()
        assert beat is not None
        for record in records:
            assert record.ended_at == beat.heartbeat_at
            assert record.hangup_cause.endswith("closed by node-1")
        answered = [r for r in records if r.status == "answered"]
        assert [r.duration_s for r in answered] == [20]
    finally:
        await database.close()
