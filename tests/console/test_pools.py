"""The console's pool view in a real browser: an account whose two-number pool is
fully used and turned a third session away sees 2 in use, 0 free, the exhaustion event
and the chart of the last day; another account sees no such pool."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI

from callmask.console import pools
from callmask.store.database import Database
from callmask.store.models import ProxyPoolExhaustion, ProxyService
from tests.conftest import Tenant, create_tenant
from tests.console.conftest import Console
from tests.twilio.conftest import buy, count, twilio_auth

SERVICES = "/twilio/v1/Services"
POOL = ("+41793026751", "+41793026752")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def a_full_pool(served: str, tenant: Tenant) -> str:
    """A pool of two numbers, both held by two sessions of one customer and agent, and a
    third session refused (80208); returns the service sid."""
    async with httpx.AsyncClient(base_url=served, auth=twilio_auth(tenant)) as client:
        await buy(client, tenant, *POOL)
        service = (await client.post(SERVICES, data={"UniqueName": "clinic"})).json()
        for number in POOL:
            added = await client.post(
                service["links"]["phone_numbers"], data={"PhoneNumber": number}
            )
            assert added.status_code == 201, added.text
        pair = [
            ("Participants", json.dumps({"Identifier": "+41793026001"})),
            ("Participants", json.dumps({"Identifier": "+41793026002"})),
        ]
        for expected in (201, 201, 400):
            reply = await client.post(
                service["links"]["sessions"], content=urlencode(pair), headers=FORM
            )
            assert reply.status_code == expected, reply.text
        assert reply.json()["code"] == 80208
        return str(service["sid"])


async def test_a_used_up_pool_shows_its_numbers_in_use_and_its_exhaustion(
    console: Console, served: str, console_app: tuple[FastAPI, Database], acme: Tenant
) -> None:
    _, database = console_app
    service_sid = await a_full_pool(served, acme)
    assert await count(database, ProxyPoolExhaustion) == 1  # the refused create, once

    await console.login(acme.api_key)
    await console.page.wait_for_selector("#who")
    await console.goto("/console/pools")
    row = console.page.locator("#pools tbody tr")
    assert await row.count() == 1
    assert await row.locator(".in-use").text_content() == "2"
    assert await row.locator(".free").text_content() == "0"
    assert await row.locator(".exhaustions").text_content() == "1"
    await row.locator("a").click()
    await console.page.wait_for_selector("body[data-charts-drawn='1'] #chart-pool canvas")
    assert await console.page.text_content("#pool-sessions") == "2"
    exhaustion = console.page.locator("#exhaustions tbody tr")
    assert await exhaustion.count() == 1
    assert "80208" in (await exhaustion.text_content() or "")
    assert await console.page.locator("#chart-pool canvas").count() >= 1
    await console.shot("pool")
    assert console.errors == [], console.errors

    other = await create_tenant(database, "globex")
    async with httpx.AsyncClient(base_url=served) as client:
        form = await client.get("/console/login")
        token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        await client.post("/console/login", data={"api_key": other.api_key, "csrf_token": token})
        listing = await client.get("/console/pools")
        assert service_sid not in listing.text
        assert (await client.get(f"/console/pools/{service_sid}")).status_code == 404
        assert (await client.get(f"/console/pools/{service_sid}/data")).status_code == 404


async def test_the_history_counts_a_number_once_per_bucket_and_frees_it_at_the_end(
    served: str, console_app: tuple[FastAPI, Database], acme: Tenant
) -> None:
    _, database = console_app
    service_sid = await a_full_pool(served, acme)
    async with database.session() as session:
        service = await session.get(ProxyService, service_sid)
        assert service is not None
        now = dt.datetime.now(dt.UTC)
        history = await pools.history_of(session, service, now=now)
        later = await pools.history_of(session, service, now=now + dt.timedelta(hours=25))
    assert history.in_use[-1] == 2 and history.free[-1] == 0
    assert max(history.in_use) == 2  # two sessions per number would still count once
    assert len(history.times) == 144 and not history.capped
    # Still open a day later: held in every bucket since.
    assert later.in_use == [2] * 144
