"""Live-call operations from any node: two callmask nodes in this process on one
PostgreSQL, each with its own SIP port and managed rtpengine, SIPp as the carrier. A
call carried by node 2 is listed, found and hung up through node 1's Tata API; another
account cannot touch it there either; a call whose node is gone is a clear 503."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from callmask.calls.engine import CallEngine
from callmask.cluster import calls as cluster_calls
from callmask.cluster.calls import ClusterCalls
from callmask.node import node_app
from callmask.phone import region_of
from callmask.store.database import Database
from callmask.store.models import CallRecord, NodeHeartbeat, OpenCall, WebhookEvent, utcnow
from callmask.store.repositories import Actions, Numbers
from tests.calls.conftest import node_settings
from tests.conftest import Tenant, create_tenant
from tests.support.receiver import Receiver, Reply
from tests.support.sipp import SippUas, free_udp_port, run_uac

pytestmark = [pytest.mark.postgres, pytest.mark.interop]

DID = "+41793026731"
DIAL = {"command": "dial", "phoneNumber": "41793026785", "callerId": "41793026700"}


@dataclass
class ClusterNode:
    node_id: str
    app: FastAPI
    database: Database

    @property
    def calls(self) -> ClusterCalls:
        calls = self.app.state.services.calls
        assert isinstance(calls, ClusterCalls)
        return calls

    @property
    def sip_port(self) -> int:
        engine = self.calls.local
        assert isinstance(engine, CallEngine)
        return engine.endpoint.port

    def api(self, tenant: Tenant) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://callmask.test",
            headers={"Authorization": tenant.api_key},
        )


@dataclass
class Cluster:
    nodes: list[ClusterNode]
    tenant: Tenant
    other: Tenant
    trunk_port: int
    database: Database


@contextlib.asynccontextmanager
async def running_node(
    tmp_path: Path, url: str, node_id: str, trunk_port: int
) -> AsyncIterator[ClusterNode]:
    settings = node_settings(tmp_path / node_id, url, trunk_port, node_id=node_id)
    database = Database(url)
    app = node_app(settings, database=database, with_calls=True)
    try:
        async with app.router.lifespan_context(app):
            yield ClusterNode(node_id, app, database)
    finally:
        await database.close()


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str, receiver: Receiver) -> AsyncIterator[Cluster]:
    receiver.always("/callback", Reply(body=DIAL))
    database = Database(pg_url)
    tenant = await create_tenant(database, "acme")
    other = await create_tenant(database, "globex")
    async with database.session() as session:
        number = await Numbers(session).add_to_inventory(DID, region_of(DID), tenant.account_id)
        await Actions(session).create(
            tenant.account_id,
            number.number_key,
            type_="VOICE_NUMBER_MASKING",
            callback_url=receiver.url("/callback"),
            status_url=receiver.url("/status"),
        )
    trunk_port = free_udp_port()
    try:
        async with (
            running_node(tmp_path, pg_url, "node-1", trunk_port) as one,
            running_node(tmp_path, pg_url, "node-2", trunk_port) as two,
        ):
            yield Cluster([one, two], tenant, other, trunk_port, database)
    finally:
        await database.close()


async def answered_on(node: ClusterNode, account_id: str) -> str:
    """The call id of the account's one answered call on ``node`` (bounded wait)."""
    for _ in range(150):
        live = node.calls.local.live_calls(account_id)
        if live and live[0].state == "answered":
            # Its open_calls row is written through the ledger: wait for it too.
            async with node.database.session() as session:
                if await session.scalar(select(OpenCall.record_id)):
                    return live[0].call_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"no answered call on {node.node_id} within 15 s")


async def test_node_1_lists_and_hangs_up_a_call_that_node_2_carries(
    cluster: Cluster, receiver: Receiver
) -> None:
    one, two = cluster.nodes
    async with (
        SippUas("uas_answer.xml", port=cluster.trunk_port, calls=1) as far_end,
        one.api(cluster.tenant) as api,
        one.api(cluster.other) as stranger,
    ):
        caller_task = asyncio.create_task(
            run_uac("uac_call_remote_bye.xml", target=("127.0.0.1", two.sip_port), service=DID[1:])
        )
        call_id = await answered_on(two, cluster.tenant.account_id)
        assert one.calls.local.live_calls(cluster.tenant.account_id) == []

        live = (await api.get("/v1/live_calls")).json()
        assert [c["call_id"] for c in live] == [call_id]
        assert (await stranger.get("/v1/live_calls")).json() == []
        # Another account's hangup of it is "no such call", on any node.
        refused = await stranger.post("/v1/call/hangup", json={"call_id": call_id})
        assert refused.status_code == 404, refused.text

        reply = await api.post("/v1/call/hangup", json={"call_id": call_id})
        assert reply.json() == {"success": True, "message": "Call hangup successful"}, reply.text
        caller = await caller_task
        far = await far_end.wait(15)
        (report,) = [r.json() for r in await receiver.wait_for("/status", 1, timeout_s=15)]
        again = await api.post("/v1/call/hangup", json={"call_id": call_id})
        assert again.status_code == 404
    assert caller.received("BYE"), caller.describe()
    assert far.received("BYE"), far.describe()
    assert report["status"] == "answered"
    async with cluster.database.session() as session:
        (record,) = (await session.scalars(select(CallRecord))).all()
        events = (await session.scalars(select(WebhookEvent))).all()
    assert record.call_id == call_id and record.hangup_cause == "hung up through the API"
    assert [e.ordering_key for e in events] == [call_id]


async def test_a_call_on_a_node_that_stopped_its_heartbeat_is_a_503(cluster: Cluster) -> None:
    one, _two = cluster.nodes
    # A node that died with a call up: its row is there, its heartbeat is old.
    snapshot = json.dumps({"public_call_id": "CALL-ON-GONE-NODE"}, separators=(",", ":"))
    async with cluster.database.session() as session:
        session.add(
            NodeHeartbeat(node_id="node-9", heartbeat_at=utcnow() - dt.timedelta(minutes=5))
        )
        session.add(OpenCall(record_id=uuid.uuid4().hex, node_id="node-9", snapshot=snapshot))
    async with one.api(cluster.tenant) as api:
        reply = await api.post("/v1/call/hangup", json={"call_id": "CALL-ON-GONE-NODE"})
    assert reply.status_code == 503
    assert "node-9" in reply.text and "heartbeats" in reply.text


async def test_a_call_on_a_node_that_does_not_answer_is_a_503_after_the_wait(
    cluster: Cluster,
) -> None:
    one, _two = cluster.nodes
    # Alive by its heartbeat, but not listening (hung, or cut off from the bus): the
    # request waits ASK_TIMEOUT_S for it.
    snapshot = json.dumps({"public_call_id": "CALL-ON-MUTE-NODE"}, separators=(",", ":"))
    async with cluster.database.session() as session:
        session.add(NodeHeartbeat(node_id="node-8", heartbeat_at=utcnow()))
        session.add(OpenCall(record_id=uuid.uuid4().hex, node_id="node-8", snapshot=snapshot))
    async with one.api(cluster.tenant) as api:
        reply = await api.post("/v1/call/hangup", json={"call_id": "CALL-ON-MUTE-NODE"})
    assert reply.status_code == 503
    assert "node-8" in reply.text
    assert f"did not answer within {cluster_calls.ASK_TIMEOUT_S:g} s" in reply.text
