"""The webhook outbox (the "transactional outbox" pattern): an event is a row written in
the same transaction as the state change that causes it, so a status report exists
exactly when the call record does, and a crash can lose neither one alone.

``enqueue`` only adds the row to the caller's session; the caller's
``Database.session()`` commits it, and the caller then calls
``DeliveryWorker.notify()`` so the worker looks now instead of at its next poll:

    async with database.session() as session:
        session.add(call_record)
        await enqueue(session, account_id=..., event_type="call.status", url=...,
                      payload={...}, ordering_key=call_id)
    services.webhooks.notify()

Order: the worker sends events that share an ``ordering_key`` in ``created_at``
order. ``created_at`` comes from a clock that never repeats or goes back within the
process, so two events of one call enqueued in the same microsecond still have an
order. That order is the order of ``enqueue`` calls, which is the order of events
when (as in the call engine) one call's transactions follow one another.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from callmask.errors import InvalidInput
from callmask.store.models import WebhookEvent, utcnow

MAX_EVENT_TYPE_LENGTH = 64
MAX_ORDERING_KEY_LENGTH = 128


class EventStatus(enum.StrEnum):
    """``webhook_events.status``: pending until delivered, or dead when given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class _StrictClock:
    """UTC now, but strictly increasing: the wall clock may stand still between two
    calls (same microsecond) or step back (NTP); the ordering key needs neither."""

    def __init__(self) -> None:
        self._last = dt.datetime.min.replace(tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        now = utcnow()
        if now <= self._last:
            now = self._last + dt.timedelta(microseconds=1)
        self._last = now
        return now


_created_clock = _StrictClock()


def serialise(payload: dict[str, Any]) -> str:
    """The body as it goes on the wire: compact, ASCII-only (no charset ambiguity for
    verifiers that hash text), and strict JSON (no NaN/Infinity, which JSON lacks)."""
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"webhook payload is not JSON-serialisable: {exc}") from exc


def new_event(
    *,
    account_id: str,
    event_type: str,
    url: str,
    payload: dict[str, Any],
    ordering_key: str | None = None,
) -> dict[str, Any]:
    """The ``webhook_events`` row of a new event, as column values; its ``id`` is the
    ``webhook-id`` header and the receiver's idempotency key. For writers that insert
    rows themselves (the call ledger); ``enqueue`` adds it to an ORM session."""
    if not event_type or len(event_type) > MAX_EVENT_TYPE_LENGTH:
        raise InvalidInput(f"event_type must be 1 to {MAX_EVENT_TYPE_LENGTH} characters")
    if ordering_key is not None and len(ordering_key) > MAX_ORDERING_KEY_LENGTH:
        raise InvalidInput(f"ordering_key is longer than {MAX_ORDERING_KEY_LENGTH} characters")
    created_at = _created_clock()
    return {
        "id": uuid.uuid4().hex,
        "account_id": account_id,
        "event_type": event_type,
        "url": url,
        "payload": serialise(payload),
        "ordering_key": ordering_key,
        "status": EventStatus.PENDING.value,
        "attempt_count": 0,
        "next_attempt_at": created_at,
        "lease_until": None,
        "created_at": created_at,
    }


async def enqueue(
    session: AsyncSession,
    *,
    account_id: str,
    event_type: str,
    url: str,
    payload: dict[str, Any],
    ordering_key: str | None = None,
) -> str:
    """Add one event to the outbox in the caller's transaction; return its id (the
    ``webhook-id`` header and the receiver's idempotency key)."""
    values = new_event(
        account_id=account_id,
        event_type=event_type,
        url=url,
        payload=payload,
        ordering_key=ordering_key,
    )
    session.add(WebhookEvent(**values))
    return str(values["id"])
