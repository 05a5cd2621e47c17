"""Calls within a masking session, end to end: SIPp is the carrier on both sides,
rtpengine anchors the media, a loopback HTTP server is the service's callbacks.

A customer (the caller) and an agent (B_NUMBER) share a session over a one-number pool
(the node's DID): each reaches the other through that number and sees only it."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select, update

from callmask.sessions.repository import ParticipantRequest, PoolNumbers, Services, Sessions
from callmask.sessions.shared import FIRST_PARTY
from callmask.store.models import ProxyInteraction, ProxyParticipant, ProxySession
from callmask.store.repositories import Actions
from tests.calls.conftest import B_NUMBER, CALLER, DID, Node
from tests.calls.test_masking_calls import call
from tests.support.receiver import Reply
from tests.support.sipp import SippUas

pytestmark = pytest.mark.interop

CUSTOMER = "+" + CALLER


async def pool_the_did(node: Node, **service: str | None) -> str:
    """Take the DID's action away, lend the DID to a service's pool, open a session for
    the customer and the agent; return the session's sid."""
    account = node.tenant.account_id
    async with node.database.session() as session:
        actions = Actions(session)
        for action in await actions.for_number(account, node.number_key):
            await actions.delete(account, node.number_key, action.action_key)
    async with node.database.session() as session:
        created = await Services(session).create(
            account,
            unique_name="rides",
            callback_url=node.receiver.url("/events"),
            **service,  # type: ignore[arg-type]
        )
        await PoolNumbers(session).add(account, created.sid, phone_number=DID)
        proxy_session = await Sessions(session).create(
            account,
            created.sid,
            participants=[
                ParticipantRequest(identifier=CUSTOMER),
                ParticipantRequest(identifier=B_NUMBER),
            ],
        )
        return proxy_session.sid


async def interactions(node: Node) -> list[ProxyInteraction]:
    async with node.database.session() as session:
        return list((await session.scalars(select(ProxyInteraction))).all())


async def test_the_customer_reaches_the_agent_who_sees_only_the_pool_number(node: Node) -> None:
    session_sid = await pool_the_did(node)
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, hold_ms="1000")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    invite = far.received("INVITE")[0]
    assert invite.request_uri is not None and B_NUMBER in invite.request_uri
    for header in ("From", "P-Asserted-Identity"):
        assert f"sip:{DID}@" in (invite.header(header) or ""), invite.text
    assert CALLER not in invite.text, "the agent never sees the customer's number"
    (interaction,) = await interactions(node)
    assert interaction.session_sid == session_sid
    assert (interaction.inbound_resource_status, interaction.outbound_resource_status) == (
        "completed",
        "completed",
    )
    (record,) = await node.records()
    assert record.service == "session" and record.status == "answered"
    (event,) = await node.receiver.wait_for("/events")
    body = event.json()
    assert body["interactionSessionSid"] == session_sid
    assert body["outboundResourceStatus"] == "completed"


async def test_an_intercept_callback_that_refuses_blocks_the_call(node: Node) -> None:
    await pool_the_did(node, intercept_callback_url=node.receiver.url("/intercept"))
    node.receiver.always("/intercept", Reply(status=403))
    async with SippUas("uas_answer.xml", port=node.trunk_port) as far_end:
        caller = await call(node, "uac_expect_final.xml")
    assert caller.final_status() == 403, caller.describe()
    assert far_end.result is not None
    assert not far_end.result.received("INVITE"), "a blocked interaction never reaches the agent"
    (asked,) = node.receiver.on("/intercept")
    form = parse_qs(asked.body.decode())
    assert form["interactionType"] == ["Voice"]
    assert form["inboundResourceType"] == ["call"]
    (interaction,) = await interactions(node)
    assert interaction.outbound_resource_status == "failed"


async def test_a_caller_without_a_session_hears_the_number_is_out_of_service(node: Node) -> None:
    await pool_the_did(node)
    caller = await call(node, "uac_expect_final.xml", caller="41793026999")
    assert caller.final_status() == 404, caller.describe()
    assert caller.received("183"), "the prompt plays as early media before the refusal"
    (record,) = await node.records()
    assert record.service == "out_of_session"
    assert await interactions(node) == []


async def require_pin(node: Node, session_sid: str, pin: str, *, retries: int) -> None:
    """Make the session a PIN session as the Plivo API stores one: the customer is its
    first party and must enter ``pin``."""
    options = {"is_pin_authentication_required": True, "first_party_pin": pin}
    options |= {"second_party_pin": "8642", "pin_retry": retries, "pin_retry_wait": 3}
    async with node.database.session() as session:
        await session.execute(
            update(ProxySession)
            .where(ProxySession.sid == session_sid)
            .values(plivo_options=json.dumps(options))
        )
        await session.execute(
            update(ProxyParticipant)
            .where(ProxyParticipant.identifier == CUSTOMER)
            .values(friendly_name=FIRST_PARTY)
        )


async def test_a_caller_who_keys_in_the_right_pin_is_put_through_masked(node: Node) -> None:
    session_sid = await pool_the_did(node)
    await require_pin(node, session_sid, "1234", retries=1)
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        # 1 2 3 4 # as RFC 4733 events from the ACK on, then talk and an INFO.
        caller = await call(node, "uac_dtmf.xml", hold_ms="4000")
        far = await far_end.wait(20)
    assert caller.returncode == 0, caller.describe()
    assert far.returncode == 0, far.describe()
    invite = far.received("INVITE")[0]
    assert f"sip:{DID}@" in (invite.header("From") or "")
    assert CALLER not in invite.text
    (record,) = await node.records()
    details = json.loads(record.details or "{}")
    assert record.status == "answered", (record.hangup_cause, details)
    assert details["pin"]["result"] == "correct" and details["pin"]["attempts"] == 1
    assert details["dtmf"]["caller_rfc4733"] == 5
    assert details["pin"]["prompt_start_ms"] < 1000


async def test_a_caller_with_the_wrong_pin_is_hung_up_and_the_agent_never_rung(
    node: Node,
) -> None:
    session_sid = await pool_the_did(node)
    await require_pin(node, session_sid, "9999", retries=0)
    async with SippUas("uas_answer.xml", port=node.trunk_port) as far_end:
        caller = await call(node, "uac_dtmf.xml", hold_ms="8000")
    assert caller.returncode == 0, caller.describe()
    (record,) = await node.records()
    assert record.status == "failed" and record.hangup_by == "system"
    assert record.hangup_cause == "incorrect PIN after 1 attempts"
    assert json.loads(record.details or "{}")["pin"]["result"] == "incorrect"
    assert far_end.result is not None
    assert not far_end.result.received("INVITE"), "a wrong PIN never reaches the agent"
