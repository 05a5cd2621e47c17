"""Closing the calls of a node that died, from another node.

A node's heartbeat (``node_heartbeats``, every ``HEARTBEAT_INTERVAL_S``) that is older
than ``DEAD_AFTER_S`` means the node is gone. Any survivor may then close that node's
``open_calls`` rows exactly as the node itself would on its next start (recovery.py):
CDR with the cause, report enqueued, row deleted, one transaction per call. Two
survivors racing over the same node is safe because a call is claimed by deleting its
row (``DELETE ... RETURNING``): PostgreSQL lets one transaction delete it, the other
finds nothing and moves on, so each call gets one CDR and one report.

Clocks: the heartbeat is written with the dead node's clock and judged with the
survivor's, so nodes must keep time (NTP); ``DEAD_AFTER_S`` is three heartbeats, well
above any sane clock skew. A node whose store writes stall for longer than that is
taken for dead; its own later CDR for such a call then fails on the record that
already exists, which loses nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import exists, select

from callmask.calls import recovery
from callmask.calls.outcome import CallSummary
from callmask.store.database import Database
from callmask.store.models import NodeHeartbeat, OpenCall, utcnow

log = logging.getLogger(__name__)

DEAD_AFTER_S = 3 * recovery.HEARTBEAT_INTERVAL_S
SCAN_INTERVAL_S = recovery.HEARTBEAT_INTERVAL_S

PayloadFor = Callable[[str, CallSummary], dict[str, object]]


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


async def fresh_nodes(
    database: Database, *, now: dt.datetime | None = None, dead_after_s: float = DEAD_AFTER_S
) -> set[str]:
    """Node ids whose heartbeat is recent enough to count them alive."""
    since = (now or utcnow()) - dt.timedelta(seconds=dead_after_s)
    async with database.session() as session:
        rows = await session.scalars(
            select(NodeHeartbeat.node_id).where(NodeHeartbeat.heartbeat_at >= since)
        )
        return set(rows.all())


async def is_alive(database: Database, node_id: str, *, dead_after_s: float = DEAD_AFTER_S) -> bool:
    async with database.session() as session:
        beat = await session.get(NodeHeartbeat, node_id)
    if beat is None:
        return False
    age = utcnow() - _as_utc(beat.heartbeat_at)
    return age.total_seconds() <= dead_after_s


async def dead_nodes_with_calls(
    database: Database, own_node_id: str, *, dead_after_s: float = DEAD_AFTER_S
) -> dict[str, dt.datetime]:
    """Other nodes past ``dead_after_s`` that still have open calls, with their last
    heartbeat (the end time their calls get)."""
    since = utcnow() - dt.timedelta(seconds=dead_after_s)
    async with database.session() as session:
        rows = await session.execute(
            select(NodeHeartbeat.node_id, NodeHeartbeat.heartbeat_at).where(
                NodeHeartbeat.heartbeat_at < since,
                NodeHeartbeat.node_id != own_node_id,
                exists().where(OpenCall.node_id == NodeHeartbeat.node_id),
            )
        )
        return {node_id: _as_utc(beat) for node_id, beat in rows.all()}


async def take_over(
    database: Database,
    dead_node_id: str,
    last_seen: dt.datetime,
    own_node_id: str,
    payload_for: PayloadFor,
) -> int:
    """Close every call ``dead_node_id`` left open; return how many this node closed."""
    async with database.session() as session:
        ids = (
            await session.scalars(
                select(OpenCall.record_id).where(OpenCall.node_id == dead_node_id)
            )
        ).all()
    closed = 0
    cause = f"callmask node {dead_node_id} stopped while the call was up; closed by {own_node_id}"
    for record_id in ids:
        summary = await recovery.close_open_call(
            database, record_id, dead_node_id, last_seen, payload_for, cause=cause
        )
        if summary is None:
            continue  # another survivor (or the restarted node) closed it
        closed += 1
        log.warning(
            "closed call %s of dead node %s (status %s)",
            summary.public_call_id,
            dead_node_id,
            summary.status.value,
        )
    return closed


async def take_over_dead_nodes(
    database: Database,
    own_node_id: str,
    payload_for: PayloadFor,
    *,
    dead_after_s: float = DEAD_AFTER_S,
) -> int:
    """One scan: close the open calls of every dead node; return how many."""
    closed = 0
    dead = await dead_nodes_with_calls(database, own_node_id, dead_after_s=dead_after_s)
    for node_id, last_seen in dead.items():
        log.warning("node %s: no heartbeat since %s; closing its calls", node_id, last_seen)
        closed += await take_over(database, node_id, last_seen, own_node_id, payload_for)
    return closed
