"""The cluster for real: Kamailio (deploy/kamailio/kamailio.cfg) in front of two
``callmask run`` nodes on 127.0.0.2 and 127.0.0.3, each with its own managed rtpengine,
both on one PostgreSQL; SIPp as the carrier on 127.0.0.1 on both sides of Kamailio.

200 calls come in through Kamailio; both nodes carry calls; a call on node 2 is hung up
through node 1's API; node 2 is SIGKILLed in the middle of the load. Then: node 1's
calls all went on as if nothing happened, every call the caller heard answered has
exactly one CDR and one status report in the outbox (node 2's cut calls closed by node
1 from node 2's stale heartbeat), Kamailio stopped sending node 2 calls, and every call
offered after the kill was carried by node 1.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from callmask.cluster import takeover
from callmask.phone import region_of
from callmask.store.database import Database
from callmask.store.models import CallRecord, OpenCall, WebhookEvent
from callmask.store.repositories import Actions, Numbers
from tests.cluster.rig import SCENARIOS, Kamailio, Node, kamailio_missing
from tests.conftest import Tenant, create_tenant
from tests.support.receiver import Receiver, Reply
from tests.support.sipp import SipMessage, SippResult, SippUas, free_udp_port, run_uac

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.interop]

DID = "+41793026731"
DIAL = {"command": "dial", "phoneNumber": "41793026785", "callerId": "41793026700"}
CALLS = 200
RATE = 20
HOLD_MS = 4000
KILL_AFTER_CALLBACKS = 90  # node 2 dies once this many calls reached a node


@dataclass
class Rig:
    kamailio: Kamailio
    nodes: list[Node]
    tenant: Tenant
    database: Database
    trunk_port: int


@pytest.fixture
async def rig(tmp_path: Path, pg_url: str, receiver: Receiver) -> AsyncIterator[Rig]:
    missing = kamailio_missing()
    if missing:
        pytest.skip(f"CLUSTER TEST SKIPPED: {missing}")
    receiver.always("/callback", Reply(body=DIAL))
    database = Database(pg_url)
    tenant = await create_tenant(database)
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
    kamailio_port = free_udp_port()
    media = random.randrange(20000, 28000, 2000)  # 1000 ports each, clear of other tests'
    nodes = [
        Node(
            f"node-{n}",
            tmp_path / f"node-{n}",
            pg_url,
            sip_host=f"127.0.0.{n + 1}",
            trunk_uri=f"sip:127.0.0.1:{kamailio_port}",
            media_ports=(media + (n - 1) * 1000, media + (n - 1) * 1000 + 999),
        )
        for n in (1, 2)
    ]
    kamailio = Kamailio(
        tmp_path / "kamailio",
        [(node.sip_host, node.sip_port) for node in nodes],
        trunk_port,
        port=kamailio_port,
    )
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        await kamailio.start()
        await kamailio.wait_for_states({node.sip_uri: "AP" for node in nodes})
        yield Rig(kamailio, nodes, tenant, database, trunk_port)
    finally:
        await kamailio.stop()
        await asyncio.gather(*(node.stop() for node in nodes))
        await database.close()


@dataclass
class CallerView:
    """One call as the carrier's caller saw it (SIPp's message trace)."""

    invited_at: float
    answered: bool
    completed: bool  # hung up with a 200 for its BYE, or by callmask's BYE


def caller_views(caller: SippResult) -> dict[str, CallerView]:
    by_call: dict[str, list[SipMessage]] = {}
    for message in caller.messages:
        if message.call_id:
            by_call.setdefault(message.call_id, []).append(message)
    views = {}
    for call_id, messages in by_call.items():
        invite = next(m for m in messages if m.method == "INVITE" and m.direction == "sent")
        received = [m for m in messages if m.direction == "received"]
        answered = any(m.status == 200 and m.cseq_method == "INVITE" for m in received)
        bye_ok = any(m.status == 200 and m.cseq_method == "BYE" for m in received)
        hung_up = any(m.method == "BYE" for m in received)
        views[call_id] = CallerView(invite.timestamp, answered, bye_ok or hung_up)
    return views


def node_of_b_legs(far_end: SippResult) -> dict[str, str]:
    """The node (its SIP host) that placed each outbound leg, by the leg's Call-ID: the
    Via below Kamailio's."""
    nodes = {}
    for invite in far_end.received("INVITE"):
        vias = invite.header_values("Via")
        assert len(vias) >= 2, invite.text
        host = vias[1].split()[1].split(";")[0].rsplit(":", 1)[0]
        if invite.call_id:
            nodes[invite.call_id] = host
    return nodes


async def answered_call_on(node: Node, tenant: Tenant) -> str:
    async with httpx.AsyncClient(
        base_url=node.api_url, headers={"Authorization": tenant.api_key}
    ) as api:
        for _ in range(100):
            live = (await api.get("/v1/live_calls")).json()
            on_node = [c for c in live if c["state"] == "answered"]
            if on_node:
                return str(on_node[0]["call_id"])
            await asyncio.sleep(0.1)
    raise AssertionError(f"no answered call on {node.node_id} within 10 s")


async def bounded(condition_s: float, check: object, what: str) -> None:
    for _ in range(int(condition_s / 0.25)):
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} not within {condition_s:g} s")


async def test_two_nodes_behind_kamailio_survive_losing_one(rig: Rig, receiver: Receiver) -> None:
    started = time.monotonic()
    one, two = rig.nodes
    async with SippUas(str(SCENARIOS / "uas_cluster.xml"), port=rig.trunk_port) as far_end:
        caller_task = asyncio.create_task(
            run_uac(
                str(SCENARIOS / "uac_cluster.xml"),
                target=("127.0.0.1", rig.kamailio.port),
                service=DID[1:],
                calls=CALLS,
                rate=RATE,
                variables={"hold_ms": str(HOLD_MS)},
                timeout_s=90,
                extra_args=["-l", "400"],
            )
        )
        # A call that node 2 carries, hung up through node 1's API.
        on_two = await answered_call_on(two, rig.tenant)
        async with httpx.AsyncClient(
            base_url=one.api_url, headers={"Authorization": rig.tenant.api_key}
        ) as api:
            reply = await api.post("/v1/call/hangup", json={"call_id": on_two})
        assert reply.json() == {"success": True, "message": "Call hangup successful"}, reply.text

        await receiver.wait_for("/callback", KILL_AFTER_CALLBACKS, timeout_s=30)
        await two.kill()
        killed_at = time.time()
        # Kamailio's OPTIONS probe (every second here) marks node 2 down.
        await rig.kamailio.wait_for_states({one.sip_uri: "AP", two.sip_uri: "IP"}, timeout_s=10)

        caller = await caller_task

        # Node 1 closes node 2's calls once its heartbeat is DEAD_AFTER_S old.
        async def node_two_closed() -> bool:
            async with rig.database.session() as session:
                left = await session.scalar(
                    select(func.count()).select_from(OpenCall).where(OpenCall.node_id == "node-2")
                )
            return left == 0

        await bounded(
            takeover.DEAD_AFTER_S + 2 * takeover.SCAN_INTERVAL_S + 10,
            node_two_closed,
            "node 2's open calls closed",
        )
        far = await far_end.stop()

    async with rig.database.session() as session:
        records = (await session.scalars(select(CallRecord))).all()
        events = (await session.scalars(select(WebhookEvent))).all()

    # Every report in the outbox reaches the status URL (a delivery node 2 had leased
    # when it died waits for its lease to expire: at least once, never lost).
    async def all_delivered() -> bool:
        async with rig.database.session() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.status != "delivered")
            )
        return pending == 0

    await bounded(75, all_delivered, "every status report delivered")
    elapsed_s = time.monotonic() - started

    views = caller_views(caller)
    b_nodes = node_of_b_legs(far)
    record_of = {r.a_sip_call_id: r for r in records}
    node_of = {r.a_sip_call_id: b_nodes.get(r.b_sip_call_id or "") for r in records}
    per_node = Counter(node_of.values())
    print(
        f"\ncluster test: {len(views)} calls offered, {per_node['127.0.0.2']} carried by node 1,"
        f" {per_node['127.0.0.3']} by node 2, {sum(v.answered for v in views.values())} answered,"
        f" {sum('closed by node-1' in r.hangup_cause for r in records)} closed by takeover;"
        f" SIPp {caller.successful} ok / {caller.failed} failed; {elapsed_s:.0f} s"
    )

    assert len(views) == CALLS
    # No CDR twice, and exactly one report in the outbox per CDR.
    assert len(record_of) == len(records)
    assert Counter(e.ordering_key for e in events) == Counter(r.call_id for r in records)
    assert all(n == 1 for n in Counter(e.ordering_key for e in events).values())
    # Every call the caller heard answered has its CDR.
    for call_id, view in views.items():
        if view.answered:
            assert call_id in record_of, f"answered call {call_id} has no CDR"
    # Both nodes carried calls.
    assert per_node["127.0.0.2"] >= 20 and per_node["127.0.0.3"] >= 20, per_node
    # Node 1's calls were not touched by node 2's death.
    for call_id, record in record_of.items():
        if node_of[call_id] == "127.0.0.2":
            assert views[call_id].answered and views[call_id].completed, call_id
            assert record.status == "answered" and not json.loads(record.details).get("recovered")
    # Node 2's calls that were up when it died were closed by node 1, once.
    cut = [r for r in records if "closed by node-1" in r.hangup_cause]
    assert cut and all(node_of[r.a_sip_call_id] == "127.0.0.3" for r in cut)
    # The API hangup sent to node 1 ended the call on node 2.
    (hung_up,) = [r for r in records if r.call_id == on_two]
    assert hung_up.hangup_cause == "hung up through the API"
    assert node_of[hung_up.a_sip_call_id] == "127.0.0.3"
    assert views[hung_up.a_sip_call_id].completed
    # Calls offered after the kill all went to node 1 and were answered.
    after = [call_id for call_id, view in views.items() if view.invited_at > killed_at + 0.05]
    assert after
    for call_id in after:
        story = "\n".join(
            f"{m.timestamp - killed_at:+.3f} {m.direction} {m.first_line}"
            for m in caller.messages
            if m.call_id == call_id
        )
        assert views[call_id].answered and views[call_id].completed, f"{call_id}:\n{story}"
        assert node_of.get(call_id) == "127.0.0.2", call_id
    # Every report reached the customer's status URL.
    delivered_ids = {r.headers.get("webhook-id") for r in receiver.on("/status")}
    assert {e.id for e in events} <= delivered_ids
    assert elapsed_s < 150
