"""The per-account webhook API (/webhooks/1/...), /metrics, and the worker the app's
lifespan starts."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import aiohttp
import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook

from callmask.api.deps import Services
from callmask.errors import Conflict
from callmask.node import node_app
from callmask.store.database import Database
from callmask.webhooks.repository import MAX_ACTIVE_SECRETS, Secrets
from tests.conftest import ADMIN_KEY, Tenant, make_settings
from tests.support.receiver import Receiver, Reply
from tests.webhooks.conftest import enqueue_one, event_row, make_worker, status_is, wait_until

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
async def three_deliveries(
    database: Database, http: aiohttp.ClientSession, receiver: Receiver, tenant: Tenant
) -> dict[str, str]:
    """One delivered, one dead, one pending (waiting for a retry), in that order."""
    receiver.answer("/ok", Reply(200, "thanks"))
    receiver.answer("/gone", Reply(410, "no such hook"))
    receiver.answer("/flaky", Reply(500, "try later"))
    ids = {
        "delivered": await enqueue_one(database, tenant, receiver.url("/ok"), {"n": 1}),
        "dead": await enqueue_one(
            database, tenant, receiver.url("/gone"), {"n": 2}, event_type="call.record"
        ),
        "pending": await enqueue_one(database, tenant, receiver.url("/flaky"), {"n": 3}),
    }
    worker = make_worker(database, http, schedule=(3600,))
    assert await worker.run_once() == 3
    return ids


async def test_a_customer_lists_and_filters_its_deliveries(
    client: httpx.AsyncClient, tenant: Tenant, three_deliveries: dict[str, str]
) -> None:
    response = await client.get("/webhooks/1/deliveries", headers=tenant.basic)
    assert response.status_code == 200
    body = response.json()
    assert body["deliveryCount"] == 3
    # Newest first.
    assert [d["id"] for d in body["deliveries"]] == [
        three_deliveries["pending"],
        three_deliveries["dead"],
        three_deliveries["delivered"],
    ]
    by_id = {d["id"]: d for d in body["deliveries"]}
    pending = by_id[three_deliveries["pending"]]
    assert (pending["status"], pending["attemptCount"], pending["lastError"]) == (
        "pending",
        1,
        "HTTP 500",
    )
    assert pending["nextAttemptAt"] is not None
    delivered = by_id[three_deliveries["delivered"]]
    assert delivered["deliveredAt"] is not None and delivered["nextAttemptAt"] is None

    for query, expected in [
        ({"status": "dead"}, ["dead"]),
        ({"status": "delivered"}, ["delivered"]),
        ({"eventType": "call.record"}, ["dead"]),
        ({"eventType": "call.status", "status": "pending"}, ["pending"]),
        ({"limit": 1, "page": 1}, ["dead"]),
    ]:
        response = await client.get("/webhooks/1/deliveries", params=query, headers=tenant.basic)
        assert response.status_code == 200, query
        assert [d["id"] for d in response.json()["deliveries"]] == [
            three_deliveries[name] for name in expected
        ], query


async def test_a_customer_filters_deliveries_by_time(
    client: httpx.AsyncClient, tenant: Tenant, three_deliveries: dict[str, str]
) -> None:
    listing = (await client.get("/webhooks/1/deliveries", headers=tenant.basic)).json()
    created = {d["id"]: d["createdAt"] for d in listing["deliveries"]}
    dead_at = created[three_deliveries["dead"]]
    response = await client.get(
        "/webhooks/1/deliveries", params={"from": dead_at}, headers=tenant.basic
    )
    assert {d["id"] for d in response.json()["deliveries"]} == {
        three_deliveries["dead"],
        three_deliveries["pending"],
    }
    response = await client.get(
        "/webhooks/1/deliveries", params={"to": dead_at}, headers=tenant.basic
    )
    assert [d["id"] for d in response.json()["deliveries"]] == [three_deliveries["delivered"]]
    # The same instant written in another zone selects the same rows.
    in_kolkata = dt.datetime.fromisoformat(dead_at).astimezone(
        dt.timezone(dt.timedelta(hours=5, minutes=30))
    )
    response = await client.get(
        "/webhooks/1/deliveries", params={"to": in_kolkata.isoformat()}, headers=tenant.basic
    )
    assert [d["id"] for d in response.json()["deliveries"]] == [three_deliveries["delivered"]]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "lost"},
        {"from": "yesterday"},
        {"to": "2026-13-45T00:00:00Z"},
        {"limit": "0"},
        {"limit": "5000"},
        {"page": "-1"},
        {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
    ],
)
async def test_bad_filters_are_a_400_in_infobip_shape(
    client: httpx.AsyncClient, tenant: Tenant, query: dict[str, str]
) -> None:
    response = await client.get("/webhooks/1/deliveries", params=query, headers=tenant.basic)
    assert response.status_code == 400, query
    assert response.json()["requestError"]["serviceException"]["messageId"] == "BAD_REQUEST"


async def test_a_customer_sees_every_attempt_of_a_delivery(
    client: httpx.AsyncClient, tenant: Tenant, three_deliveries: dict[str, str]
) -> None:
    event_id = three_deliveries["pending"]
    response = await client.get(f"/webhooks/1/deliveries/{event_id}", headers=tenant.basic)
    assert response.status_code == 200
    body = response.json()
    assert body["payload"] == {"n": 3}
    [attempt] = body["attempts"]
    assert attempt["statusCode"] == 500
    assert attempt["outcome"] == "retry"
    assert attempt["responseExcerpt"] == "try later"
    assert attempt["latencyMs"] >= 0
    assert dt.datetime.fromisoformat(attempt["attemptedAt"]).tzinfo is not None


async def test_a_customer_resends_a_dead_delivery(
    client: httpx.AsyncClient,
    database: Database,
    http: aiohttp.ClientSession,
    receiver: Receiver,
    tenant: Tenant,
    three_deliveries: dict[str, str],
) -> None:
    event_id = three_deliveries["dead"]
    response = await client.post(f"/webhooks/1/deliveries/{event_id}/retry", headers=tenant.basic)
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    receiver.answer("/gone", Reply(200))
    assert await make_worker(database, http).run_once() == 1  # only that one is due
    assert (await event_row(database, event_id)).status == "delivered"
    detail = (await client.get(f"/webhooks/1/deliveries/{event_id}", headers=tenant.basic)).json()
    assert [a["outcome"] for a in detail["attempts"]] == ["dead", "delivered"]
    assert [r.headers["webhook-id"] for r in receiver.on("/gone")] == [event_id, event_id]


async def test_a_delivered_event_can_be_sent_again_too(
    client: httpx.AsyncClient,
    database: Database,
    http: aiohttp.ClientSession,
    receiver: Receiver,
    tenant: Tenant,
    three_deliveries: dict[str, str],
) -> None:
    event_id = three_deliveries["delivered"]
    response = await client.post(f"/webhooks/1/deliveries/{event_id}/retry", headers=tenant.basic)
    assert response.json()["deliveredAt"] is None
    assert await make_worker(database, http).run_once() == 1
    assert len(receiver.on("/ok")) == 2


async def test_another_accounts_deliveries_are_not_found(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    three_deliveries: dict[str, str],
) -> None:
    event_id = three_deliveries["dead"]
    listing = await client.get("/webhooks/1/deliveries", headers=other_tenant.basic)
    assert listing.json() == {"deliveries": [], "deliveryCount": 0}
    shown = await client.get(f"/webhooks/1/deliveries/{event_id}", headers=other_tenant.basic)
    assert shown.status_code == 404
    retried = await client.post(
        f"/webhooks/1/deliveries/{event_id}/retry", headers=other_tenant.basic
    )
    assert retried.status_code == 404
    assert retried.json()["requestError"]["serviceException"]["messageId"] == "NOT_FOUND"
    missing = await client.get("/webhooks/1/deliveries/nope", headers=tenant.basic)
    assert missing.status_code == 404


async def test_the_webhook_api_needs_credentials(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/webhooks/1/deliveries"),
        ("GET", "/webhooks/1/deliveries/x"),
        ("POST", "/webhooks/1/deliveries/x/retry"),
        ("GET", "/webhooks/1/secrets"),
        ("POST", "/webhooks/1/secrets"),
        ("DELETE", "/webhooks/1/secrets/x"),
    ]:
        response = await client.request(method, path)
        assert response.status_code == 401, path
        wrong = await client.request(method, path, headers={"Authorization": "App wrong"})
        assert wrong.status_code == 401, path


async def test_a_customer_rotates_its_signing_secret(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    listing = (await client.get("/webhooks/1/secrets", headers=tenant.basic)).json()
    [initial] = listing["secrets"]
    assert initial["active"] and initial["secret"].startswith("whsec_")

    created = await client.post("/webhooks/1/secrets", headers=tenant.basic)
    assert created.status_code == 201
    new = created.json()
    assert new["secret"].startswith("whsec_") and new["secret"] != initial["secret"]
    listing = (await client.get("/webhooks/1/secrets", headers=tenant.basic)).json()
    assert [s["id"] for s in listing["secrets"]] == [initial["id"], new["id"]]

    # Another account can neither see nor revoke it.
    theirs = (await client.get("/webhooks/1/secrets", headers=other_tenant.basic)).json()
    assert initial["id"] not in {s["id"] for s in theirs["secrets"]}
    foreign = await client.delete(
        f"/webhooks/1/secrets/{initial['id']}", headers=other_tenant.basic
    )
    assert foreign.status_code == 404

    revoked = await client.delete(f"/webhooks/1/secrets/{initial['id']}", headers=tenant.basic)
    assert revoked.status_code == 204
    listing = (await client.get("/webhooks/1/secrets", headers=tenant.basic)).json()
    old = next(s for s in listing["secrets"] if s["id"] == initial["id"])
    assert (old["active"], old["secret"]) == (False, None)
    assert old["revokedAt"] is not None
    again = await client.delete(f"/webhooks/1/secrets/{initial['id']}", headers=tenant.basic)
    assert again.status_code == 404

    last = await client.delete(f"/webhooks/1/secrets/{new['id']}", headers=tenant.basic)
    assert last.status_code == 409
    assert last.json()["requestError"]["serviceException"]["messageId"] == "CONFLICT"


async def test_concurrent_revocations_never_leave_an_account_without_a_secret(
    database: Database, tenant: Tenant
) -> None:
    """Two requests each revoke one of the two active secrets at the same moment."""
    async with database.session() as session:
        await Secrets(session).add(tenant.account_id)
        ids = [s.id for s in await Secrets(session).of_account(tenant.account_id)]

    async def revoke(secret_id: str) -> str:
        try:
            async with database.session() as session:
                await Secrets(session).revoke(tenant.account_id, secret_id)
        except Conflict:
            return "refused"
        return "revoked"

    for _round in range(5):
        answers = await asyncio.gather(*(revoke(i) for i in ids))
        async with database.session() as session:
            active = await Secrets(session).active([tenant.account_id])
        assert len(active.get(tenant.account_id, [])) == 1, answers
        assert sorted(answers) == ["refused", "revoked"]
        # Back to two active secrets for the next round.
        async with database.session() as session:
            await Secrets(session).add(tenant.account_id)
            rows = await Secrets(session).of_account(tenant.account_id)
            ids = [s.id for s in rows if s.revoked_at is None]


async def test_active_secrets_are_capped(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for _ in range(MAX_ACTIVE_SECRETS - 1):
        assert (await client.post("/webhooks/1/secrets", headers=tenant.basic)).status_code == 201
    refused = await client.post("/webhooks/1/secrets", headers=tenant.basic)
    assert refused.status_code == 409


def sample(text: str, name: str) -> float:
    [value] = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    ]
    return value


async def test_the_operator_reads_outbox_metrics(
    client: httpx.AsyncClient,
    database: Database,
    http: aiohttp.ClientSession,
    receiver: Receiver,
    tenant: Tenant,
) -> None:
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers=tenant.basic)).status_code == 401

    before = (await client.get("/metrics", headers=ADMIN)).text
    delivered_before = sample(before, 'callmask_webhook_attempts_total{outcome="delivered"}')
    assert sample(before, "callmask_webhook_pending") == 0
    assert sample(before, "callmask_webhook_oldest_pending_age_seconds") == 0

    receiver.answer("/m", Reply(200), Reply(500))
    await enqueue_one(database, tenant, receiver.url("/m"))
    await enqueue_one(database, tenant, receiver.url("/m"))
    await asyncio.sleep(0.05)
    await make_worker(database, http, schedule=(3600,)).run_once()

    response = await client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "callmask_webhook_pending") == 1
    assert sample(text, "callmask_webhook_oldest_pending_age_seconds") >= 0.05
    after = sample(text, 'callmask_webhook_attempts_total{outcome="delivered"}')
    assert after == delivered_before + 1
    assert sample(text, 'callmask_webhook_attempts_total{outcome="retry"}') >= 1


async def test_the_apps_own_worker_delivers_what_the_node_enqueues(
    tmp_path: Path, db_url: str, database: Database, receiver: Receiver, tenant: Tenant
) -> None:
    """The lifespan starts the worker; code that enqueues notifies it through the
    services, and stopping the app stops the worker."""
    settings = make_settings(tmp_path, db_url, webhook_worker=True)
    app: FastAPI = node_app(settings, database=database)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        event_id = await enqueue_one(database, tenant, receiver.url("/node"), {"ok": True})
        services.webhooks.notify()
        [request] = await receiver.wait_for("/node", timeout_s=5)
        await wait_until(status_is(database, event_id, "delivered"))
    async with database.session() as session:
        [secret] = (await Secrets(session).active([tenant.account_id]))[tenant.account_id]
    assert Webhook(secret).verify(request.body, request.headers) == {"ok": True}
