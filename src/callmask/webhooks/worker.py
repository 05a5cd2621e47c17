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

Shape (arq/svix style): ``run`` claims as long as it has free delivery slots, starts
one task per event, and sleeps until ``notify()`` (something was enqueued), a slot
frees up, a retry falls due, or ``poll_interval_s`` passes (work other nodes left).
Finished attempts are written by one recorder task in batches, which keeps SQLite's
single writer from becoming the bottleneck. A slow receiver therefore holds one slot,
never the whole queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

import httpx
from sqlalchemy import Table, and_, bindparam, exists, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from callmask.errors import InvalidInput
from callmask.netguard import BlockedAddress, check_url, resolve_public
from callmask.store.database import Database
from callmask.store.models import WebhookAttempt, WebhookEvent, utcnow
from callmask.webhooks import metrics
from callmask.webhooks.outbox import EventStatus
from callmask.webhooks.repository import Secrets
from callmask.webhooks.retry import (
    RETRY_SCHEDULE_S,
    AttemptOutcome,
    outcome_of_status,
    parse_retry_after,
    retry_delay_s,
)
from callmask.webhooks.signature import signature_headers

log = logging.getLogger(__name__)

MAX_EXCERPT_CHARS = 500  # webhook_attempts.response_excerpt
MAX_EXCERPT_BYTES = 2048  # read no more of a response than the excerpt needs
USER_AGENT = "callmask-webhooks"

_EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]


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


class DeliveryWorker:
    def __init__(
        self,
        database: Database,
        http: httpx.AsyncClient,
        *,
        allow_private: bool,
        timeout_s: float = 10.0,
        batch_size: int = 100,
        concurrency: int = 50,
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
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.lease_s = lease_s
        self.schedule = tuple(schedule)
        self.clock = clock
        self._wake = asyncio.Event()
        self._leases: dict[str, dt.datetime] = {}  # claimed here, result not yet stored
        self._finished: list[AttemptFinished] = []  # results waiting for the recorder
        self._finished_ready = asyncio.Event()
        self._retry_times: list[dt.datetime] = []  # heap: when our retries fall due
        self._slots_full = False

    def notify(self) -> None:
        """Look for due events now; call after committing an ``enqueue``."""
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
                tasks.create_task(self._record_loop(), name="webhook recorder")
                while True:
                    await self._claim_and_start(tasks)
        finally:
            await self._shutdown()

    async def run_once(self) -> int:
        """Claim one batch, deliver it, store the results; return how many were claimed.
        For tests and tools; ``run`` is the service loop."""
        claimed = await self._claim(self.batch_size)
        if not claimed:
            return 0
        slots = asyncio.Semaphore(self.concurrency)

        async def attempt(event: ClaimedEvent, secrets: Sequence[str]) -> AttemptFinished:
            async with slots:
                return await self._attempt(event, secrets)

        async with asyncio.TaskGroup() as tasks:
            started = [tasks.create_task(attempt(e, s)) for e, s in claimed]
        finished = [task.result() for task in started]
        await self._record(finished)
        for result in finished:
            self._leases.pop(result.event.id, None)
        return len(claimed)

    # -- the service loop -------------------------------------------------------------

    async def _claim_and_start(self, tasks: asyncio.TaskGroup) -> None:
        self._wake.clear()
        now = self.clock()
        while self._retry_times and self._retry_times[0] <= now:
            heapq.heappop(self._retry_times)
        free = self.concurrency - len(self._leases)
        self._slots_full = free <= 0
        if free > 0:
            wanted = min(free, self.batch_size)
            try:
                claimed = await self._claim(wanted)
            except (SQLAlchemyError, OSError):
                log.exception("webhook claim failed; trying again in %s s", self.poll_interval_s)
                await self._sleep(self.poll_interval_s)
                return
            for event, secrets in claimed:
                tasks.create_task(self._deliver(event, secrets), name=f"webhook {event.id}")
            if len(claimed) == wanted:
                return  # a full batch: more may be due, claim again at once
        await self._sleep(self._idle_timeout_s())

    def _idle_timeout_s(self) -> float:
        timeout_s = self.poll_interval_s
        if self._retry_times:
            until_s = (self._retry_times[0] - self.clock()).total_seconds()
            timeout_s = min(timeout_s, max(until_s, 0.0))
        return timeout_s

    async def _sleep(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _deliver(self, event: ClaimedEvent, secrets: Sequence[str]) -> None:
        try:
            finished = await self._attempt(event, secrets)
        except Exception:
            # A bug, not the receiver's doing. The lease stays on the row, so the event
            # is tried again when it expires; the slot is freed now.
            log.exception("webhook event=%s attempt crashed", event.id)
            self._leases.pop(event.id, None)
            self._wake.set()
            return
        self._finished.append(finished)
        self._finished_ready.set()

    async def _record_loop(self) -> None:
        while True:
            await self._finished_ready.wait()
            self._finished_ready.clear()
            batch = list(self._finished)
            if not batch:
                continue
            try:
                await self._record(batch)
            except (SQLAlchemyError, OSError):
                # The leases stay on the rows: these events are sent again when they
                # expire (at least once, possibly twice).
                log.exception("could not store %d webhook attempts", len(batch))
            # Only now: if the write is cancelled, _shutdown still finds them.
            del self._finished[: len(batch)]
            for result in batch:
                self._leases.pop(result.event.id, None)
            # Wake the claim loop if it waits for a slot, or if an event that was
            # holding back later events of its ordering key is no longer pending.
            if self._slots_full or any(
                r.event.ordering_key is not None and r.outcome is not AttemptOutcome.RETRY
                for r in batch
            ):
                self._wake.set()

    async def _shutdown(self) -> None:
        try:
            async with asyncio.timeout(5):
                if self._finished:
                    await self._record(self._finished)
                    for result in self._finished:
                        self._leases.pop(result.event.id, None)
                    self._finished.clear()
                if self._leases:
                    await self._release(self._leases)
                    self._leases.clear()
        except (SQLAlchemyError, OSError, TimeoutError):
            log.exception("webhook worker could not tidy up; leases will expire instead")
        log.info("webhook worker stopped")

    # -- claim, attempt, record ---------------------------------------------------------

    async def _claim(self, limit: int) -> list[tuple[ClaimedEvent, list[str]]]:
        now = self.clock()
        lease_until = now + dt.timedelta(seconds=self.lease_s)
        candidate = aliased(WebhookEvent)
        earlier = aliased(WebhookEvent)
        held_back = exists().where(
            earlier.ordering_key == candidate.ordering_key,
            earlier.status == EventStatus.PENDING.value,
            or_(
                earlier.created_at < candidate.created_at,
                and_(earlier.created_at == candidate.created_at, earlier.id < candidate.id),
            ),
        )
        due = (
            select(candidate.id)
            .where(
                candidate.status == EventStatus.PENDING.value,
                candidate.next_attempt_at <= now,
                or_(candidate.lease_until.is_(None), candidate.lease_until < now),
                ~held_back,
            )
            .order_by(candidate.next_attempt_at, candidate.created_at)
            .limit(limit)
        )
        if not self.database.is_sqlite:
            due = due.with_for_update(skip_locked=True, of=candidate)
        claim = (
            update(_EVENTS)
            .where(_EVENTS.c.id.in_(due.scalar_subquery()))
            .values(lease_until=lease_until)
            .returning(
                _EVENTS.c.id,
                _EVENTS.c.account_id,
                _EVENTS.c.event_type,
                _EVENTS.c.url,
                _EVENTS.c.payload,
                _EVENTS.c.ordering_key,
                _EVENTS.c.attempt_count,
            )
        )
        async with self.database.session() as session:
            rows = (await session.execute(claim)).all()
            if not rows:
                return []
            account_ids = sorted({row.account_id for row in rows})
            repository = Secrets(session)
            secrets = await repository.active(account_ids)
            for account_id in account_ids:
                if account_id not in secrets:
                    # Accounts get a secret when created; this covers rows written by
                    # other means so an event is never sent unsigned.
                    secrets[account_id] = [(await repository.add(account_id)).secret]
        claimed = []
        for row in rows:
            event = ClaimedEvent(
                id=row.id,
                account_id=row.account_id,
                event_type=row.event_type,
                url=row.url,
                payload=row.payload,
                ordering_key=row.ordering_key,
                attempt_count=row.attempt_count,
                lease_until=lease_until,
            )
            self._leases[event.id] = lease_until
            claimed.append((event, secrets[event.account_id]))
        return claimed

    async def _attempt(self, event: ClaimedEvent, secrets: Sequence[str]) -> AttemptFinished:
        attempted_at = self.clock()
        started = time.perf_counter()
        status_code: int | None = None
        excerpt: str | None = None
        error: str | None = None
        retry_after: str | None = None
        blocked = await self._check_destination(event.url)
        if blocked is not None:
            outcome, error = blocked
        else:
            body = event.payload.encode()
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                **signature_headers(event.id, int(attempted_at.timestamp()), body, secrets),
            }
            try:
                # httpx's timeout bounds each read; this bounds the whole exchange, so a
                # receiver that trickles bytes cannot hold the slot past timeout_s.
                async with (
                    asyncio.timeout(self.timeout_s),
                    self.http.stream(
                        "POST",
                        event.url,
                        content=body,
                        headers=headers,
                        timeout=self.timeout_s,
                        follow_redirects=False,
                    ) as response,
                ):
                    status_code = response.status_code
                    retry_after = response.headers.get("retry-after")
                    excerpt = await _read_excerpt(response)
            except (TimeoutError, httpx.TimeoutException):
                error = f"timed out after {self.timeout_s} s"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:MAX_EXCERPT_CHARS]
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

    async def _check_destination(self, url: str) -> tuple[AttemptOutcome, str] | None:
        """SSRF guard before every send (DNS answers change between attempts)."""
        try:
            check_url(url, allow_private=self.allow_private)
        except InvalidInput as exc:
            return AttemptOutcome.DEAD, f"refused URL: {exc}"
        try:
            await resolve_public(url, allow_private=self.allow_private)
        except BlockedAddress as exc:
            return AttemptOutcome.DEAD, f"refused URL: {exc}"
        except InvalidInput as exc:
            # The URL itself passed check_url, so this is a failed DNS lookup: passing.
            return AttemptOutcome.RETRY, str(exc)
        return None

    async def _record(self, finished: Sequence[AttemptFinished]) -> None:
        """Store attempts and move their events on, all in one transaction."""
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
        move_on = (
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
        attempts = [
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
        ]
        async with self.database.session() as session:
            # The UPDATE first: on SQLite it takes the write lock at once.
            await session.execute(move_on, changes)
            await session.execute(insert(WebhookAttempt), attempts)
        for result in finished:
            self._log(result)
            if result.outcome is AttemptOutcome.RETRY:
                heapq.heappush(self._retry_times, result.next_attempt_at)

    async def _release(self, leases: dict[str, dt.datetime]) -> None:
        release = (
            update(_EVENTS)
            .where(_EVENTS.c.id == bindparam("b_id"), _EVENTS.c.lease_until == bindparam("b_lease"))
            .values(lease_until=None)
        )
        async with self.database.session() as session:
            await session.execute(
                release, [{"b_id": i, "b_lease": lease} for i, lease in leases.items()]
            )

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


async def _read_excerpt(response: httpx.Response) -> str | None:
    """The start of the answer, for the delivery log; the rest is never read."""
    received = bytearray()
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) >= MAX_EXCERPT_BYTES:
            break
    text = bytes(received[:MAX_EXCERPT_BYTES]).decode("utf-8", "replace")[:MAX_EXCERPT_CHARS]
    return text or None
