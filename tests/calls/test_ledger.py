"""The call ledger on a real store (SQLite and PostgreSQL): calls' rows land in the
order they were queued, many calls share a transaction, and a write the store refuses
neither takes the others with it nor vanishes without a log line."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, func, select

from callmask.calls.ledger import CallAnswered, CallClosed, CallLedger, CallOpened
from callmask.calls.outcome import CallStatus, CallSummary, CallTimes, new_public_call_id
from callmask.store.database import Database
from callmask.store.models import CallRecord, OpenCall, WebhookEvent
from callmask.webhooks.outbox import new_event
from tests.conftest import Tenant


def summary_of(account_id: str) -> CallSummary:
    return CallSummary(
        record_id=uuid.uuid4().hex,
        public_call_id=new_public_call_id(),
        direction="inbound",
        service="number_masking",
        caller="+12125550100",
        a_sip_call_id=uuid.uuid4().hex,
        times=CallTimes(invited=0.0, answered=1.0, ended=31.0),
        invited_utc=dt.datetime.now(dt.UTC),
        account_id=account_id,
        did="+41793026731",
        callee="+41793026785",
        status=CallStatus.ANSWERED,
    )


def opened(summary: CallSummary) -> CallOpened:
    return CallOpened(summary.record_id, "node-1", "{}")


def closed(summary: CallSummary, *, was_open: bool = True) -> CallClosed:
    assert summary.account_id is not None
    report = new_event(
        account_id=summary.account_id,
        event_type="call.status",
        url="http://127.0.0.1:9/status",
        payload={"status": summary.status.value},
        ordering_key=summary.public_call_id,
    )
    return CallClosed(summary.record(), report, was_open=was_open)


@contextlib.asynccontextmanager
async def running(ledger: CallLedger) -> AsyncIterator[CallLedger]:
    task = asyncio.create_task(ledger.run())
    try:
        yield ledger
    finally:
        ledger.stop()
        await asyncio.wait_for(task, timeout=10)
        await ledger.close()


async def counts(database: Database) -> tuple[int, int, int]:
    async with database.session() as session:
        records = await session.scalar(select(func.count()).select_from(CallRecord))
        events = await session.scalar(select(func.count()).select_from(WebhookEvent))
        still_open = await session.scalar(select(func.count()).select_from(OpenCall))
    return int(records or 0), int(events or 0), int(still_open or 0)


async def test_calls_opened_answered_and_closed_in_one_batch_leave_a_cdr_and_a_report(
    database: Database, tenant: Tenant
) -> None:
    notified: list[int] = []
    ledger = CallLedger(database, on_events=lambda: notified.append(1))
    calls = [summary_of(tenant.account_id) for _ in range(20)]
    # Queued before the writer starts: all of it goes into its first transaction.
    for summary in calls:
        ledger.write(opened(summary))
        ledger.write(CallAnswered(summary.record_id, dt.datetime.now(dt.UTC)))
        ledger.write(closed(summary))
    async with running(ledger):
        await asyncio.wait_for(ledger.drained(), timeout=10)
    assert await counts(database) == (20, 20, 0)
    assert notified == [1], "one commit, one wake-up for the webhook worker"
    async with database.session() as session:
        durations = set((await session.scalars(select(CallRecord.duration_s))).all())
        call_durations = set((await session.scalars(select(CallRecord.call_duration_s))).all())
    assert durations == {30}
    assert call_durations == {31}, "the column default computes invite-to-end per row"


async def test_an_open_call_stays_noted_until_its_cdr_is_written(
    database: Database, tenant: Tenant
) -> None:
    ledger = CallLedger(database)
    summary = summary_of(tenant.account_id)
    answered_at = dt.datetime.now(dt.UTC)
    async with running(ledger):
        ledger.write(opened(summary))
        await asyncio.wait_for(ledger.drained(), timeout=10)
        assert await counts(database) == (0, 0, 1)
        ledger.write(CallAnswered(summary.record_id, answered_at))
        await asyncio.wait_for(ledger.drained(), timeout=10)
        async with database.session() as session:
            row = await session.get(OpenCall, summary.record_id)
            assert row is not None and row.answered_at is not None
            stored = row.answered_at.replace(tzinfo=row.answered_at.tzinfo or dt.UTC)
            assert abs((stored - answered_at).total_seconds()) < 0.001
        ledger.write(closed(summary))
        await asyncio.wait_for(ledger.drained(), timeout=10)
    assert await counts(database) == (1, 1, 0)


async def test_a_cdr_the_store_refuses_does_not_take_the_batch_with_it_and_is_logged_whole(
    database: Database, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = CallLedger(database, retry_delays_s=(0.01, 0.01))
    good = [summary_of(tenant.account_id) for _ in range(3)]
    bad = summary_of(tenant.account_id)
    bad.public_call_id = good[0].public_call_id  # call_id is unique: the store refuses it
    for summary in good:
        ledger.write(closed(summary, was_open=False))
    ledger.write(closed(bad, was_open=False))
    with caplog.at_level(logging.WARNING, logger="callmask.calls.ledger"):
        async with running(ledger):
            await asyncio.wait_for(ledger.drained(), timeout=10)
    assert await counts(database) == (3, 3, 0)
    lost = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lost) == 1
    message = lost[0].getMessage()
    assert "given up after 3 tries" in message
    assert bad.record_id in message and '"webhook_event"' in message


async def test_a_cdr_written_once_the_store_accepts_it_again(
    database: Database, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refuses writes for a while (here: its call_records inserts fail), then
    takes them again: the CDR queued meanwhile is written by a retry, not lost."""
    ledger = CallLedger(database, retry_delays_s=(0.05, 0.05, 5.0))
    refusing = True

    def refuse(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if refusing and statement.lstrip().upper().startswith("INSERT INTO CALL_RECORDS"):
            raise RuntimeError("store unavailable")

    event.listen(database.engine.sync_engine, "before_cursor_execute", refuse)
    summary = summary_of(tenant.account_id)
    try:
        with caplog.at_level(logging.WARNING, logger="callmask.calls.ledger"):
            async with running(ledger):
                ledger.write(opened(summary))
                ledger.write(closed(summary))
                for _ in range(100):
                    if any("trying again in 0.05 s" in r.getMessage() for r in caplog.records):
                        break
                    await asyncio.sleep(0.01)
                refusing = False
                await asyncio.wait_for(ledger.drained(), timeout=10)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", refuse)
    assert await counts(database) == (1, 1, 0)
    assert not [r for r in caplog.records if r.levelno == logging.ERROR]


async def test_what_is_queued_at_shutdown_is_written_and_later_writes_are_refused(
    database: Database, tenant: Tenant
) -> None:
    ledger = CallLedger(database)
    summary = summary_of(tenant.account_id)
    ledger.write(closed(summary, was_open=False))
    await ledger.close()  # the writer never ran
    assert await counts(database) == (1, 1, 0)
    with pytest.raises(RuntimeError, match="closed"):
        ledger.write(closed(summary_of(tenant.account_id), was_open=False))
