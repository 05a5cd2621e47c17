"""Per-account webhook API (``/webhooks/1/...``): the delivery log with its attempts,
re-sending one delivery, and the signing secrets (list, rotate, revoke).

Errors take the Infobip shape like every path outside ``/v1/``. Another account's
delivery or secret is "not found". Times are ISO-8601 in UTC; a filter time without
a zone is read as UTC.

Secrets: ``GET`` shows the value of each active secret, because the account's first
secret is made with the account and this is where its owner reads it; the API key
that can read it can also rotate it, so hiding it would protect nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, BeforeValidator

from callmask.api.deps import CurrentAccount, ServicesDep, SessionDep
from callmask.errors import InvalidInput
from callmask.store.models import WebhookAttempt, WebhookEvent, WebhookSecret
from callmask.webhooks.outbox import EventStatus
from callmask.webhooks.repository import Deliveries, Secrets, as_utc

router = APIRouter(prefix="/webhooks/1", tags=["webhooks"])


class AttemptOut(BaseModel):
    attemptedAt: dt.datetime
    statusCode: int | None
    latencyMs: int
    responseExcerpt: str | None
    error: str | None
    outcome: str

    @classmethod
    def of(cls, attempt: WebhookAttempt) -> AttemptOut:
        return cls(
            attemptedAt=as_utc(attempt.attempted_at),
            statusCode=attempt.status_code,
            latencyMs=attempt.latency_ms,
            responseExcerpt=attempt.response_excerpt,
            error=attempt.error,
            outcome=attempt.outcome,
        )


class DeliveryOut(BaseModel):
    id: str
    eventType: str
    url: str
    status: EventStatus
    orderingKey: str | None
    attemptCount: int
    createdAt: dt.datetime
    nextAttemptAt: dt.datetime | None  # only while pending
    deliveredAt: dt.datetime | None
    lastError: str | None

    @classmethod
    def of(cls, event: WebhookEvent) -> DeliveryOut:
        status = EventStatus(event.status)
        return cls(
            id=event.id,
            eventType=event.event_type,
            url=event.url,
            status=status,
            orderingKey=event.ordering_key,
            attemptCount=event.attempt_count,
            createdAt=as_utc(event.created_at),
            nextAttemptAt=as_utc(event.next_attempt_at) if status is EventStatus.PENDING else None,
            deliveredAt=as_utc(event.delivered_at) if event.delivered_at else None,
            lastError=event.last_error,
        )


class DeliveryDetailOut(DeliveryOut):
    payload: Any
    attempts: list[AttemptOut]


class DeliveryListOut(BaseModel):
    deliveries: list[DeliveryOut]
    deliveryCount: int


class SecretOut(BaseModel):
    id: str
    secret: str | None  # None once revoked
    active: bool
    createdAt: dt.datetime
    revokedAt: dt.datetime | None

    @classmethod
    def of(cls, row: WebhookSecret) -> SecretOut:
        active = row.revoked_at is None
        return cls(
            id=row.id,
            secret=row.secret if active else None,
            active=active,
            createdAt=as_utc(row.created_at),
            revokedAt=as_utc(row.revoked_at) if row.revoked_at else None,
        )


class SecretListOut(BaseModel):
    secrets: list[SecretOut]


Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
# The row offset (page x limit) must fit the store's 64-bit integers: a page past that
# was a 500 (SQLite OverflowError). Nine digits, as the Tata records' page.
MAX_PAGE = 999_999_999
Page = Annotated[int, Query(ge=0, le=MAX_PAGE, description="page number, from 0")]


def _iso_8601_only(value: object) -> object:
    # pydantic reads a number (2026, 20261125, 4.8e-225) as Unix seconds, so "from=2026"
    # or the basic-format "20261125" would silently filter from 1970; the filters are
    # ISO-8601, as documented, and no ISO-8601 date-time reads as a number.
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("must be an ISO-8601 date-time, e.g. 2026-11-25T10:00:00Z")
    return value


IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_8601_only)]


@router.get("/deliveries")
async def list_deliveries(
    session: SessionDep,
    account: CurrentAccount,
    status: EventStatus | None = None,
    event_type: Annotated[str | None, Query(alias="eventType", max_length=64)] = None,
    created_from: Annotated[
        IsoDateTime | None, Query(alias="from", description="created at or after (ISO-8601)")
    ] = None,
    created_to: Annotated[
        IsoDateTime | None, Query(alias="to", description="created before (ISO-8601)")
    ] = None,
    limit: Limit = 50,
    page: Page = 0,
) -> DeliveryListOut:
    if created_from and created_to and as_utc(created_from) > as_utc(created_to):
        raise InvalidInput("'from' is later than 'to'")
    rows, total = await Deliveries(session).search(
        account_id=account.id,
        status=status,
        event_type=event_type,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        offset=page * limit,
    )
    return DeliveryListOut(deliveries=[DeliveryOut.of(e) for e in rows], deliveryCount=total)


@router.get("/deliveries/{event_id}")
async def get_delivery(
    event_id: str, session: SessionDep, account: CurrentAccount
) -> DeliveryDetailOut:
    deliveries = Deliveries(session)
    event = await deliveries.get(event_id, account_id=account.id)
    attempts = await deliveries.attempts(event.id)
    return DeliveryDetailOut(
        **DeliveryOut.of(event).model_dump(),
        payload=json.loads(event.payload),
        attempts=[AttemptOut.of(a) for a in attempts],
    )


@router.post("/deliveries/{event_id}/retry")
async def retry_delivery(
    event_id: str, session: SessionDep, account: CurrentAccount, services: ServicesDep
) -> DeliveryOut:
    """Send the event again now, whatever its status (delivered and dead included)."""
    out = DeliveryOut.of(await Deliveries(session).retry(event_id, account_id=account.id))
    # Committed before the worker is woken, or it would look before the row is due. The
    # request's own session, not a second one: a request that holds one pooled
    # connection and waits for another waits on itself when the pool is exhausted
    # (SQLite's pool is a single connection).
    await session.commit()
    services.webhooks.notify()
    return out


@router.get("/secrets")
async def list_secrets(session: SessionDep, account: CurrentAccount) -> SecretListOut:
    return SecretListOut(
        secrets=[SecretOut.of(s) for s in await Secrets(session).of_account(account.id)]
    )


@router.post("/secrets", status_code=201)
async def add_secret(session: SessionDep, account: CurrentAccount) -> SecretOut:
    """Rotation, step one: a new secret that signs alongside the old ones until they
    are revoked."""
    return SecretOut.of(await Secrets(session).add(account.id))


@router.delete("/secrets/{secret_id}", status_code=204)
async def revoke_secret(secret_id: str, session: SessionDep, account: CurrentAccount) -> Response:
    await Secrets(session).revoke(account.id, secret_id)
    return Response(status_code=204)
