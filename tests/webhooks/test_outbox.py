"""The outbox write: it belongs to the caller's transaction, and the body is fixed
once, at enqueue time."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import func, select

from callmask.errors import InvalidInput
from callmask.store.database import Database
from callmask.store.models import WebhookEvent
from callmask.webhooks.outbox import enqueue
from tests.conftest import Tenant


class CallRecordFailed(Exception):
    pass


async def count_events(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


async def test_an_event_is_stored_only_if_the_state_change_commits(
    database: Database, tenant: Tenant
) -> None:
    with pytest.raises(CallRecordFailed):
        async with database.session() as session:
            await enqueue(
                session,
                account_id=tenant.account_id,
                event_type="call.status",
                url="https://example.com/status",
                payload={"status": "answered"},
            )
            raise CallRecordFailed  # e.g. the CDR insert failed after the enqueue
    assert await count_events(database) == 0

    async with database.session() as session:
        event_id = await enqueue(
            session,
            account_id=tenant.account_id,
            event_type="call.status",
            url="https://example.com/status",
            payload={"status": "answered"},
            ordering_key="call-1",
        )
    async with database.session() as session:
        event = await session.get(WebhookEvent, event_id)
    assert event is not None
    assert (event.status, event.attempt_count, event.ordering_key) == ("pending", 0, "call-1")
    assert len(event_id) == 32 and int(event_id, 16) >= 0


async def test_the_body_is_compact_ascii_json_fixed_at_enqueue(
    database: Database, tenant: Tenant
) -> None:
    payload = {"from": "+91 98765", "name": "Zoë", "duration": 7, "nested": {"a": [1, 2]}}
    async with database.session() as session:
        event_id = await enqueue(
            session,
            account_id=tenant.account_id,
            event_type="call.status",
            url="https://example.com/status",
            payload=payload,
        )
    payload["duration"] = 99  # later changes to the dict do not reach the stored body
    async with database.session() as session:
        event = await session.get(WebhookEvent, event_id)
    assert event is not None
    assert event.payload == (
        '{"from":"+91 98765","name":"Zo\\u00eb","duration":7,"nested":{"a":[1,2]}}'
    )


@pytest.mark.parametrize(
    ("payload", "event_type"),
    [
        ({"x": math.nan}, "call.status"),
        ({"x": object()}, "call.status"),
        ({"x": 1}, ""),
        ({"x": 1}, "t" * 65),
    ],
)
async def test_an_event_that_cannot_be_sent_is_refused_at_enqueue(
    database: Database, tenant: Tenant, payload: dict[str, object], event_type: str
) -> None:
    with pytest.raises(InvalidInput):
        async with database.session() as session:
            await enqueue(
                session,
                account_id=tenant.account_id,
                event_type=event_type,
                url="https://example.com/status",
                payload=payload,
            )
    assert await count_events(database) == 0


async def test_events_enqueued_back_to_back_keep_their_order(
    database: Database, tenant: Tenant
) -> None:
    async with database.session() as session:
        ids = [
            await enqueue(
                session,
                account_id=tenant.account_id,
                event_type="call.status",
                url="https://example.com/status",
                payload={"n": n},
                ordering_key="call-1",
            )
            for n in range(50)
        ]
    async with database.session() as session:
        stored = (
            await session.scalars(
                select(WebhookEvent.id).order_by(WebhookEvent.created_at, WebhookEvent.id)
            )
        ).all()
    assert list(stored) == ids
