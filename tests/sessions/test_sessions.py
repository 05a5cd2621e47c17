"""Sessions over a pool as a Twilio Proxy user drives them, below the API: allocation,
exhaustion, tenancy, the pool/action exclusion, lifetime, and the call path's lookup."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from callmask.errors import Conflict
from callmask.phone import region_of
from callmask.sessions import errors
from callmask.sessions.calls import PoolRoute, SessionRoute, find_session_route
from callmask.sessions.lifetime import expire_due
from callmask.sessions.repository import (
    ParticipantRequest,
    PoolNumbers,
    Services,
    Sessions,
)
from callmask.store.database import Database
from callmask.store.models import ProxyParticipant, ProxySession, WebhookEvent
from callmask.store.postdial import PostDialReader
from callmask.store.repositories import Actions, Numbers
from tests.conftest import Tenant

CUSTOMER = "+41793026001"
AGENT = "+41793026002"
POOL = ["+41793026731", "+41793026732", "+41793026733"]
T0 = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


async def make_pool(
    database: Database, tenant: Tenant, numbers: list[str] = POOL, **service: object
) -> str:
    async with database.session() as session:
        created = await Services(session).create(
            tenant.account_id,
            unique_name="rides",
            **service,  # type: ignore[arg-type]
        )
        for e164 in numbers:
            await Numbers(session).add_to_inventory(e164, region_of(e164), tenant.account_id)
            await PoolNumbers(session).add(tenant.account_id, created.sid, phone_number=e164)
        return created.sid


def pair(a: str = CUSTOMER, b: str = AGENT) -> list[ParticipantRequest]:
    return [ParticipantRequest(identifier=a), ParticipantRequest(identifier=b)]


async def open_session(database: Database, tenant: Tenant, service_sid: str, **kw: object) -> str:
    async with database.session() as session:
        created = await Sessions(session).create(
            tenant.account_id,
            service_sid,
            participants=pair(),
            now=T0,
            **kw,  # type: ignore[arg-type]
        )
        return created.sid


async def held(database: Database, identifier: str) -> list[str]:
    async with database.session() as session:
        rows = await session.scalars(
            select(ProxyParticipant.proxy_identifier).where(
                ProxyParticipant.identifier == identifier, ProxyParticipant.active.is_(True)
            )
        )
        return list(rows.all())


async def test_a_pair_gets_a_new_number_for_each_open_session_until_the_pool_is_used_up(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant)
    for _ in POOL:
        await open_session(database, tenant, service_sid)
    assert sorted(await held(database, CUSTOMER)) == sorted(POOL)
    with pytest.raises(errors.ProxyError) as refused:
        await open_session(database, tenant, service_sid)
    assert refused.value.code == errors.ALL_NUMBERS_IN_USE
    async with database.session() as session:
        sessions = await session.scalar(select(func.count()).select_from(ProxySession))
    assert sessions == len(POOL), "the refused session left nothing behind"


async def test_closing_a_session_frees_its_number_and_tells_the_callback(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant, POOL[:1], callback_url="https://x.test/cb")
    first = await open_session(database, tenant, service_sid)
    async with database.session() as session:
        await Sessions(session).update(tenant.account_id, service_sid, first, status="closed")
    await open_session(database, tenant, service_sid)
    async with database.session() as session:
        events = (await session.scalars(select(WebhookEvent.event_type))).all()
    assert events == ["proxy.session.closed"]


async def test_reserved_numbers_are_only_given_when_asked_for(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant, POOL[:1])
    async with database.session() as session:
        await PoolNumbers(session).update(tenant.account_id, service_sid, POOL[0], is_reserved=True)
    with pytest.raises(errors.ProxyError) as refused:
        await open_session(database, tenant, service_sid)
    assert refused.value.code == errors.NO_UNRESERVED_NUMBER
    async with database.session() as session:
        created = await Sessions(session).create(
            tenant.account_id,
            service_sid,
            participants=[
                ParticipantRequest(identifier=CUSTOMER, proxy_identifier=POOL[0]),
                ParticipantRequest(identifier=AGENT, proxy_identifier=POOL[0]),
            ],
        )
    assert sorted(await held(database, CUSTOMER) + await held(database, AGENT)) == [POOL[0]] * 2
    assert created.status == "open"


async def test_prefer_sticky_gives_the_number_an_identifier_had_before(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant)
    first = await open_session(database, tenant, service_sid)
    (before,) = await held(database, CUSTOMER)
    async with database.session() as session:
        await Sessions(session).update(tenant.account_id, service_sid, first, status="closed")
    for _ in range(5):
        second = await open_session(database, tenant, service_sid)
        assert await held(database, CUSTOMER) == [before]
        async with database.session() as session:
            await Sessions(session).update(tenant.account_id, service_sid, second, status="closed")


async def test_bad_input_and_other_accounts_change_nothing(
    database: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant)
    async with database.session() as session:
        other_service = (
            await Services(session).create(other_tenant.account_id, unique_name="o")
        ).sid
    # Each refusal in its own transaction, as each API request is: it rolls back.
    with pytest.raises(errors.ProxyError) as other:
        async with database.session() as session:
            await Services(session).get(other_tenant.account_id, service_sid)
    assert other.value.status == 404
    with pytest.raises(errors.ProxyError) as malformed:
        async with database.session() as session:
            await Sessions(session).create(
                tenant.account_id, service_sid, participants=pair("+4179", AGENT)
            )
    assert malformed.value.code == errors.INVALID_PARAMETER
    with pytest.raises(errors.ProxyError) as behaviour:
        async with database.session() as session:
            await Services(session).create(
                tenant.account_id, unique_name="x", number_selection_behavior="sticky"
            )
    assert behaviour.value.code == errors.INVALID_PARAMETER
    with pytest.raises(errors.ProxyError) as not_ours:
        async with database.session() as session:
            await PoolNumbers(session).add(
                other_tenant.account_id, other_service, phone_number=POOL[0]
            )
    assert not_ours.value.code == errors.INVALID_PARAMETER
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(ProxySession)) == 0


async def test_a_did_is_in_a_pool_or_has_an_action_never_both(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant, POOL[:1])
    async with database.session() as session:
        number = await Numbers(session).by_e164(POOL[0])
        assert number is not None
        with pytest.raises(Conflict, match="never both"):
            await Actions(session).create(
                tenant.account_id,
                number.number_key,
                type_="VOICE_NUMBER_MASKING",
                callback_url="https://x.test/cb",
                status_url=None,
            )
    extra = "+41793026739"
    async with database.session() as session:
        added = await Numbers(session).add_to_inventory(extra, "CH", tenant.account_id)
        await Actions(session).create(
            tenant.account_id,
            added.number_key,
            type_="VOICE_NUMBER_MASKING",
            callback_url="https://x.test/cb",
            status_url=None,
        )
        with pytest.raises(errors.ProxyError) as both:
            await PoolNumbers(session).add(tenant.account_id, service_sid, phone_number=extra)
        assert both.value.status == 409


async def test_ttl_slides_with_interactions_and_date_expiry_is_absolute(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant, callback_url="https://x.test/cb")
    sliding = await open_session(database, tenant, service_sid, ttl=600)
    fixed = await open_session(
        database, tenant, service_sid, date_expiry=T0 + dt.timedelta(seconds=300)
    )
    route = await find_session_route(
        PostDialReader(database), CUSTOMER, (await held(database, CUSTOMER))[0]
    )
    assert route is not None
    assert await expire_due(database, now=T0 + dt.timedelta(seconds=299)) == 0
    assert await expire_due(database, now=T0 + dt.timedelta(seconds=301)) == 1
    assert await expire_due(database, now=T0 + dt.timedelta(seconds=601)) == 1
    async with database.session() as session:
        statuses = {
            s.sid: (s.status, s.closed_reason)
            for s in (await session.scalars(select(ProxySession)))
        }
        events = await session.scalar(select(func.count()).select_from(WebhookEvent))
    assert statuses == {sliding: ("closed", "expired"), fixed: ("closed", "expired")}
    assert events == 2
    assert await held(database, CUSTOMER) == []


async def test_an_inbound_call_finds_exactly_its_session(
    database: Database, tenant: Tenant
) -> None:
    service_sid = await make_pool(database, tenant, out_of_session_callback_url=None)
    first = await open_session(database, tenant, service_sid)
    await open_session(database, tenant, service_sid)
    async with database.session() as session:
        participants = (
            await session.scalars(
                select(ProxyParticipant).where(ProxyParticipant.session_sid == first)
            )
        ).all()
        mine = next(p for p in participants if p.identifier == CUSTOMER)
        theirs = next(p for p in participants if p.identifier == AGENT)
    reader = PostDialReader(database)
    route = await find_session_route(reader, CUSTOMER, mine.proxy_identifier)
    stranger = await find_session_route(reader, "+41793026099", mine.proxy_identifier)
    elsewhere = await find_session_route(reader, CUSTOMER, "+41793026799")
    reader.close()
    assert isinstance(route, SessionRoute)
    assert (route.session_sid, route.callee_identifier) == (first, AGENT)
    assert route.callee_proxy_identifier == theirs.proxy_identifier
    assert isinstance(stranger, PoolRoute) and stranger.service_sid == service_sid
    assert elsewhere is None
