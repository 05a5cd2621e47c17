"""Closing the calls a node left open when it was killed.

While a call is up, a row in ``open_calls`` holds what its CDR and report need; the
row goes in the transaction that writes the CDR. A node that starts again finds its
own rows (by ``CALLMASK_NODE_ID``), writes each call's CDR with the cause, enqueues
its report, and deletes the row, one transaction per call, so a second crash during
recovery loses nothing either. The end time is the node's last heartbeat (written
every few seconds), which is within one heartbeat of when the node actually died.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.calls.outcome import CallStatus, CallSummary, CallTimes, store_record
from callmask.routing.route import Report
from callmask.store.database import Database
from callmask.store.models import NodeHeartbeat, OpenCall, utcnow
from callmask.webhooks.outbox import enqueue

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
CAUSE = "callmask stopped while the call was up; closed when it started again"

# CallSummary fields that describe the call (times and outcome are rebuilt).
_KEPT = (
    "record_id",
    "public_call_id",
    "direction",
    "service",
    "caller",
    "a_sip_call_id",
    "account_id",
    "did",
    "callee",
    "caller_id_shown",
    "action_key",
    "command",
    "file_id",
    "b_sip_call_id",
    "custom_identifier",
    "broadcast_id",
    "agent_id",
)


def snapshot(summary: CallSummary, report: Report | None) -> str:
    values: dict[str, Any] = {name: getattr(summary, name) for name in _KEPT}
    values["invited_utc"] = summary.invited_utc.isoformat()
    values["details"] = summary.details
    if report is not None:
        values["report"] = {"url": report.url, "event_type": report.event_type}
    return json.dumps(values, separators=(",", ":"), default=str)


async def open_call(
    session: AsyncSession, node_id: str, summary: CallSummary, report: Report | None
) -> None:
    session.add(
        OpenCall(record_id=summary.record_id, node_id=node_id, snapshot=snapshot(summary, report))
    )


async def mark_answered(session: AsyncSession, record_id: str, answered_at: dt.datetime) -> None:
    row = await session.get(OpenCall, record_id)
    if row is not None:
        row.answered_at = answered_at


async def forget(session: AsyncSession, record_id: str) -> None:
    await session.execute(delete(OpenCall).where(OpenCall.record_id == record_id))


async def heartbeat(database: Database, node_id: str) -> None:
    async with database.writing() as session:
        row = await session.get(NodeHeartbeat, node_id)
        if row is None:
            session.add(NodeHeartbeat(node_id=node_id, heartbeat_at=utcnow()))
        else:
            row.heartbeat_at = utcnow()


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def recovered_summary(
    row: OpenCall, last_seen: dt.datetime | None
) -> tuple[CallSummary, dict[str, str] | None]:
    values = json.loads(row.snapshot)
    invited = dt.datetime.fromisoformat(values["invited_utc"])
    answered = _as_utc(row.answered_at) if row.answered_at is not None else None
    ended = max(_as_utc(last_seen) if last_seen else invited, answered or invited, invited)
    times = CallTimes(
        invited=0.0,
        answered=(answered - invited).total_seconds() if answered else None,
        ended=(ended - invited).total_seconds(),
    )
    kept = {name: values.get(name) for name in _KEPT}
    summary = CallSummary(times=times, invited_utc=invited, **kept)
    summary = dataclasses.replace(
        summary,
        status=CallStatus.ANSWERED if answered else CallStatus.FAILED,
        hangup_cause=CAUSE,
        hangup_by="system",
        details={**values.get("details", {}), "recovered": True},
    )
    return summary, values.get("report")


async def claim(session: AsyncSession, record_id: str, node_id: str) -> OpenCall | None:
    """Take the call's row out of ``open_calls`` in this transaction; ``None`` if it is
    gone. A delete is the claim because two nodes closing the same dead node's calls
    (a survivor and the node itself starting again) must not both write its CDR: the
    database lets one transaction delete the row, the other deletes nothing."""
    row = (
        await session.execute(
            delete(OpenCall)
            .where(OpenCall.record_id == record_id, OpenCall.node_id == node_id)
            .returning(OpenCall.record_id, OpenCall.snapshot, OpenCall.answered_at)
        )
    ).one_or_none()
    if row is None:
        return None
    return OpenCall(
        record_id=row.record_id, node_id=node_id, snapshot=row.snapshot, answered_at=row.answered_at
    )


async def close_open_call(
    database: Database,
    record_id: str,
    node_id: str,
    last_seen: dt.datetime | None,
    payload_for: Callable[[str, CallSummary], dict[str, object]],
    *,
    cause: str | None = None,
) -> CallSummary | None:
    """Claim one open call of ``node_id`` and write its CDR and report in one
    transaction; ``None`` if another node (or run) claimed it first. ``cause`` replaces
    the hangup cause the snapshot implies (a survivor says which node died)."""
    async with database.writing() as session:
        row = await claim(session, record_id, node_id)
        if row is None:
            return None
        summary, report = recovered_summary(row, last_seen)
        if cause is not None:
            summary = dataclasses.replace(summary, hangup_cause=cause)
        await store_record(session, summary)
        if report is not None and summary.account_id is not None:
            await enqueue(
                session,
                account_id=summary.account_id,
                event_type=report["event_type"],
                url=report["url"],
                payload=payload_for(report["event_type"], summary),
                ordering_key=summary.public_call_id,
            )
    return summary


async def close_orphans(
    database: Database,
    node_id: str,
    payload_for: Callable[[str, CallSummary], dict[str, object]],
) -> int:
    """Write the CDR and report of every call this node left open; return how many it
    closed itself."""
    async with database.session() as session:
        beat = await session.get(NodeHeartbeat, node_id)
        last_seen = beat.heartbeat_at if beat is not None else None
        ids = (
            await session.scalars(select(OpenCall.record_id).where(OpenCall.node_id == node_id))
        ).all()
    closed = 0
    for record_id in ids:
        summary = await close_open_call(database, record_id, node_id, last_seen, payload_for)
        if summary is None:
            continue  # closed by a survivor meanwhile (cluster/takeover.py)
        closed += 1
        log.warning(
            "closed call %s left open by a previous run (status %s)",
            summary.public_call_id,
            summary.status.value,
        )
    return closed
