"""Acceptance (issue 11): the official ``twilio`` package, pointed at a running callmask
(uvicorn on a loopback port) the way a Twilio Proxy user points it, drives a whole
masking setup: a service, its pool of bought DIDs, sessions with two participants,
fetching and listing (over several pages, following the server's next-page URLs),
interactions, closing a session, deleting. On SQLite and PostgreSQL.

The SDK is pointed at callmask as its own source allows (twilio 9.13.0,
``twilio/rest/proxy/ProxyBase.py`` and ``twilio/base/domain.py``): the Proxy domain's
``base_url`` is a plain attribute that ``Domain.absolute_url`` joins with the
``v1/...`` path. Edge and region stay unset, or ``ClientBase.get_hostname`` rewrites the
host. The SDK is synchronous (requests), so its calls run in a thread while uvicorn
serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from callmask.node import node_app
from callmask.store.database import Database
from tests.conftest import Tenant, create_tenant, make_settings
from tests.support.receiver import free_port, serve_app
from tests.twilio.conftest import SID, buy

POOL = ("+14155550111", "+14155550112", "+14155550113")
RIDERS = ("+41793026741", "+41793026742", "+41793026743", "+41793026744", "+41793026745")
AGENTS = ("+41793026761", "+41793026762", "+41793026763", "+41793026764", "+41793026765")
DRIVER = "+41793026750"
PARTNER = "+41793026751"

T = TypeVar("T")


async def sdk(call: Callable[[], T]) -> T:
    """One SDK call, off the event loop that serves it."""
    return await asyncio.to_thread(call)


@pytest.fixture
async def served(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, Database, Tenant]]:
    for name in ("TWILIO_EDGE", "TWILIO_REGION", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    database = Database(db_url)
    try:
        tenant = await create_tenant(database, "rides")
        port = free_port()
        async with serve_app(node_app(make_settings(tmp_path, db_url), database=database), port):
            yield f"http://127.0.0.1:{port}", database, tenant
    finally:
        await database.close()


def twilio_client(base_url: str, account_sid: str, auth_token: str) -> Client:
    client = Client(account_sid, auth_token)
    client.proxy.base_url = f"{base_url}/twilio"
    return client


async def test_the_twilio_sdk_runs_a_masking_setup_against_callmask(
    served: tuple[str, Database, Tenant],
) -> None:
    base_url, _, tenant = served
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await buy(http, tenant, *POOL)
    client = twilio_client(base_url, tenant.account_id, tenant.api_key)
    proxy = client.proxy.v1

    service = await sdk(
        lambda: proxy.services.create(
            unique_name="rides", default_ttl=3600, callback_url="https://rides.example/proxy"
        )
    )
    assert SID["KS"].fullmatch(service.sid or ""), service.sid
    assert (service.unique_name, service.default_ttl) == ("rides", 3600)
    assert service.account_sid == tenant.account_id
    assert isinstance(service.date_created, dt.datetime)
    pool = proxy.services(service.sid)
    for number in POOL:
        added = await sdk(lambda number=number: pool.phone_numbers.create(phone_number=number))
        assert (added.phone_number, added.in_use, added.is_reserved) == (number, 0, False)
    numbers = await sdk(lambda: pool.phone_numbers.list(page_size=2))
    assert sorted(n.phone_number for n in numbers) == sorted(POOL)

    # The session of the acceptance: created empty, then its two participants.
    session = await sdk(lambda: pool.sessions.create(unique_name="Order #1234", mode="voice-only"))
    assert SID["KC"].fullmatch(session.sid or ""), session.sid
    assert (session.status, session.mode) == ("open", "voice-only")
    context = pool.sessions(session.sid)
    driver = await sdk(
        lambda: context.participants.create(identifier=DRIVER, friendly_name="Driver")
    )
    partner = await sdk(lambda: context.participants.create(identifier=PARTNER))
    assert driver.proxy_identifier in POOL and partner.proxy_identifier in POOL
    assert SID["KP"].fullmatch(driver.sid or ""), driver.sid
    fetched = await sdk(lambda: context.participants(driver.sid).fetch())
    assert (fetched.identifier, fetched.friendly_name) == (DRIVER, "Driver")
    assert fetched.proxy_identifier_sid == driver.proxy_identifier_sid
    people = await sdk(lambda: context.participants.list())
    assert sorted(p.identifier for p in people) == sorted([DRIVER, PARTNER])
    assert await sdk(lambda: context.interactions.list()) == []

    # More sessions, their participants given with the create, so the list pages.
    for rider, agent in zip(RIDERS, AGENTS, strict=True):
        created = await sdk(
            lambda rider=rider, agent=agent: pool.sessions.create(
                participants=[{"Identifier": rider}, {"Identifier": agent, "FriendlyName": "Agent"}]
            )
        )
        assert created.status == "open"
    pages = await sdk(lambda: list(pool.sessions.stream(page_size=2)))
    assert len(pages) == 1 + len(RIDERS)
    assert len({s.sid for s in pages}) == len(pages)
    first_page = await sdk(lambda: pool.sessions.page(page_size=2))
    assert first_page.next_page_url is not None
    assert first_page.next_page_url.startswith(f"{base_url}/twilio/v1/Services/{service.sid}/")
    limited = await sdk(lambda: pool.sessions.list(limit=3, page_size=2))
    assert len(limited) == 3

    fetched_session = await sdk(lambda: context.fetch())
    assert (fetched_session.sid, fetched_session.unique_name) == (session.sid, "Order #1234")
    closed = await sdk(lambda: context.update(status="closed"))
    assert closed.status == "closed"
    assert isinstance(closed.date_ended, dt.datetime)
    # in_use counts the open sessions each number serves: the rider sessions' alone.
    expected = dict.fromkeys(POOL, 0)
    for open_session in await sdk(lambda: pool.sessions.list()):
        if open_session.status == "closed":
            continue
        members = pool.sessions(open_session.sid).participants
        numbers_used = {p.proxy_identifier for p in await sdk(lambda m=members: m.list())}
        for number in numbers_used:
            expected[str(number)] += 1
    in_use = {n.phone_number: n.in_use for n in await sdk(lambda: pool.phone_numbers.list())}
    assert in_use == expected

    assert await sdk(lambda: context.delete()) is True
    with pytest.raises(TwilioRestException) as missing:
        await sdk(lambda: context.fetch())
    assert (missing.value.status, missing.value.code) == (404, 20404)
    assert await sdk(lambda: proxy.services(service.sid).delete()) is True
    assert await sdk(lambda: proxy.services.list()) == []


async def test_the_sdk_reports_callmasks_errors_as_twilio_exceptions(
    served: tuple[str, Database, Tenant],
) -> None:
    base_url, database, tenant = served
    wrong = twilio_client(base_url, tenant.account_id, "not-the-token")
    with pytest.raises(TwilioRestException) as refused:
        await sdk(lambda: wrong.proxy.v1.services("rides").fetch())
    assert (refused.value.status, refused.value.code) == (401, 20003)
    # A list reports a refused page as a TwilioException carrying the response.
    with pytest.raises(TwilioException) as refused_page:
        await sdk(lambda: wrong.proxy.v1.services.list())
    assert refused_page.value.args[1].status_code == 401

    client = twilio_client(base_url, tenant.account_id, tenant.api_key)
    proxy = client.proxy.v1
    with pytest.raises(TwilioRestException) as bad:
        await sdk(lambda: proxy.services.create(unique_name="rides", geo_match_level="planet"))
    assert (bad.value.status, bad.value.code) == (400, 20001)
    assert "GeoMatchLevel" in bad.value.msg

    other = await create_tenant(database, "globex")
    service = await sdk(lambda: proxy.services.create(unique_name="rides"))
    stranger = twilio_client(base_url, other.account_id, other.api_key)
    with pytest.raises(TwilioRestException) as hidden:
        await sdk(lambda: stranger.proxy.v1.services(service.sid).fetch())
    assert (hidden.value.status, hidden.value.code) == (404, 20404)
