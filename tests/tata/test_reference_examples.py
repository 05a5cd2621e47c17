"""Every curl example of the Tata reference (shared/reference/tata-cpaas-anonymize.txt),
replayed with its headers (the bare key as Authorization) and its body, with the X
placeholders filled in, gets the documented status and response shape.

The replay runs over ASGI (on SQLite and PostgreSQL) and against the app served by
uvicorn on a loopback port. Calls go to ``RecordingCallControl`` (tests/tata/conftest.py),
an in-test implementation of the call engine's interface: this tests the API layer.
"""

from __future__ import annotations

import httpx
import pytest

from callmask.config import Settings
from callmask.node import node_app
from callmask.store.database import Database
from callmask.store.models import TataAgent, TataLead
from tests.conftest import Tenant
from tests.support.receiver import free_port, serve_app
from tests.tata.conftest import (
    AGENT_E164,
    CUSTOMER_E164,
    CUSTOMER_NUMBER,
    DID,
    RecordingCallControl,
    assert_failure,
    cdr,
    rows,
    tata,
)

# The keys of the reference's GET /v1/agents sample, plus the three its field table adds.
AGENT_KEYS = {
    "id",
    "name",
    "follow_me_number",
    "eid",
    "intercom",
    "calls_answered",
    "calls_missed",
    "custom_status",
    "timegroup_name",
    "timegroup_id",
    "failover_destination",
    "failover_destination_name",
    "is_verified",
    "departments",
    "allowed_caller_ids",
    "agent_cdr",
    "associated_agent",
    "agent_groups",
    "sticky_settings",
    "product_clicktocall",
    "team_id",
    "team_name",
}

# The record fields the reference's call-records table names ("contact details" is
# spelled with an underscore, as JSON keys are).
RECORD_KEYS = {
    "id",
    "call_id",
    "uuid",
    "date",
    "time",
    "end_stamp",
    "missed_agents",
    "status",
    "department",
    "destination",
    "direction",
    "call_duration",
    "answered_seconds",
    "minutes_consumed",
    "services",
    "broadcast_id",
    "dtmf_input",
    "client_number",
    "hangup_cause",
    "did_number",
    "notes",
    "contact_details",
    "recording_url",
}

# The agent example's body as printed: a trailing comma, so not JSON.
REFERENCE_AGENT_BODY_VERBATIM = (
    '{\n"name": "Test Agent",\n"follow_me_number": 9876543210,\n"intercom": 1234,\n}'
)


async def replay_reference(
    http: httpx.AsyncClient, tenant: Tenant, calls: RecordingCallControl, database: Database
) -> None:
    headers = tata(tenant)

    # Add an agent (the reference's body without its trailing comma), then list agents.
    reply = await http.post(
        "/v1/agent",
        json={"name": "Test Agent", "follow_me_number": 9876543210, "intercom": 1234},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    added = reply.json()
    assert set(added) == {"success", "message", "agent_id"}
    assert added["success"] is True
    assert added["message"] == "Agent added successfully"
    assert isinstance(added["agent_id"], str) and added["agent_id"].isdigit()

    reply = await http.get(
        "/v1/agents", headers={"Authorization": tenant.api_key, "accept": "application/json"}
    )
    assert reply.status_code == 200, reply.text
    [agent] = reply.json()
    assert set(agent) == AGENT_KEYS
    assert agent["id"] == int(added["agent_id"])
    assert agent["name"] == "Test Agent"
    assert agent["follow_me_number"] == AGENT_E164  # the sample's "+91XXXXXXXXXX"
    assert agent["intercom"] == "1234"
    assert agent["allowed_caller_ids"][0]["number"] == DID.removeprefix("+")
    assert agent["sticky_settings"] == {
        "timeout": None,
        "ring_strategy": None,
        "alternate_numbers": [""],
    }

    # Click to call: the documented body and the documented reply, exactly.
    reply = await http.post(
        "/v1/click_to_call",
        json={"agent_number": "9876543210", "destination_number": "09876501234"},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"success": True, "message": "Originate successfully queued"}
    request, waited = calls.click_to_calls[-1]
    assert (request.agent_number, request.destination_number, request.caller_id) == (
        AGENT_E164,
        CUSTOMER_E164,
        DID,
    )
    assert waited is False

    # The Lead API, then the Click to Call Support API (OTP announcement).
    lead_list_id = (
        await http.post("/v1/broadcast/lists", json={"name": "OTP"}, headers=headers)
    ).json()["lead_list_id"]
    api_key = (
        await http.post(
            "/v1/broadcast/keys",
            json={"lead_list_id": lead_list_id, "template": "Your one time password is {otp}"},
            headers=headers,
        )
    ).json()["api_key"]
    assert len(api_key) == 32

    reply = await http.post(
        f"/v1/broadcast/lead/{lead_list_id}",
        json={"field_0": CUSTOMER_NUMBER, "field_5": "123456", "duplicate_option": "overwrite"},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"success", "message"}
    assert reply.json()["success"] is True

    reply = await http.post(
        "/v1/c2c_api",
        json={"customer_number": CUSTOMER_NUMBER, "api_key": api_key},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True
    assert body["message"] == "Originate successfully queued"
    assert set(body) <= {"success", "message", "call_id"}
    announcement = calls.announcements[-1]
    assert announcement.customer_number == CUSTOMER_E164
    assert announcement.caller_id == DID
    assert announcement.text == (
        "Your one time password is 1, 2, 3, 4, 5, 6. Again: 1, 2, 3, 4, 5, 6."
    )

    # Call records, with the example's headers only, after one call ended.
    async with database.session() as session:
        session.add(cdr(tenant.account_id, "1700000000.000001", "2026-11-01 09:00:00", 100))
    reply = await http.get(
        "/v1/call/records",
        headers={"Accept": "application/json", "Authorization": tenant.api_key},
    )
    assert reply.status_code == 200, reply.text
    records = reply.json()
    assert {"count", "limit", "page", "size", "results"} <= set(records)
    assert (records["count"], records["size"]) == (1, 1)
    [record] = records["results"]
    assert set(record) >= RECORD_KEYS
    assert record["call_id"] == "1700000000.000001"

    # Transfer an answered call to the agent (type 4, with agent_id and intercom).
    call_id = calls.add_live(tenant.account_id)
    reply = await http.post(
        "/v1/call/options",
        json={"type": 4, "call_id": call_id, "agent_id": added["agent_id"], "intercom": "1234"},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"success": True, "message": "Redirect successful"}
    assert calls.transfers[-1] == (tenant.account_id, call_id, AGENT_E164)

    # Hang up the live call.
    reply = await http.post("/v1/call/hangup", json={"call_id": call_id}, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"success": True, "message": "Call hangup successful"}
    assert calls.hangups[-1] == (tenant.account_id, call_id)

    assert await rows(database, TataAgent) == 1
    assert await rows(database, TataLead) == 1


async def test_a_tata_client_replays_every_reference_example_over_asgi(
    client: httpx.AsyncClient,
    tenant: Tenant,
    dids: list[str],
    calls: RecordingCallControl,
    database: Database,
) -> None:
    await replay_reference(client, tenant, calls, database)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_tata_client_replays_every_reference_example_against_a_real_server(
    settings: Settings, database: Database, tenant: Tenant, dids: list[str]
) -> None:
    app = node_app(settings, database=database)
    port = free_port()
    async with serve_app(app, port):
        calls = RecordingCallControl()
        app.state.services.calls = calls
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await replay_reference(http, tenant, calls, database)


async def test_the_agent_example_body_as_printed_is_not_json_and_gets_a_400(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    reply = await client.post(
        "/v1/agent", content=REFERENCE_AGENT_BODY_VERBATIM, headers=tata(tenant)
    )
    assert_failure(reply, 400)
    assert await rows(database, TataAgent) == 0
