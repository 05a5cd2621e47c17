"""Live call control through the API: click-to-call, hangup, live calls, transfer to an
agent (``POST /v1/call/options`` type 4).

The call engine here is ``RecordingCallControl`` (tests/tata/conftest.py), an in-test
implementation of ``CallControl`` that records requests and keeps a table of live calls.
These tests check the API layer: validation, agent and caller-ID resolution, tenant
isolation, and the replies; SIPp interop tests cover the real engine.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Tenant
from tests.tata.conftest import (
    AGENT_E164,
    CUSTOMER_E164,
    DID,
    OTHER_DID,
    SECOND_DID,
    RecordingCallControl,
    assert_failure,
    sqlite_only,
    tata,
)


async def click(client: httpx.AsyncClient, tenant: Tenant, **body: object) -> httpx.Response:
    payload = {"agent_number": "9876543210", "destination_number": "9876501234", **body}
    return await client.post("/v1/click_to_call", json=payload, headers=tata(tenant))


async def add_agent(
    client: httpx.AsyncClient, tenant: Tenant, intercom: str = "1234"
) -> dict[str, object]:
    reply = await client.post(
        "/v1/agent",
        json={"name": "Asha", "follow_me_number": "9876543210", "intercom": intercom},
        headers=tata(tenant),
    )
    assert reply.status_code == 200, reply.text
    [agent] = (await client.get("/v1/agents", headers=tata(tenant))).json()
    return dict(agent)


# -- click-to-call -------------------------------------------------------------------


async def test_an_asynchronous_click_to_call_is_queued_with_the_first_did_as_caller_id(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str], calls: RecordingCallControl
) -> None:
    await client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/hook"}, headers=tata(tenant))
    reply = await click(
        client, tenant, call_timeout=32, custom_identifier="order-77", get_call_id=1
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True
    assert body["message"] == "Originate successfully queued"
    assert body["call_id"]
    [(request, waited)] = calls.click_to_calls
    assert waited is False
    assert request.account_id == tenant.account_id
    assert request.agent_number == AGENT_E164
    assert request.destination_number == CUSTOMER_E164
    assert request.caller_id == DID
    assert request.call_timeout_s == 32
    assert request.custom_identifier == "order-77"
    assert request.webhook_url == "http://127.0.0.1:9/hook"


async def test_a_synchronous_click_to_call_returns_the_call_id_once_the_agent_answered(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str], calls: RecordingCallControl
) -> None:
    reply = await click(client, tenant, **{"async": 0, "get_call_id": "1"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["call_id"]
    assert calls.click_to_calls[0][1] is True


async def test_a_synchronous_click_to_call_whose_agent_does_not_answer_reports_failure(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str], calls: RecordingCallControl
) -> None:
    calls.agent_answers = False
    reply = await click(client, tenant, **{"async": "0", "get_call_id": 1})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"success": False, "message": "Agent did not answer"}


@pytest.mark.parametrize("destination", ["9876501234", "+919876501234", "09876501234"])
async def test_a_customer_number_in_each_documented_form_is_dialled_in_e164(
    client: httpx.AsyncClient,
    tenant: Tenant,
    dids: list[str],
    calls: RecordingCallControl,
    destination: str,
) -> None:
    reply = await click(client, tenant, destination_number=destination)
    assert reply.status_code == 200, reply.text
    assert calls.click_to_calls[0][0].destination_number == CUSTOMER_E164


@pytest.mark.parametrize("reference", ["intercom", "eid", "id"])
async def test_click_to_call_rings_an_agent_named_by_intercom_eid_or_id(
    client: httpx.AsyncClient,
    tenant: Tenant,
    dids: list[str],
    calls: RecordingCallControl,
    reference: str,
) -> None:
    agent = await add_agent(client, tenant)
    reply = await click(client, tenant, agent_number=str(agent[reference]))
    assert reply.status_code == 200, reply.text
    assert calls.click_to_calls[0][0].agent_number == AGENT_E164


@sqlite_only
@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"destination_number": "987650123"}, 400, ["destination_number", "10 to 15 digits"]),
        ({"destination_number": "9876501234567890"}, 400, ["destination_number"]),
        ({"destination_number": "+447946000000"}, 400, ["+91 or 0"]),
        ({"destination_number": "98765-01234"}, 400, ["destination_number"]),
        ({"destination_number": "1111111111"}, 400, ["not a valid phone number"]),
        ({"destination_number": None}, 400, ["destination_number is required"]),
        ({"agent_number": None}, 400, ["agent_number is required"]),
        ({"agent_number": "12ab"}, 400, ["agent_number", "neither an agent"]),
        ({"agent_number": "5555"}, 400, ["agent_number"]),
        ({"caller_id": OTHER_DID}, 400, ["caller_id", "not one of this account's numbers"]),
        ({"caller_id": "abc"}, 400, ["caller_id"]),
        ({"async": 2}, 400, ["async must be 0 or 1"]),
        ({"get_call_id": "yes"}, 400, ["get_call_id must be 0 or 1"]),
        ({"call_timeout": 0}, 400, ["call_timeout"]),
        ({"call_timeout": "soon"}, 400, ["call_timeout must be an integer"]),
        ({"custom_identifier": "x" * 256}, 400, ["custom_identifier"]),
    ],
)
async def test_a_malformed_click_to_call_places_no_call(
    client: httpx.AsyncClient,
    tenant: Tenant,
    dids: list[str],
    calls: RecordingCallControl,
    body: dict[str, object],
    status: int,
    words: list[str],
) -> None:
    assert_failure(await click(client, tenant, **body), status, *words)
    assert calls.requests == 0


async def test_click_to_call_may_show_any_of_the_accounts_dids(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str], calls: RecordingCallControl
) -> None:
    reply = await click(client, tenant, caller_id=int(SECOND_DID.removeprefix("+")))
    assert reply.status_code == 200, reply.text
    assert calls.click_to_calls[0][0].caller_id == SECOND_DID


async def test_an_account_without_a_did_cannot_click_to_call(
    client: httpx.AsyncClient, tenant: Tenant, calls: RecordingCallControl
) -> None:
    assert_failure(await click(client, tenant), 400, "buy a number")
    assert calls.requests == 0


async def test_click_to_call_needs_the_call_engine(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str]
) -> None:
    assert_failure(await click(client, tenant), 503, "calls are not running")


# -- live calls and hangup -----------------------------------------------------------


async def test_an_account_sees_only_its_own_live_calls(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    calls: RecordingCallControl,
) -> None:
    mine = calls.add_live(tenant.account_id, state="ringing")
    calls.add_live(other_tenant.account_id)
    reply = await client.get("/v1/live_calls", headers=tata(tenant))
    assert reply.status_code == 200, reply.text
    assert reply.json() == [
        {
            "call_id": mine,
            "direction": "inbound",
            "services": "Anonymize",
            "state": "ringing",
            "did_number": DID.removeprefix("+"),
            "caller_id": "919876501234",
            "destination": "919876543210",
            "start_stamp": "2026-11-25 10:00:00",
            "answered_stamp": None,
        }
    ]


async def test_the_client_of_an_outbound_live_call_is_the_called_party(
    client: httpx.AsyncClient, tenant: Tenant, calls: RecordingCallControl
) -> None:
    calls.add_live(
        tenant.account_id,
        direction="outbound",
        caller=AGENT_E164,
        callee=CUSTOMER_E164,
        service="click_to_call",
    )
    [live] = (await client.get("/v1/live_calls", headers=tata(tenant))).json()
    assert (live["caller_id"], live["services"]) == ("919876501234", "Click to Call")


async def test_hanging_up_an_unknown_or_another_accounts_call_fails_and_leaves_it_up(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    calls: RecordingCallControl,
) -> None:
    theirs = calls.add_live(other_tenant.account_id)
    for call_id in (theirs, "1700000000.999999"):
        reply = await client.post(
            "/v1/call/hangup", json={"call_id": call_id}, headers=tata(tenant)
        )
        assert_failure(reply, 404, "no live call")
    assert theirs in calls.live
    assert calls.hangups == []
    assert_failure(
        await client.post("/v1/call/hangup", json={}, headers=tata(tenant)),
        400,
        "call_id is required",
    )


async def test_a_finished_call_cannot_be_hung_up_again(
    client: httpx.AsyncClient, tenant: Tenant, calls: RecordingCallControl
) -> None:
    call_id = calls.add_live(tenant.account_id)
    first = await client.post("/v1/call/hangup", json={"call_id": call_id}, headers=tata(tenant))
    assert first.json() == {"success": True, "message": "Call hangup successful"}
    again = await client.post("/v1/call/hangup", json={"call_id": call_id}, headers=tata(tenant))
    assert_failure(again, 404)
    assert len(calls.hangups) == 1


# -- transfer ------------------------------------------------------------------------


async def transfer(client: httpx.AsyncClient, tenant: Tenant, **body: object) -> httpx.Response:
    return await client.post("/v1/call/options", json={"type": 4, **body}, headers=tata(tenant))


@pytest.mark.parametrize("by", ["agent_id", "eid", "intercom"])
async def test_an_answered_call_is_transferred_to_the_agents_follow_me_number(
    client: httpx.AsyncClient, tenant: Tenant, calls: RecordingCallControl, by: str
) -> None:
    agent = await add_agent(client, tenant)
    call_id = calls.add_live(tenant.account_id)
    target = {
        "agent_id": {"agent_id": agent["id"]},
        "eid": {"agent_id": agent["eid"]},
        "intercom": {"intercom": agent["intercom"]},
    }[by]
    reply = await transfer(client, tenant, call_id=call_id, **target)
    assert reply.json() == {"success": True, "message": "Redirect successful"}
    assert calls.transfers == [(tenant.account_id, call_id, AGENT_E164)]


@sqlite_only
@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"type": 3}, 400, ["only 4"]),
        ({"type": None}, 400, ["type is required"]),
        ({"type": "four"}, 400, ["type must be an integer"]),
        ({"call_id": None}, 400, ["call_id is required"]),
        ({"agent_id": None, "intercom": None}, 400, ["agent_id or intercom"]),
        ({"agent_id": "123456789012"}, 404, ["agent 123456789012 not found"]),
        ({"agent_id": None, "intercom": "9999"}, 404, ["intercom 9999"]),
        ({"intercom": "9999"}, 404, ["intercom 9999"]),
        ({"call_id": "1700000000.999999"}, 404, ["no live call"]),
    ],
)
async def test_a_bad_transfer_request_moves_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    calls: RecordingCallControl,
    body: dict[str, object],
    status: int,
    words: list[str],
) -> None:
    agent = await add_agent(client, tenant)
    call_id = calls.add_live(tenant.account_id)
    payload: dict[str, object] = {"type": 4, "call_id": call_id, "agent_id": agent["id"]}
    payload.update(body)
    reply = await client.post("/v1/call/options", json=payload, headers=tata(tenant))
    assert_failure(reply, status, *words)
    assert calls.transfers == []
    assert call_id in calls.live


async def test_agent_id_and_intercom_of_different_agents_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, calls: RecordingCallControl
) -> None:
    first = await add_agent(client, tenant, "1111")
    await client.post(
        "/v1/agent",
        json={"name": "Ravi", "follow_me_number": "9876543299", "intercom": "2222"},
        headers=tata(tenant),
    )
    call_id = calls.add_live(tenant.account_id)
    reply = await transfer(client, tenant, call_id=call_id, agent_id=first["id"], intercom="2222")
    assert_failure(reply, 400, "different agents")
    assert calls.transfers == []


async def test_a_finished_call_cannot_be_transferred(
    client: httpx.AsyncClient, tenant: Tenant, calls: RecordingCallControl
) -> None:
    agent = await add_agent(client, tenant)
    call_id = calls.add_live(tenant.account_id)
    calls.end(call_id)
    reply = await transfer(client, tenant, call_id=call_id, intercom=agent["intercom"])
    assert_failure(reply, 404, "no live call")
    assert calls.transfers == []


async def test_a_ringing_call_cannot_be_transferred_yet(
    client: httpx.AsyncClient, tenant: Tenant, calls: RecordingCallControl
) -> None:
    agent = await add_agent(client, tenant)
    call_id = calls.add_live(tenant.account_id, state="ringing")
    reply = await transfer(client, tenant, call_id=call_id, intercom=agent["intercom"])
    assert_failure(reply, 409, "not answered yet")
    assert calls.transfers == []


async def test_another_accounts_call_cannot_be_transferred_to_my_agent(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    calls: RecordingCallControl,
) -> None:
    agent = await add_agent(client, tenant)
    theirs = calls.add_live(other_tenant.account_id)
    reply = await transfer(client, tenant, call_id=theirs, intercom=agent["intercom"])
    assert_failure(reply, 404, "no live call")
    assert calls.transfers == []


async def test_another_accounts_agent_is_not_a_transfer_target(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    calls: RecordingCallControl,
) -> None:
    theirs = await add_agent(client, other_tenant)
    call_id = calls.add_live(tenant.account_id)
    reply = await transfer(client, tenant, call_id=call_id, agent_id=theirs["id"])
    assert_failure(reply, 404, "not found")
    assert calls.transfers == []
