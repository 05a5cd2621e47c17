"""The webhook delivery worker: claims due outbox rows, POSTs them, logs each attempt.

Delivery is at least once. A claimed row carries a lease (``lease_until``); the worker
that holds it sends the event and then, in one transaction, writes the attempt row and
moves the event on (delivered, pending again at the next retry time, or dead). If the
process dies in between, the lease expires and another worker (or the restarted one)
claims the row again, so the receiver may see an event twice but never zero times;
``webhook-id`` lets it deduplicate. The lease is also a fencing token: a result is
applied only if the row still holds the lease it was claimed with, so a worker that
lost its lease cannot overwrite the newer owner's state.

Claim: one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``. On PostgreSQL
the inner SELECT takes ``FOR UPDATE SKIP LOCKED``, so concurrent workers split the
due rows instead of waiting for or doubling each other. SQLite has no row locks, but
it runs one writer at a time and the claim is a single write statement, so two
claims cannot interleave. An event is claimable only if no earlier (``created_at``,
``id``) event with the same ``ordering_key`` is still pending: one call's reports go
out in order, one at a time; a dead event stops blocking its successors.

Shape (arq/svix style): one loop owns the store. Each round it writes the attempts
that finished since the last round and, in the same transaction, claims as many due
events as there are free delivery slots; each claimed event is sent by its own task.
A finished attempt waits up to ``RESULT_FLUSH_S`` for the next round rather than
getting a transaction of its own, unless a later event of its call waits for it.
Between rounds it sleeps until ``notify()`` (something was enqueued), an attempt
finishes, a retry falls due, or ``poll_interval_s`` passes (work that other nodes or
a previous process left). One transaction per round, however many events it covers,
keeps SQLite's single writer from being the bottleneck, and the worker never
competes with itself for the write lock. A slow receiver holds one slot, never the
queue. The SQL is built once, at import, so a round only binds values.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

import aiohttp
from sqlalchemy import (
    Boolean,
    Table,
    and_,
    bindparam,
    exists,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from callmask.errors import InvalidInput
from callmask.netguard import check_url
from callmask.outbound import OutboundFailure, outbound_failures, read_at_most
from callmask.store.database import Database
from callmask.store.models import WebhookAttempt, WebhookEvent, WebhookSecret, utcnow
from callmask.webhooks import metrics
from callmask.webhooks.outbox import EventStatus
from callmask.webhooks.retry import (
    RETRY_SCHEDULE_S,
    AttemptOutcome,
    outcome_of_status,
    parse_retry_after,
    retry_delay_s,
)
from callmask.webhooks.signature import new_secret, signature_headers

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 50
MAX_EXCERPT_CHARS = 500  # webhook_attempts.response_excerpt
MAX_EXCERPT_BYTES = 2048  # read no more of a response than the excerpt needs
SHUTDOWN_TIMEOUT_S = 5.0
# How long a finished attempt may wait to be written with the next claim. The receiver
# already has the event, so this delays only the delivery log, and it turns the
# per-event "store" transaction into part of the next round's claim.
RESULT_FLUSH_S = 0.05

_EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = WebhookAttempt.__table__  # type: ignore[assignment]
_SECRETS: Table = WebhookSecret.__table__  # type: ignore[assignment]
_PENDING = EventStatus.PENDING.value


def _claim_statement(*, skip_locked: bool) -> Any:
    candidate = _EVENTS.alias("candidate")
    earlier = _EVENTS.alias("earlier")
    held_back = exists().where(
        earlier.c.ordering_key == candidate.c.ordering_key,
        earlier.c.status == _PENDING,
        or_(
            earlier.c.created_at < candidate.c.created_at,
            and_(earlier.c.created_at == candidate.c.created_at, earlier.c.id < candidate.c.id),
        ),
    )
    due = (
        select(candidate.c.id)
        .where(
            candidate.c.status == _PENDING,
            candidate.c.next_attempt_at <= bindparam("b_now"),
            or_(candidate.c.lease_until.is_(None), candidate.c.lease_until < bindparam("b_now")),
            ~held_back,
        )
        .order_by(candidate.c.next_attempt_at, candidate.c.created_at)
        .limit(bindparam("b_limit"))
    )
    if skip_locked:
        due = due.with_for_update(skip_locked=True, of=candidate)
    # Whether a later event of the same ordering key waits for this one: then its
    # result is written at once, so the next one can go. Written out because
    # SQLAlchemy leaves columns in SQLite's RETURNING unqualified, which would make
    # the subquery compare "later" with itself.
    blocks_successor = literal_column(
        "EXISTS (SELECT 1 FROM webhook_events AS later"
        " WHERE later.ordering_key = webhook_events.ordering_key"
        f" AND later.status = '{_PENDING}'"
        " AND (later.created_at > webhook_events.created_at"
        " OR (later.created_at = webhook_events.created_at AND later.id > webhook_events.id)))",
        type_=Boolean,
    ).label("blocks_successor")
    return (
        update(_EVENTS)
        .where(_EVENTS.c.id.in_(due.scalar_subquery()))
        .values(lease_until=bindparam("b_lease_until"))
        .returning(
            _EVENTS.c.id,
            _EVENTS.c.account_id,
            _EVENTS.c.event_type,
            _EVENTS.c.url,
            _EVENTS.c.payload,
            _EVENTS.c.ordering_key,
            _EVENTS.c.attempt_count,
            blocks_successor,
        )
    )


_CLAIM_SQLITE = _claim_statement(skip_locked=False)
_CLAIM_SKIP_LOCKED = _claim_statement(skip_locked=True)
_ACTIVE_SECRETS = (
    select(_SECRETS.c.account_id, _SECRETS.c.secret)
    .where(
        _SECRETS.c.account_id.in_(bindparam("b_accounts", expanding=True)),
        _SECRETS.c.revoked_at.is_(None),
    )
    .order_by(_SECRETS.c.created_at, _SECRETS.c.id)
)
# Applied only while the row still holds our lease (the fencing token).
_MOVE_ON = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("b_id"), _EVENTS.c.lease_until == bindparam("b_lease"))
    .values(
        status=bindparam("b_status"),
        attempt_count=_EVENTS.c.attempt_count + 1,
        next_attempt_at=bindparam("b_next"),
        lease_until=None,
        delivered_at=bindparam("b_delivered_at"),
        last_error=bindparam("b_error"),
    )
)
_RELEASE = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("b_id"), _EVENTS.c.lease_until == bindparam("b_lease"))
    .values(lease_until=None)
)


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """An event this worker holds the lease on, with what it needs to send it."""

    id: str
    account_id: str
    event_type: str
    url: str
    payload: str
    ordering_key: str | None
    attempt_count: int  # attempts made before this one
    lease_until: dt.datetime  # the fencing token
    blocks_successor: bool = False  # a later event of its ordering key waits for it


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    """One HTTP try and what it decided."""

    event: ClaimedEvent
    attempted_at: dt.datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None
    error: str | None
    outcome: AttemptOutcome
    next_attempt_at: dt.datetime  # when it is tried again; only meaningful for RETRY

    @property
    def attempt(self) -> int:
        return self.event.attempt_count + 1


Claimed = tuple[ClaimedEvent, list[str]]  # an event and the secrets that sign it


class DeliveryWorker:
    """``http`` is a session from ``outbound.client_session`` with the same
    ``allow_private``: its resolver is what refuses names of non-public addresses."""

    def __init__(
        self,
        database: Database,
        http: aiohttp.ClientSession,
        *,
        allow_private: bool,
        timeout_s: float = 10.0,
        batch_size: int = 100,
        concurrency: int = DEFAULT_CONCURRENCY,
        poll_interval_s: float = 1.0,
        lease_s: float = 60.0,
        schedule: Sequence[float] = RETRY_SCHEDULE_S,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        if timeout_s <= 0 or poll_interval_s <= 0 or batch_size < 1 or concurrency < 1:
            raise ValueError("timeout_s, poll_interval_s, batch_size, concurrency must be > 0")
        # A lease must outlive the send it covers, or a second worker could claim the
        # event while the first is still sending it.
        if lease_s <= timeout_s:
            raise ValueError("lease_s must be longer than timeout_s")
        self.database = database
        self.http = http
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.lease_s = lease_s
        self.schedule = tuple(schedule)
        self.clock = clock
        self._claim = _CLAIM_SQLITE if database.is_sqlite else _CLAIM_SKIP_LOCKED
        self._wake = asyncio.Event()
        self._claim_requested = True  # look for due events at the next round
        self._saturated = False  # every slot was taken at the last claim
        self._in_flight: dict[str, dt.datetime] = {}  # claimed here, result not yet stored
        self._finished: list[AttemptFinished] = []  # results waiting for the next round
        self._flush_at = 0.0  # loop time by which waiting results are written
        self._retry_times: list[dt.datetime] = []  # heap: when our retries fall due

    def notify(self) -> None:
        """Look for due events now; call after committing an ``enqueue``."""
        self._claim_requested = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled. Results already received are stored and unsent
        claims released on the way out, so a restart resends as little as possible."""
        log.info(
            "webhook worker started (concurrency=%d, batch_size=%d, timeout_s=%s)",
            self.concurrency,
            self.batch_size,
            self.timeout_s,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                while True:
                    try:
                        busy = await self._round(tasks)
                    except Exception:
                        # A bug must not end delivery (nor, through the lifespan's task
                        # group, the node); the leases keep the events safe meanwhile.
                        log.exception("webhook worker round failed")
                        await self._sleep(self.poll_interval_s)
                        continue
                    if not busy:
                        await self._sleep(self._idle_timeout_s())
        finally:
            await self._shutdown()

    async def run_once(self) -> int:
        """Claim one batch, deliver it, store the results; return how many were claimed.
        For tests and tools; ``run`` is the service loop."""
        claimed = await self._store_and_claim([], self.batch_size)
        if not claimed:
            return 0
        slots = asyncio.Semaphore(self.concurrency)

        async def attempt(event: ClaimedEvent, secrets: Sequence[str]) -> AttemptFinished:
            async with slots:
                return await self._attempt(event, secrets)

        async with asyncio.TaskGroup() as tasks:
            started = [tasks.create_task(attempt(e, s)) for e, s in claimed]
        await self._store_and_claim([task.result() for task in started], 0)
        return len(claimed)

    # -- the service loop -------------------------------------------------------------

    async def _round(self, tasks: asyncio.TaskGroup) -> bool:
        """Store finished attempts and claim due events, in one transaction. True if
        another round should follow at once."""
        self._wake.clear()
        now = self.clock()
        while self._retry_times and self._retry_times[0] <= now:
            heapq.heappop(self._retry_times)
            self._claim_requested = True
        finished = self._finished
        # An event that is no longer pending may be holding back later events of its
        # ordering key; and a slot freed while all were taken can take a new event.
        unblocking = any(
            r.event.blocks_successor and r.outcome is not AttemptOutcome.RETRY for r in finished
        )
        free = self.concurrency - len(self._in_flight) + len(finished)
        claim = free > 0 and (
            self._claim_requested or unblocking or (self._saturated and bool(finished))
        )
        wanted = min(free, self.batch_size) if claim else 0
        flush = bool(finished) and asyncio.get_running_loop().time() >= self._flush_at
        if not wanted and not flush:
            return False
        self._finished = []
        self._claim_requested = False
        try:
            claimed = await self._store_and_claim(finished, wanted)
        except Exception:
            # The store is away or refused: keep the results for the next round; the
            # leases protect the events meanwhile.
            log.exception("webhook store round failed; trying again in %s s", self.poll_interval_s)
            self._finished[:0] = finished
            self._claim_requested = self._claim_requested or claim
            await self._sleep(self.poll_interval_s)
            return True
        for event, secrets in claimed:
            tasks.create_task(self._deliver(event, secrets), name=f"webhook {event.id}")
        more_due = wanted > 0 and len(claimed) == wanted
        self._saturated = more_due and wanted == free
        if more_due and not self._saturated:
            self._claim_requested = True  # a full batch: more may be due
            return True
        return bool(self._finished)

    def _idle_timeout_s(self) -> float:
        timeout_s = self.poll_interval_s
        if self._finished:
            timeout_s = min(timeout_s, self._flush_at - asyncio.get_running_loop().time())
        if self._retry_times:
            until_s = (self._retry_times[0] - self.clock()).total_seconds()
            timeout_s = min(timeout_s, max(until_s, 0.0))
        return timeout_s

    async def _sleep(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            self._claim_requested = True  # the poll: work other workers left, expired leases

    async def _deliver(self, event: ClaimedEvent, secrets: Sequence[str]) -> None:
        try:
            finished = await self._attempt(event, secrets)
        except Exception:
            # A bug, not the receiver's doing. The lease stays on the row, so the event
            # is tried again when it expires; the slot is freed now.
            log.exception("webhook event=%s attempt crashed", event.id)
            self._in_flight.pop(event.id, None)
        else:
            if not self._finished:
                self._flush_at = asyncio.get_running_loop().time() + RESULT_FLUSH_S
            self._finished.append(finished)
        self._wake.set()

    async def _shutdown(self) -> None:
        finished = {r.event.id for r in self._finished}
        unsent = {i: lease for i, lease in self._in_flight.items() if i not in finished}
        try:
            async with (
                asyncio.timeout(SHUTDOWN_TIMEOUT_S),
                self.database.write_turn(),
                self.database.engine.begin() as conn,
            ):
                await self._store(conn, self._finished)
                if unsent:
                    await conn.execute(
                        _RELEASE, [{"b_id": i, "b_lease": lease} for i, lease in unsent.items()]
                    )
        except (SQLAlchemyError, OSError, TimeoutError):
            log.exception("webhook worker could not tidy up; leases will expire instead")
        else:
            self._after_store(self._finished)
            self._in_flight.clear()
        self._finished = []
        log.info("webhook worker stopped (%d unsent events handed back)", len(unsent))

    # -- store ------------------------------------------------------------------------

    async def _store_and_claim(
        self, finished: Sequence[AttemptFinished], wanted: int
    ) -> list[Claimed]:
        """One transaction: store ``finished``, then claim up to ``wanted`` due events."""
        now = self.clock()
        lease_until = now + dt.timedelta(seconds=self.lease_s)
        claimed: list[Claimed] = []
        async with self.database.write_turn(), self.database.engine.begin() as conn:
            # Writes first: on SQLite the first write takes the lock for the whole
            # transaction, so the claim below cannot be overtaken.
            await self._store(conn, finished)
            if wanted:
                rows = (
                    await conn.execute(
                        self._claim,
                        {"b_now": now, "b_lease_until": lease_until, "b_limit": wanted},
                    )
                ).all()
                if rows:
                    claimed = await self._with_secrets(conn, rows, lease_until, now)
        self._after_store(finished)
        for event, _secrets in claimed:
            self._in_flight[event.id] = event.lease_until
        return claimed

    async def _with_secrets(
        self,
        conn: AsyncConnection,
        rows: Sequence[Row[Any]],
        lease_until: dt.datetime,
        now: dt.datetime,
    ) -> list[Claimed]:
        account_ids = sorted({row.account_id for row in rows})
        secrets: dict[str, list[str]] = {}
        for account_id, secret in await conn.execute(_ACTIVE_SECRETS, {"b_accounts": account_ids}):
            secrets.setdefault(account_id, []).append(secret)
        missing = [a for a in account_ids if a not in secrets]
        if missing:
            # Accounts get a secret when created; this covers rows written by other
            # means, so that no event is ever sent unsigned.
            new_rows = [
                {"id": uuid.uuid4().hex, "account_id": a, "secret": new_secret(), "created_at": now}
                for a in missing
            ]
            await conn.execute(insert(_SECRETS), new_rows)
            secrets.update({r["account_id"]: [r["secret"]] for r in new_rows})
        return [
            (
                ClaimedEvent(
                    id=row.id,
                    account_id=row.account_id,
                    event_type=row.event_type,
                    url=row.url,
                    payload=row.payload,
                    ordering_key=row.ordering_key,
                    attempt_count=row.attempt_count,
                    lease_until=lease_until,
                    blocks_successor=bool(row.blocks_successor),
                ),
                secrets[row.account_id],
            )
            for row in rows
        ]

    @staticmethod
    async def _store(conn: AsyncConnection, finished: Sequence[AttemptFinished]) -> None:
        """Attempt rows, and each event moved on (if we still hold its lease)."""
        if not finished:
            return
        changes: list[dict[str, Any]] = []
        for result in finished:
            change = {
                "b_id": result.event.id,
                "b_lease": result.event.lease_until,
                "b_next": result.next_attempt_at,
                "b_delivered_at": None,
                "b_error": result.error,
            }
            match result.outcome:
                case AttemptOutcome.DELIVERED:
                    change["b_status"] = EventStatus.DELIVERED.value
                    change["b_delivered_at"] = result.attempted_at
                case AttemptOutcome.RETRY:
                    change["b_status"] = EventStatus.PENDING.value
                case AttemptOutcome.DEAD:
                    change["b_status"] = EventStatus.DEAD.value
                case _:
                    assert_never(result.outcome)
            changes.append(change)
        await conn.execute(_MOVE_ON, changes)
        await conn.execute(
            insert(_ATTEMPTS),
            [
                {
                    "event_id": r.event.id,
                    "attempted_at": r.attempted_at,
                    "status_code": r.status_code,
                    "latency_ms": r.latency_ms,
                    "response_excerpt": r.response_excerpt,
                    "error": r.error,
                    "outcome": r.outcome.value,
                }
                for r in finished
            ],
        )

    def _after_store(self, finished: Sequence[AttemptFinished]) -> None:
        for result in finished:
            self._in_flight.pop(result.event.id, None)
            if result.outcome is AttemptOutcome.RETRY:
                heapq.heappush(self._retry_times, result.next_attempt_at)
            self._log(result)

    # -- one attempt ------------------------------------------------------------------

    async def _attempt(self, event: ClaimedEvent, secrets: Sequence[str]) -> AttemptFinished:
        attempted_at = self.clock()
        started = time.perf_counter()
        status_code: int | None = None
        excerpt: str | None = None
        error: str | None = None
        retry_after: str | None = None
        refused = self._check_destination(event.url)
        if refused is None:
            body = event.payload.encode()
            headers = {
                "content-type": "application/json",
                **signature_headers(event.id, int(attempted_at.timestamp()), body, secrets),
            }
            try:
                # The timeout is the whole exchange, so a receiver that trickles bytes
                # cannot hold the slot past timeout_s.
                with outbound_failures(self.timeout_s):
                    async with self.http.post(
                        event.url,
                        data=body,
                        headers=headers,
                        timeout=self._timeout,
                        allow_redirects=False,
                    ) as response:
                        status_code = response.status
                        retry_after = response.headers.get("retry-after")
                        excerpt = _excerpt(await read_at_most(response, MAX_EXCERPT_BYTES))
            except OutboundFailure as exc:
                if exc.blocked is not None:
                    refused = f"refused URL: {exc.blocked}"
                else:
                    error = str(exc)[:MAX_EXCERPT_CHARS]
        if refused is not None:
            # The URL, or the address its name resolved to, is off limits: final.
            outcome, error = AttemptOutcome.DEAD, refused
        else:
            # An answer whose body timed out still counts by its status.
            outcome = (
                AttemptOutcome.RETRY if status_code is None else outcome_of_status(status_code)
            )
            if status_code is not None and outcome is not AttemptOutcome.DELIVERED:
                error = error or f"HTTP {status_code}"
        latency_ms = round((time.perf_counter() - started) * 1000)
        next_attempt_at = attempted_at
        if outcome is AttemptOutcome.RETRY:
            delay_s = retry_delay_s(
                event.attempt_count + 1,
                self.schedule,
                parse_retry_after(retry_after, attempted_at),
            )
            if delay_s is None:
                outcome = AttemptOutcome.DEAD
                error = f"{error}; gave up after {event.attempt_count + 1} attempts"
            else:
                next_attempt_at = attempted_at + dt.timedelta(seconds=delay_s)
        metrics.ATTEMPTS.labels(outcome=outcome.value).inc()
        return AttemptFinished(
            event=event,
            attempted_at=attempted_at,
            status_code=status_code,
            latency_ms=latency_ms,
            response_excerpt=excerpt,
            error=error,
            outcome=outcome,
            next_attempt_at=next_attempt_at,
        )

    def _check_destination(self, url: str) -> str | None:
        """The SSRF check of the URL itself, before every send as at enqueue (the
        operator may have turned allow_private off since). A name is judged by the
        addresses it resolves to when the session connects (outbound.py)."""
        try:
            check_url(url, allow_private=self.allow_private)
        except InvalidInput as exc:
            return f"refused URL: {exc}"
        return None

    @staticmethod
    def _log(result: AttemptFinished) -> None:
        log.info(
            "webhook event=%s account=%s type=%s outcome=%s attempt=%d status=%s "
            "latency_ms=%d next_attempt_at=%s error=%s",
            result.event.id,
            result.event.account_id,
            result.event.event_type,
            result.outcome.value,
            result.attempt,
            result.status_code,
            result.latency_ms,
            result.next_attempt_at.isoformat() if result.outcome is AttemptOutcome.RETRY else "-",
            result.error or "-",
            extra={
                "webhook_event_id": result.event.id,
                "account_id": result.event.account_id,
                "outcome": result.outcome.value,
                "attempt": result.attempt,
                "status_code": result.status_code,
            },
        )


def _excerpt(start: bytes) -> str | None:
    """The start of the answer as text, for the delivery log."""
    return start.decode("utf-8", "replace")[:MAX_EXCERPT_CHARS] or None
