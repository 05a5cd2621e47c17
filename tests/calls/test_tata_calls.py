"""Tata-dialect calls end to end over SIPp and rtpengine: anonymize hunting through the
user's API numbers, click-to-call, OTP announcements, hangup and transfer from the API.
Every outbound leg goes to the trunk, where one SIPp plays all the far ends."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.calls.conftest import Node
from tests.support.receiver import Reply
from tests.support.sipp import (
    RtpCapture,
    SippResult,
    SippUas,
    free_media_port,
    run_uac,
)

pytestmark = pytest.mark.interop

INDIA = {"did": "+919999900001", "default_region": "IN", "ring_timeout": 5.0}
DID_DIGITS = "919999900001"
CALLER = "919812300000"
BUSY = "9876500486"  # uas_by_number.xml is busy for users ending in 0486
ANSWERS = "9876500777"
AGENT = "9876511111"
CUSTOMER = "9876522222"


async def set_anonymize(node: Node) -> None:
    await node.set_action("ANONYMIZE")
    async with node.api() as api:
        reply = await api.put("/v1/webhook", json={"url": node.receiver.url("/webhook")})
        assert reply.status_code == 200, reply.text


async def call_did(node: Node, scenario: str = "uac_call.xml", **variables: str) -> SippResult:
    return await run_uac(
        scenario,
        target=("127.0.0.1", node.sip_port),
        service=DID_DIGITS,
        variables={"caller": CALLER, **variables},
    )


async def answered_live_call(api: httpx.AsyncClient) -> dict[str, object]:
    """The account's one live call, once it is answered (bounded wait)."""
    for _ in range(100):
        live: list[dict[str, object]] = (await api.get("/v1/live_calls")).json()
        if live and live[0].get("state") == "answered":
            return live[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no answered live call within 10 s")


async def webhook(node: Node) -> dict[str, object]:
    (request,) = await node.receiver.wait_for("/webhook", 1, timeout_s=15)
    details: dict[str, object] = json.loads(request.body)
    return details


@pytest.mark.parametrize("node", [INDIA], indirect=True)
async def test_anonymize_tries_the_next_number_when_the_first_is_busy(node: Node) -> None:
    await set_anonymize(node)
    node.receiver.always(
        "/callback", Reply(body=[{"transfer": {"type": "number", "data": [BUSY, ANSWERS]}}])
    )
    async with SippUas("uas_by_number.xml", port=node.trunk_port, calls=2) as far_end:
        caller = await call_did(node, hold_ms="1500")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    invites = far.received("INVITE")
    assert [BUSY in (i.request_uri or "") for i in invites] == [True, False]
    assert ANSWERS in (invites[1].request_uri or "")
    for invite in invites:  # the called party sees the DID, never the caller
        assert f"+{DID_DIGITS}@" in (invite.header("From") or "")
        assert CALLER not in invite.text
    request = node.receiver.on("/callback")[0].json()
    assert set(request) == {"uuid", "call_id", "call_to_number", "caller_id_number", "start_stamp"}
    details = await webhook(node)
    assert details["status"] == "answered" and details["call_id"] == request["call_id"]
    (record,) = await node.records()
    tried = json.loads(record.details or "{}")["tried"]
    assert [t["code"] for t in tried] == [486, 200]


@pytest.mark.parametrize("node", [INDIA], indirect=True)
async def test_click_to_call_rings_the_agent_then_the_customer_with_the_masked_caller_id(
    node: Node,
) -> None:
    await set_anonymize(node)
    far_media = free_media_port()
    async with (
        RtpCapture() as rtp,
        SippUas("uas_answer.xml", port=node.trunk_port, calls=2, media_port=far_media) as far_end,
        node.api() as api,
    ):
        reply = await api.post(
            "/v1/click_to_call",
            json={
                "agent_number": AGENT,
                "destination_number": CUSTOMER,
                "caller_id": DID_DIGITS,
                "async": 0,
                "get_call_id": 1,
                "custom_identifier": "order-42",
                "call_timeout": 3,
            },
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["success"] is True and body["call_id"]
        far = await far_end.wait(20)
    invites = far.received("INVITE")
    assert AGENT in (invites[0].request_uri or "") and CUSTOMER in (invites[1].request_uri or "")
    for invite in invites:
        assert f"+{DID_DIGITS}@" in (invite.header("From") or "")
    # Both parties hear each other through rtpengine: the SIPp playing both ends gets
    # packets from the port rtpengine gave each of them, never from itself.
    offers = [invite.sdp_audio() for invite in invites]
    ports = {sdp.port for sdp in offers if sdp is not None}
    assert len(ports) >= 2
    senders = {packet.source[1] for packet in rtp.between(None, far_media)}
    assert senders & ports and far_media not in senders, rtp.flows()
    assert far.received("BYE"), "call_timeout hangs both legs up"
    details = await webhook(node)
    assert details["custom_identifier"] == "order-42"
    assert details["call_id"] == body["call_id"]
    assert details["status"] == "answered"
    assert 2 <= int(details["answered_seconds"]) <= 4  # type: ignore[call-overload]


@pytest.mark.parametrize("node", [INDIA], indirect=True)
async def test_an_otp_call_speaks_the_digits_then_hangs_up(node: Node) -> None:
    await set_anonymize(node)
    customer_media = free_media_port()
    async with node.api() as api:
        lists = await api.post("/v1/broadcast/lists", json={"name": "otp"})
        assert lists.status_code == 200, lists.text
        lead_list = lists.json()
        list_id = lead_list.get("lead_list_id") or lead_list.get("id")
        key = await api.post(
            "/v1/broadcast/keys",
            json={
                "lead_list_id": list_id,
                "template": "Your one time password is {otp}",
                "caller_id": DID_DIGITS,
            },
        )
        assert key.status_code == 200, key.text
        lead = await api.post(
            f"/v1/broadcast/lead/{list_id}",
            json={"field_0": CUSTOMER, "field_5": "123456", "duplicate_option": "overwrite"},
        )
        assert lead.status_code == 200, lead.text
        async with (
            RtpCapture() as rtp,
            SippUas(
                "uas_answer.xml", port=node.trunk_port, calls=1, media_port=customer_media
            ) as far_end,
        ):
            reply = await api.post(
                "/v1/c2c_api", json={"customer_number": CUSTOMER, "api_key": key.json()["api_key"]}
            )
            assert reply.status_code == 200, reply.text
            assert reply.json()["message"] == "Originate successfully queued"
            far = await far_end.wait(30)
    assert far.returncode == 0, far.describe()
    assert far.received("BYE"), "callmask hangs up after the announcement"
    heard = rtp.between(None, customer_media)
    (record,) = await node.records()
    spoken_ms = json.loads(record.details or "{}")["audio_ms"]
    assert spoken_ms > 2000
    assert len(heard) >= spoken_ms // 20 * 0.8, rtp.flows()


@pytest.mark.parametrize("node", [INDIA], indirect=True)
async def test_hanging_up_a_live_call_from_the_api_ends_both_legs(node: Node) -> None:
    await set_anonymize(node)
    node.receiver.always(
        "/callback", Reply(body=[{"transfer": {"type": "number", "data": [ANSWERS]}}])
    )
    async with (
        SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end,
        node.api() as api,
    ):
        caller_task = asyncio.create_task(call_did(node, "uac_call_remote_bye.xml"))
        call_id = (await answered_live_call(api))["call_id"]
        reply = await api.post("/v1/call/hangup", json={"call_id": call_id})
        assert reply.json() == {"success": True, "message": "Call hangup successful"}
        caller = await caller_task
        far = await far_end.wait(15)
        again = await api.post("/v1/call/hangup", json={"call_id": call_id})
        assert again.json()["success"] is False
    assert caller.received("BYE") and far.received("BYE")


@pytest.mark.parametrize("node", [INDIA], indirect=True)
async def test_a_transfer_moves_the_caller_to_the_agent(node: Node) -> None:
    await set_anonymize(node)
    node.receiver.always(
        "/callback", Reply(body=[{"transfer": {"type": "number", "data": [ANSWERS]}}])
    )
    async with (
        SippUas("uas_answer.xml", port=node.trunk_port, calls=2) as far_end,
        node.api() as api,
    ):
        agent = await api.post(
            "/v1/agent", json={"name": "Test Agent", "follow_me_number": AGENT, "intercom": 1234}
        )
        assert agent.status_code == 200, agent.text
        caller_task = asyncio.create_task(call_did(node, hold_ms="4000"))
        live = await answered_live_call(api)
        reply = await api.post(
            "/v1/call/options", json={"type": 4, "call_id": live["call_id"], "intercom": "1234"}
        )
        assert reply.json() == {"success": True, "message": "Redirect successful"}, reply.text
        caller = await caller_task
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    invites = far.received("INVITE")
    assert AGENT in (invites[-1].request_uri or "")
    assert len(far.received("BYE")) == 2  # the old leg at the transfer, the agent at the end
    (record,) = await node.records()
    legs = json.loads(record.details or "{}")["legs"]
    assert [leg["number"] for leg in legs] == ["+91" + ANSWERS, "+91" + AGENT]
    assert record.callee == "+91" + AGENT
