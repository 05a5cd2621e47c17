"""A session call's interaction is written with its CDR, in the call ledger's batch:
the interaction row, the session's sliding ttl, the service's event; a session deleted
while its call was up leaves the CDR whole and no interaction (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import delete, func, select

from callmask.calls.ledger import CallClosed, CallLedger
from callmask.calls.outcome import CallStatus
from callmask.sessions.calls import (
    INTERACTION,
    SessionRoute,
    find_session_route,
    interaction_kept,
    new_interaction_sid,
)
from callmask.sessions.lifetime import as_utc
from callmask.store.database import Database
from callmask.store.models import CallRecord, ProxyInteraction, ProxySession, WebhookEvent
from callmask.store.postdial import PostDialReader
from tests.calls.test_ledger import running, summary_of
from tests.conftest import Tenant
from tests.sessions.test_sessions import CUSTOMER, T0, held, make_pool, open_session

STARTED = T0 + dt.timedelta(seconds=100)


async def a_call(database: Database, *, ttl: int = 600) -> tuple[SessionRoute, str]:
    reader = PostDialReader(database)
    try:
        did = (await held(database, CUSTOMER))[0]
        route = await find_session_route(reader, CUSTOMER, did)
    finally:
        reader.close()
    assert isinstance(route, SessionRoute) and route.ttl == ttl
    return route, new_interaction_sid()


def call_closed(tenant: Tenant, route: SessionRoute, interaction_sid: str) -> CallClosed:
    summary = summary_of(tenant.account_id)
    summary.status = CallStatus.ANSWERED
    kept = interaction_kept(
        route,
        interaction_sid,
        call_id=summary.public_call_id,
        started_at=STARTED,
        inbound_status="completed",
        outbound_status="completed",
        duration_s=30,
        now=STARTED + dt.timedelta(seconds=31),
    )
    return CallClosed(summary.record(), None, was_open=False, kept=kept)


async def test_a_session_call_leaves_its_interaction_and_slides_the_ttl_with_its_cdr(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant, callback_url="https://x.test/cb")
    session_sid = await open_session(database, tenant, service_sid, ttl=600)
    route, interaction_sid = await a_call(database)
    ledger = CallLedger(database)
    async with running(ledger):
        ledger.write(call_closed(tenant, route, interaction_sid))
        await asyncio.wait_for(ledger.drained(), timeout=10)
    async with database.session() as session:
        interaction = await session.get(ProxyInteraction, interaction_sid)
        proxy_session = await session.get(ProxySession, session_sid)
        events = (await session.scalars(select(WebhookEvent.event_type))).all()
        records = await session.scalar(select(func.count()).select_from(CallRecord))
    assert interaction is not None and interaction.session_sid == session_sid
    assert (interaction.inbound_resource_status, interaction.duration_s) == ("completed", 30)
    assert proxy_session is not None and proxy_session.status == "in-progress"
    assert as_utc(proxy_session.date_last_interaction) == STARTED
    assert as_utc(proxy_session.expires_at) == STARTED + dt.timedelta(seconds=600)
    assert list(events) == [INTERACTION] and records == 1


async def test_a_fixed_expiry_earlier_than_the_ttl_end_stays_the_expiry(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant)
    date_expiry = STARTED + dt.timedelta(seconds=60)
    session_sid = await open_session(
        database, tenant, service_sid, ttl=600, date_expiry=date_expiry
    )
    route, interaction_sid = await a_call(database)
    ledger = CallLedger(database)
    async with running(ledger):
        ledger.write(call_closed(tenant, route, interaction_sid))
        await asyncio.wait_for(ledger.drained(), timeout=10)
    async with database.session() as session:
        proxy_session = await session.get(ProxySession, session_sid)
        events = await session.scalar(select(func.count()).select_from(WebhookEvent))
    assert proxy_session is not None
    assert as_utc(proxy_session.expires_at) == date_expiry
    assert events == 0  # the service has no CallbackUrl


async def test_a_session_deleted_during_its_call_leaves_the_cdr_and_no_interaction(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant)
    session_sid = await open_session(database, tenant, service_sid, ttl=600)
    route, interaction_sid = await a_call(database)
    async with database.session() as session:
        await session.execute(delete(ProxySession).where(ProxySession.sid == session_sid))
    ledger = CallLedger(database)
    async with running(ledger):
        ledger.write(call_closed(tenant, route, interaction_sid))
        await asyncio.wait_for(ledger.drained(), timeout=10)
    async with database.session() as session:
        interactions = await session.scalar(select(func.count()).select_from(ProxyInteraction))
        records = await session.scalar(select(func.count()).select_from(CallRecord))
    assert (interactions, records) == (0, 1)
