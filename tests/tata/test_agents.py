"""Agents: ``POST /v1/agent`` and ``GET /v1/agents`` (reference "add a new agent",
"get the agent's details"), their validation, uniqueness and tenant isolation."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import pytest

from callmask.store.database import Database
from callmask.store.models import CallRecord, TataAgent
from tests.conftest import Tenant
from tests.tata.conftest import AGENT_E164, assert_failure, rows, sqlite_only, tata


async def add_agent(client: httpx.AsyncClient, tenant: Tenant, **body: object) -> httpx.Response:
    payload = {"name": "Test Agent", "follow_me_number": "9876543210", **body}
    return await client.post("/v1/agent", json=payload, headers=tata(tenant))


async def test_an_account_adds_an_agent_with_a_national_number_and_sees_it_in_e164(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    reply = await add_agent(client, tenant, intercom="0042")
    assert reply.status_code == 200, reply.text
    agent_id = reply.json()["agent_id"]
    [agent] = (await client.get("/v1/agents", headers=tata(tenant))).json()
    assert agent["id"] == int(agent_id)
    assert len(agent_id) == 12
    assert agent["follow_me_number"] == AGENT_E164
    assert agent["intercom"] == "0042"  # a string keeps the leading zero
    assert len(agent["eid"]) == 15 and agent["eid"].isdigit()
    assert (agent["calls_answered"], agent["calls_missed"], agent["custom_status"]) == (0, 0, 0)
    assert agent["allowed_caller_ids"] == []  # the account has no DID yet


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+919876543210", AGENT_E164),
        ("09876543210", AGENT_E164),
        ("919876543210", AGENT_E164),
        (9876543210, AGENT_E164),
    ],
)
async def test_an_account_adds_an_agent_with_any_documented_number_form(
    client: httpx.AsyncClient, tenant: Tenant, number: object, expected: str
) -> None:
    reply = await add_agent(client, tenant, follow_me_number=number)
    assert reply.status_code == 200, reply.text
    [agent] = (await client.get("/v1/agents", headers=tata(tenant))).json()
    assert agent["follow_me_number"] == expected


@sqlite_only
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": None}, ["name is required"]),
        ({"name": ""}, ["name is required"]),
        ({"name": ["x"]}, ["name must be a string"]),
        ({"follow_me_number": None}, ["follow_me_number is required"]),
        ({"follow_me_number": "12345"}, ["follow_me_number", "not a valid phone number"]),
        ({"follow_me_number": "98765abcde"}, ["follow_me_number"]),
        ({"follow_me_number": True}, ["follow_me_number must be a string"]),
        ({"intercom": 123}, ["intercom must be a 4-digit number"]),
        ({"intercom": "12345"}, ["intercom must be a 4-digit number"]),
        ({"intercom": "12a4"}, ["intercom must be a 4-digit number"]),
        ({"intercom": 12.5}, ["intercom must be a string"]),
    ],
)
async def test_an_account_adding_a_malformed_agent_gets_a_400_and_no_agent(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    body: dict[str, object],
    words: list[str],
) -> None:
    assert_failure(await add_agent(client, tenant, **body), 400, *words)
    assert await rows(database, TataAgent) == 0


async def test_an_intercom_or_number_used_by_another_agent_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    assert (await add_agent(client, tenant, intercom=1234)).status_code == 200
    reply = await add_agent(client, tenant, follow_me_number="9876543211", intercom="1234")
    assert_failure(reply, 409, "intercom 1234")
    reply = await add_agent(client, tenant, intercom="4321")
    assert_failure(reply, 409, "follow_me_number")
    assert await rows(database, TataAgent) == 1


async def test_another_account_may_use_the_same_intercom_and_sees_only_its_agents(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert (await add_agent(client, tenant, intercom=1234)).status_code == 200
    assert (await add_agent(client, other_tenant, intercom=1234)).status_code == 200
    mine = (await client.get("/v1/agents", headers=tata(tenant))).json()
    theirs = (await client.get("/v1/agents", headers=tata(other_tenant))).json()
    assert len(mine) == len(theirs) == 1
    assert mine[0]["id"] != theirs[0]["id"]


async def test_agents_need_the_account_key(client: httpx.AsyncClient) -> None:
    assert_failure(await client.get("/v1/agents"), 401)
    assert_failure(await client.get("/v1/agents", headers={"Authorization": "nope"}), 401)


async def test_an_agents_answered_and_missed_calls_are_counted_from_the_call_records(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    agent_id = int((await add_agent(client, tenant)).json()["agent_id"])
    start = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
    async with database.session() as session:
        for status in ("answered", "answered", "no answer", "busy", "answered"):
            session.add(
                CallRecord(
                    id=uuid.uuid4().hex,
                    call_id=uuid.uuid4().hex[:20],
                    account_id=tenant.account_id,
                    direction="outbound",
                    service="click_to_call",
                    caller=AGENT_E164,
                    callee="+919876501234",
                    a_sip_call_id=uuid.uuid4().hex,
                    invited_at=start,
                    ended_at=start + dt.timedelta(seconds=30),
                    status=status,
                    hangup_cause="normal clearing",
                    agent_id=agent_id,
                )
            )
    [agent] = (await client.get("/v1/agents", headers=tata(tenant))).json()
    assert (agent["calls_answered"], agent["calls_missed"]) == (3, 2)
