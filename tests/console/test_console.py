"""The console in a real browser (Debian chromium via Playwright) against callmask on
a loopback port: login, a wrong key, tenancy, CSRF, record filters, retrying a failed
webhook delivery."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
from fastapi import FastAPI

from callmask.store.database import Database
from callmask.store.models import CallRecord, WebhookEvent
from callmask.webhooks.outbox import enqueue
from tests.conftest import ADMIN_KEY, Tenant, create_tenant
from tests.console.conftest import Console, csrf_of
from tests.support.receiver import Receiver, Reply


async def test_a_wrong_key_is_refused_and_an_account_key_logs_in(
    console: Console, acme: Tenant
) -> None:
    await console.login("not-a-key")
    assert await console.page.text_content("#login-error") == "That key is not valid."
    await console.goto("/console/dashboard")
    assert console.page.url.endswith("/console/login")  # still no session
    console.errors.clear()  # the refused login was a 401, which the browser reports

    await console.login(acme.api_key)
    await console.page.wait_for_selector("#who")
    assert console.page.url.endswith("/console/dashboard")
    assert acme.account_id in (await console.page.text_content("#who") or "")
    assert acme.api_key not in console.page.url
    cookies = await console.page.context.cookies()
    (session_cookie,) = [c for c in cookies if c["name"] == "callmask_console"]
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"
    assert acme.api_key not in session_cookie["value"]
    await console.page.wait_for_function("document.body.dataset.chartsDrawn === '1'")
    await console.shot("login-dashboard")
    assert console.errors == [], console.errors  # no CSP violation, no script error


async def test_csp_csrf_and_tenancy_over_http(
    served: str, console_app: tuple[FastAPI, Database], acme: Tenant
) -> None:
    _, database = console_app
    other = await create_tenant(database, "globex")
    other_call = await _add_records(database, other, 1)
    async with httpx.AsyncClient(base_url=served) as client:
        form = await client.get("/console/login")
        assert "script-src 'self'" in form.headers["content-security-policy"]
        assert "unsafe-inline" not in form.headers["content-security-policy"]
        # The login form itself needs its CSRF token.
        refused = await client.post("/console/login", data={"api_key": acme.api_key})
        assert refused.status_code == 403
        done = await client.post(
            "/console/login", data={"api_key": acme.api_key, "csrf_token": csrf_of(form.text)}
        )
        assert done.status_code == 303
        page = await client.get("/console/deliveries")
        assert page.status_code == 200
        # Another account's call is "not found", as in the APIs.
        assert (await client.get(f"/console/calls/{other_call[0]}")).status_code == 404
        # A POST without the session's token is refused.
        no_token = await client.post("/console/live/hangup", data={"call_id": "x"})
        assert no_token.status_code == 403
        wrong_origin = await client.post(
            "/console/logout",
            data={"csrf_token": csrf_of(page.text)},
            headers={"Origin": "http://evil.example"},
        )
        assert wrong_origin.status_code == 403


async def _add_records(database: Database, tenant: Tenant, count: int) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    ids = []
    async with database.session() as session:
        for i in range(count):
            invited = now - dt.timedelta(minutes=i * 3 + 1)
            answered = i % 3 != 0
            call_id = f"C{uuid.uuid4().hex[:12].upper()}"
            ids.append(call_id)
            session.add(
                CallRecord(
                    id=uuid.uuid4().hex,
                    call_id=call_id,
                    account_id=tenant.account_id,
                    direction="inbound" if i % 2 == 0 else "outbound",
                    service="number_masking",
                    did="+41793026731",
                    caller=f"+4179302{6000 + i}",
                    callee="+41793026785",
                    a_sip_call_id=f"sip-{i}",
                    invited_at=invited,
                    ringing_at=invited + dt.timedelta(milliseconds=120 + i),
                    answered_at=invited + dt.timedelta(seconds=2) if answered else None,
                    ended_at=invited + dt.timedelta(seconds=30 if answered else 5),
                    duration_s=28 if answered else 0,
                    status="answered" if answered else "busy",
                    hangup_cause="normal clearing" if answered else "busy",
                )
            )
    return ids


async def test_records_are_filtered_like_the_records_api(
    console: Console, console_app: tuple[FastAPI, Database], acme: Tenant
) -> None:
    _, database = console_app
    await _add_records(database, acme, 18)
    await console.login(acme.api_key)
    await console.page.wait_for_selector("#who")
    await console.goto("/console/records")
    assert await console.page.locator("tr.record").count() == 18
    await console.page.select_option("#f-direction", "outbound")
    await console.page.select_option("#f-call_type", "m")
    await console.page.click("#apply-filters")
    await console.page.wait_for_url("**direction=outbound**")
    # Outbound are the odd i, missed every third: i in 3, 9, 15.
    assert await console.page.locator("tr.record").count() == 3
    assert "3 records" in (await console.page.text_content("#record-count") or "")
    await console.shot("records-filtered")
    # A bad filter is the API's own 400 message.
    await console.goto("/console/records?operator=%3E")
    assert "operator needs a duration" in (await console.page.text_content("#error") or "")
    console.errors.clear()  # that 400 is reported by the browser too
    await console.login(ADMIN_KEY)
    await console.page.wait_for_selector("#node-metrics")
    await console.page.wait_for_function("document.body.dataset.chartsDrawn === '1'")
    await console.shot("dashboard")
    assert console.errors == [], console.errors


async def test_a_failed_delivery_is_retried_from_its_page(
    console: Console, console_app: tuple[FastAPI, Database], acme: Tenant, receiver: Receiver
) -> None:
    app, database = console_app
    receiver.answer("/hook", Reply(status=500, body="down"))
    receiver.always("/hook", Reply(status=200, body="ok"))
    async with database.session() as session:
        event_id = await enqueue(
            session,
            account_id=acme.account_id,
            event_type="call.ended",
            url=receiver.url("/hook"),
            payload={"callId": "C1"},
        )
    app.state.services.webhooks.notify()
    await receiver.wait_for("/hook", 1, timeout_s=10)
    await console.login(acme.api_key)
    await console.page.wait_for_selector("#who")
    await console.goto(f"/console/deliveries/{event_id}")
    for _ in range(50):  # the worker records the failed attempt
        if await console.page.locator("tr.attempt").count() == 1:
            break
        await asyncio.sleep(0.1)
        await console.page.reload()
    assert await console.page.text_content("#delivery-status") == "pending"
    await console.page.click("#retry")
    await console.page.wait_for_selector("#retried")
    await receiver.wait_for("/hook", 2, timeout_s=10)
    for _ in range(50):
        await console.page.reload()
        if await console.page.text_content("#delivery-status") == "delivered":
            break
        await asyncio.sleep(0.1)
    assert await console.page.text_content("#delivery-status") == "delivered"
    assert await console.page.locator("tr.attempt").count() == 2
    async with database.session() as session:
        event = await session.get(WebhookEvent, event_id)
        assert event is not None and event.status == "delivered"
    await console.shot("delivery-retried")
    assert console.errors == [], console.errors
