"""The call engine's writes to the store, grouped into as few transactions as the
load allows (group commit).

Every call writes three times: a row in ``open_calls`` when it starts ringing (so a
node restarted after a crash can close it, see ``recovery``), its answer time, and at
the end its CDR, its report in the webhook outbox and the removal of the
``open_calls`` row, in one transaction. Written one ORM session each, those three cost
about a millisecond of the event loop per call, the largest share of a call's CPU
after the HTTP callback. The ledger queues them instead: one writer task takes
everything queued and writes it in one transaction, one ``executemany`` per
statement. While a transaction is in flight the next batch gathers, so no write waits
for a timer, and at a few hundred calls per second a transaction carries a dozen
calls' writes.

Nobody waits for a write: the queue is first in, first out, so a call's rows reach
the store in the order the call made them. A batch that fails is written again one write per
transaction, so one bad row cannot take the others with it; a write that still fails
is, if it is a CDR, tried again in the background after ``RETRY_DELAYS_S`` (the store
may be restarting) and, when those are spent, logged whole at ERROR (the CDR and its
report as JSON): never dropped without a trace. The ``open_calls`` rows are not retried:
only a crash would ever read them, and one written late could outlive its call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, Table, bindparam, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from callmask.store.database import Database
from callmask.store.models import CallRecord, OpenCall, WebhookEvent

log = logging.getLogger(__name__)

# Waits before a write that failed alone is tried again; after the last, it is logged.
RETRY_DELAYS_S = (1.0, 5.0, 30.0)
# Writes per transaction at most. SQLAlchemy prepares all of an executemany's rows in
# one step of the event loop, which every call waits behind; the cap bounds that step
# while a transaction still carries the writes of about 20 calls.
MAX_BATCH = 64

_OPEN_CALLS: Table = OpenCall.__table__  # type: ignore[assignment]
_CALL_RECORDS: Table = CallRecord.__table__  # type: ignore[assignment]
_WEBHOOK_EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]

# Built once: a batch only binds values.
_INSERT_OPEN = insert(_OPEN_CALLS)
_MARK_ANSWERED = (
    update(_OPEN_CALLS)
    .where(_OPEN_CALLS.c.record_id == bindparam("b_record_id"))
    .values(answered_at=bindparam("b_answered_at"))
)
_INSERT_RECORD = insert(_CALL_RECORDS)
_INSERT_EVENT = insert(_WEBHOOK_EVENTS)
_FORGET_OPEN = delete(_OPEN_CALLS).where(
    _OPEN_CALLS.c.record_id.in_(bindparam("b_record_ids", expanding=True))
)


@dataclass(frozen=True, slots=True)
class CallOpened:
    """The ``open_calls`` row of a call that started ringing."""

    record_id: str
    node_id: str
    snapshot: str


@dataclass(frozen=True, slots=True)
class CallAnswered:
    record_id: str
    answered_at: dt.datetime


@dataclass(frozen=True, slots=True)
class RowWrite:
    """One row a call's routing keeps of the call (a session's interaction). The
    statement is built once, at import: the ledger writes the rows of one statement,
    over every call of a batch, with one executemany."""

    statement: Executable
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Kept:
    """What a call's routing keeps of the call, written in its CDR's transaction: rows,
    and outbox events (``webhook_events`` rows) they cause."""

    rows: tuple[RowWrite, ...] = ()
    events: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class CallClosed:
    """The CDR, the report it causes (a ``webhook_events`` row, if any), whether an
    ``open_calls`` row is to be removed, and what the call's routing keeps of it."""

    record: dict[str, Any]
    event: dict[str, Any] | None
    was_open: bool
    kept: Kept | None = None

    @property
    def record_id(self) -> str:
        return str(self.record["id"])


Write = CallOpened | CallAnswered | CallClosed


@dataclass(slots=True)
class _Queued:
    write: Write
    attempts: int = 0
    due: float = 0.0  # loop time of the next try, for retries
    settled: bool = False  # its latest attempt is over (written, or queued for a retry)


class CallLedger:
    """Queues the call engine's writes; ``run`` writes them (see the module's docstring)."""

    def __init__(
        self,
        database: Database,
        *,
        on_events: Callable[[], None] | None = None,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self.database = database
        self.on_events = on_events  # told after a commit that added outbox events
        self.retry_delays_s = tuple(retry_delays_s)
        self._queue: list[_Queued] = []
        self._retries: list[_Queued] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight: list[_Queued] = []  # the batch being written
        self._stopping = False
        self._closed = False

    # -- what the engine calls ------------------------------------------------------

    def write(self, write: Write) -> None:
        """Queue ``write``; it reaches the store after everything queued before it."""
        if self._closed:
            raise RuntimeError("the call ledger is closed")
        self._queue.append(_Queued(write))
        self._idle.clear()
        self._wake.set()

    @property
    def pending(self) -> int:
        """Writes queued or waiting for a retry."""
        return len(self._queue) + len(self._retries)

    # -- the writer -----------------------------------------------------------------

    async def run(self) -> None:
        """Write until ``stop()`` has been called and nothing is queued; retries still
        waiting for their time are left to ``close``."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            due = [q for q in self._retries if q.due <= now]
            if due:
                self._retries = [q for q in self._retries if q.due > now]
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            if batch or due:
                self._in_flight = batch + due
                try:
                    await self._write_batch(batch)
                    for queued in due:
                        await self._write_alone(queued)
                except asyncio.CancelledError:
                    # Cancelled mid-transaction, which rolls it back: what it held is
                    # left for close() to write.
                    self._queue[:0] = [q for q in self._in_flight if not q.settled]
                    raise
                finally:
                    self._in_flight = []
                continue
            if self._stopping:
                return
            if not self._retries:
                self._idle.set()
            timeout_s = min((q.due for q in self._retries), default=now + 3600) - now
            try:
                async with asyncio.timeout(max(timeout_s, 0.0)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Let ``run`` return once everything queued so far is written."""
        self._stopping = True
        self._wake.set()

    async def drained(self) -> None:
        """Until nothing is queued (retries waiting for their time count as queued)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Write what is queued, give every retry one last try, and refuse new writes.
        Call after ``run`` has returned or was cancelled."""
        self._closed = True
        batch, self._queue = self._queue, []
        await self._write_batch(batch)
        retries, self._retries = self._retries, []
        for queued in retries:
            queued.attempts = len(self.retry_delays_s)  # the last one
            await self._write_alone(queued)
        self._idle.set()

    async def _write_batch(self, batch: list[_Queued]) -> None:
        if not batch:
            return
        try:
            await self._commit([q.write for q in batch])
        except Exception:
            if len(batch) == 1:
                log.warning("call store write failed; trying again", exc_info=True)
            else:
                log.warning(
                    "call store batch of %d writes failed; writing them one by one",
                    len(batch),
                    exc_info=True,
                )
            for queued in batch:
                await self._write_alone(queued)
            return
        for queued in batch:
            queued.settled = True

    async def _write_alone(self, queued: _Queued) -> None:
        try:
            await self._commit([queued.write])
        except Exception as exc:
            write = queued.write
            if isinstance(write, CallClosed) and write.kept is not None:
                # The CDR never waits on the routing's rows: log those as lost and write
                # the CDR without them.
                log.error(
                    "call %s: what its routing keeps was refused (%s: %s); lost write: %s",
                    write.record_id,
                    type(exc).__name__,
                    exc,
                    json.dumps(_kept_values(write.kept), default=str),
                )
                queued.write = dataclasses.replace(write, kept=None)
                await self._write_alone(queued)
                return
            queued.settled = True
            self._retry_later(queued, exc)
        else:
            queued.settled = True

    def _retry_later(self, queued: _Queued, exc: Exception) -> None:
        if not isinstance(queued.write, CallClosed):
            # Only a crash would ever read these rows, and one written late could
            # outlive the call's CDR (a restart would then close the call twice).
            log.warning(
                "call store write %s failed (%s: %s); not retried",
                describe(queued.write),
                type(exc).__name__,
                exc,
            )
            return
        if queued.attempts >= len(self.retry_delays_s):
            log.error(
                "call store write given up after %d tries (%s: %s); lost write: %s",
                queued.attempts + 1,
                type(exc).__name__,
                exc,
                describe(queued.write),
            )
            return
        delay_s = self.retry_delays_s[queued.attempts]
        queued.attempts += 1
        queued.due = asyncio.get_running_loop().time() + delay_s
        log.warning(
            "call store write for record %s failed (%s: %s); trying again in %g s",
            queued.write.record_id,
            type(exc).__name__,
            exc,
            delay_s,
        )
        self._retries.append(queued)

    async def _commit(self, writes: Sequence[Write]) -> None:
        opened = [w for w in writes if isinstance(w, CallOpened)]
        answered = [w for w in writes if isinstance(w, CallAnswered)]
        closed = [w for w in writes if isinstance(w, CallClosed)]
        events = [w.event for w in closed if w.event is not None]
        kept_rows: dict[int, tuple[Executable, list[dict[str, Any]]]] = {}
        for w in closed:
            if w.kept is None:
                continue
            events.extend(w.kept.events)
            for row in w.kept.rows:
                kept_rows.setdefault(id(row.statement), (row.statement, []))[1].append(row.values)
        forgotten = [w.record_id for w in closed if w.was_open]
        async with self.database.write_turn(), self.database.engine.begin() as conn:
            # In this order, so that a call opened, answered and closed within one batch
            # leaves no open_calls row behind.
            await _execute_many(
                conn,
                _INSERT_OPEN,
                [
                    {"record_id": w.record_id, "node_id": w.node_id, "snapshot": w.snapshot}
                    for w in opened
                ],
            )
            await _execute_many(
                conn,
                _MARK_ANSWERED,
                [{"b_record_id": w.record_id, "b_answered_at": w.answered_at} for w in answered],
            )
            await _execute_many(conn, _INSERT_RECORD, [w.record for w in closed])
            for statement, rows in kept_rows.values():  # in the order the calls made them
                await _execute_many(conn, statement, rows)
            await _execute_many(conn, _INSERT_EVENT, events)
            if forgotten:
                await conn.execute(_FORGET_OPEN, {"b_record_ids": forgotten})
        if events and self.on_events is not None:
            self.on_events()


async def _execute_many(conn: AsyncConnection, statement: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(statement, rows)


def describe(write: Write) -> str:
    """The write as JSON, for the log line that records it as lost."""
    match write:
        case CallOpened():
            values: dict[str, Any] = {"open_call": write.record_id, "node_id": write.node_id}
        case CallAnswered():
            values = {"answered": write.record_id, "answered_at": write.answered_at}
        case CallClosed():
            values = {"call_record": write.record, "webhook_event": write.event}
            if write.kept is not None:
                values["kept"] = _kept_values(write.kept)
    return json.dumps(values, separators=(",", ":"), default=str)


def _kept_values(kept: Kept) -> dict[str, Any]:
    return {
        "rows": [{"statement": str(r.statement), **r.values} for r in kept.rows],
        "events": list(kept.events),
    }
