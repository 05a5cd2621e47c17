"""``GET /metrics`` (issue 6, "Observability"): the operator's Prometheus scrape.

It is behind the operator key like ``/admin`` (a tenant's key or none is a 401 in the
Infobip error shape), is served as the text exposition format and documented so, and
one scrape carries every family an operator alerts on: active calls, calls ended by
status, routing callback latency, post-dial delay, rtpengine health, and the webhook
outbox (pending events, age of the oldest, attempts by outcome). The values are read
with prometheus-client's own parser, before and after real activity: webhook
deliveries to a loopback receiver, and (``interop``) a masked call between two SIPp
carriers through rtpengine.

The registry is the process-wide default one, so tests compare a scrape with the one
before rather than expecting zeros.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

# Imported for its side effect: the call path's families join the default registry as
# on a node running calls (an API-only app never loads the call path).
import callmask.calls.metrics  # noqa: F401
from callmask.config import Settings
from callmask.node import node_app
from callmask.outbound import WEBHOOK_USER_AGENT, client_session
from callmask.store.database import Database
from callmask.webhooks.outbox import enqueue
from callmask.webhooks.worker import DeliveryWorker
from tests.api.infobip import assert_error
from tests.calls.conftest import B_NUMBER, CALLER, CALLER_ID, DID, Node

# The call tests' whole node: SIP endpoint, managed rtpengine, call engine, receiver.
from tests.calls.conftest import node as node
from tests.conftest import ADMIN_KEY, Tenant, make_settings
from tests.support.receiver import Receiver, Reply
from tests.support.sipp import SippUas, run_uac

OPERATOR = {"Authorization": f"Bearer {ADMIN_KEY}"}

# Family name as the parser reports it (a counter without its _total) -> type.
FAMILIES = {
    "callmask_active_calls": "gauge",
    "callmask_calls": "counter",  # exposed as callmask_calls_total{status}
    "callmask_routing_callback_seconds": "histogram",
    "callmask_post_dial_delay_seconds": "histogram",
    "callmask_rtpengine_up": "gauge",
    "callmask_webhook_pending": "gauge",
    "callmask_webhook_oldest_pending_age_seconds": "gauge",
    "callmask_webhook_attempts": "counter",  # exposed as callmask_webhook_attempts_total
    "callmask_heap_blocks": "gauge",
    "callmask_gc_collections": "counter",
    "callmask_gc_pause_seconds": "counter",
}


class Scrape:
    """One ``GET /metrics`` body, parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled counter child not created yet."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Scrape:
    reply = await client.get("/metrics", headers=OPERATOR)
    assert reply.status_code == 200, reply.text
    # The Prometheus text format (prometheus-client's CONTENT_TYPE_LATEST).
    assert reply.headers["content-type"].startswith("text/plain; version="), reply.headers
    return Scrape(reply.text)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """The tests drive a delivery worker themselves, so the app runs without its own."""
    return make_settings(tmp_path, db_url, webhook_worker=False)


async def test_metrics_need_the_operator_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for headers in (
        {},
        tenant.basic,
        tenant.app_key,
        {"Authorization": f"Bearer {tenant.api_key}"},
        {"Authorization": f"Bearer {ADMIN_KEY}x"},
        {"Authorization": ADMIN_KEY},  # the bare key is the Tata dialect's, /v1/ only
    ):
        reply = await client.get("/metrics", headers=headers)
        assert_error(reply, 401, "UNAUTHORIZED")
        assert reply.headers["www-authenticate"].startswith("Basic"), headers
        assert "callmask_" not in reply.text
    for scheme in ("Bearer", "App"):
        reply = await client.get("/metrics", headers={"Authorization": f"{scheme} {ADMIN_KEY}"})
        assert reply.status_code == 200, (scheme, reply.text)


async def test_a_node_without_an_operator_key_serves_no_metrics(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, admin_key=None, webhook_worker=False)
    app = node_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://callmask.test"
        ) as client,
    ):
        reply = await client.get("/metrics", headers=OPERATOR)
    assert_error(reply, 401, "UNAUTHORIZED", mentions="CALLMASK_ADMIN_KEY")


async def test_the_metrics_endpoint_is_documented_as_text(client: httpx.AsyncClient) -> None:
    """The OpenAPI document said application/json (FastAPI's default) for a text body."""
    document = (await client.get("/openapi.json")).json()
    assert set(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {
        "text/plain"
    }


@pytest.fixture
async def worker_http() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_session(
        allow_private=True, max_connections=10, user_agent=WEBHOOK_USER_AGENT
    ) as http:
        yield http


async def enqueue_to(database: Database, tenant: Tenant, url: str) -> None:
    async with database.session() as session:
        await enqueue(
            session,
            account_id=tenant.account_id,
            event_type="call.status",
            url=url,
            payload={"status": "answered"},
        )


async def test_one_scrape_carries_every_family_and_the_outbox_as_it_is(
    client: httpx.AsyncClient,
    database: Database,
    tenant: Tenant,
    receiver: Receiver,
    worker_http: aiohttp.ClientSession,
) -> None:
    before = await scrape(client)
    for name, kind in FAMILIES.items():
        assert before.types.get(name) == kind, (name, before.types.get(name))
    assert before.value("callmask_webhook_pending") == 0
    assert before.value("callmask_webhook_oldest_pending_age_seconds") == 0

    # Two status reports: the customer's server takes one and fails the other (500),
    # which stays pending for a retry an hour later.
    receiver.answer("/status", Reply(200), Reply(500))
    await enqueue_to(database, tenant, receiver.url("/status"))
    await enqueue_to(database, tenant, receiver.url("/status"))
    worker = DeliveryWorker(database, worker_http, allow_private=True, schedule=(3600,))
    await worker.run_once()
    assert len(receiver.on("/status")) == 2
    await asyncio.sleep(0.2)  # the age of the pending event grows while nothing happens

    after = await scrape(client)
    assert after.value("callmask_webhook_pending") == 1
    assert 0.2 <= after.value("callmask_webhook_oldest_pending_age_seconds") < 60
    for outcome, added in (("delivered", 1), ("retry", 1), ("dead", 0)):
        name = "callmask_webhook_attempts_total"
        assert after.value(name, outcome=outcome) == before.value(name, outcome=outcome) + added
    # No call happened: the call families are there, unchanged.
    for name in (
        "callmask_routing_callback_seconds_count",
        "callmask_post_dial_delay_seconds_count",
    ):
        assert after.value(name) == before.value(name)


@pytest.mark.interop
async def test_a_masked_call_shows_in_the_call_metrics(node: Node) -> None:
    """A caller dials the DID, the callback says dial B, B answers, the caller hangs up
    after a second: one more answered call, one more callback and post-dial delay
    observation, no call left active, rtpengine up, the status report delivered."""
    dial = {"command": "dial", "phoneNumber": B_NUMBER.removeprefix("+"), "callerId": CALLER_ID}
    node.receiver.always("/callback", Reply(body=dial))
    async with node.api() as client:
        client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        before = await scrape(client)
        async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
            caller = await run_uac(
                "uac_call.xml",
                target=("127.0.0.1", node.sip_port),
                service=DID.removeprefix("+"),
                variables={"caller": CALLER, "hold_ms": "1000"},
                timeout_s=30,
            )
            far = await far_end.wait(15)
        assert caller.returncode == 0, caller.describe()
        assert far.returncode == 0, far.describe()
        (report,) = [json.loads(r.body) for r in await node.receiver.wait_for("/status")]
        assert report["status"] == "answered"

        # The CDR and its report are written after the BYEs; poll the scrape (bounded)
        # until the call has ended there too.
        async with asyncio.timeout(10):
            while True:
                after = await scrape(client)
                ended = after.value("callmask_calls_total", status="answered")
                if ended > before.value("callmask_calls_total", status="answered"):
                    break
                await asyncio.sleep(0.05)

    assert ended == before.value("callmask_calls_total", status="answered") + 1
    assert after.value("callmask_active_calls") == before.value("callmask_active_calls")
    for histogram in ("callmask_routing_callback_seconds", "callmask_post_dial_delay_seconds"):
        count = f"{histogram}_count"
        assert after.value(count) == before.value(count) + 1, histogram
        assert after.value(f"{histogram}_sum") > before.value(f"{histogram}_sum"), histogram
    assert after.value("callmask_rtpengine_up") == 1
    # The status report went through the outbox: one more delivered attempt.
    name = "callmask_webhook_attempts_total"
    assert after.value(name, outcome="delivered") >= before.value(name, outcome="delivered") + 1
