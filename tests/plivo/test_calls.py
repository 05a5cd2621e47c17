"""A call within a Plivo masking session, end to end: the official plivo SDK creates
the session against a running callmask node (SIP, managed rtpengine, call engine: the
rig of ``tests/calls``), SIPp is the carrier on both sides. The first party dials the
virtual number and reaches the second party, who sees only the virtual number."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from plivo.rest.client import Client
from sqlalchemy import select

from callmask.store.models import AudioFile
from callmask.store.repositories import Actions
from tests.calls import conftest as calls_rig
from tests.calls.conftest import B_NUMBER, CALLER, DID, Node
from tests.calls.test_masking_calls import call
from tests.plivo.conftest import auth_id, stored
from tests.plivo.test_sdk import point_the_sdk_at
from tests.support.audio import AudioSamples
from tests.support.receiver import Reply, free_port, serve_app
from tests.support.sipp import SippUas
from tests.twilio.conftest import twilio_auth

pytestmark = pytest.mark.interop

T = TypeVar("T")


def without_lifespan(app: Any) -> Any:
    """The node's app, served a second time by uvicorn for the SDK: its lifespan (the
    call path) already runs under the rig, so uvicorn's startup and shutdown are
    acknowledged here and do nothing."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await app(scope, receive, send)

    return asgi


# The node of tests/calls: one account owning the DID, its call path, SIPp's trunk port.
node = calls_rig.node


@pytest.fixture
async def served(node: Node, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    for name in ("PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    async with serve_app(without_lifespan(node.app), port):
        base_url = f"http://127.0.0.1:{port}"
        point_the_sdk_at(base_url, monkeypatch)
        yield base_url


async def sdk(work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work)


async def plivo_pool_of_the_did(node: Node, base_url: str) -> None:
    """The DID leaves its action and becomes the one number of the ``plivo`` pool,
    through the Twilio API as the README says."""
    account = node.tenant.account_id
    async with node.database.session() as session:
        actions = Actions(session)
        for action in await actions.for_number(account, node.number_key):
            await actions.delete(account, node.number_key, action.action_key)
    auth = twilio_auth(node.tenant)
    async with httpx.AsyncClient(base_url=base_url, auth=auth, timeout=10) as http:
        service = await http.post("/twilio/v1/Services", data={"UniqueName": "plivo"})
        assert service.status_code == 201, service.text
        added = await http.post(service.json()["links"]["phone_numbers"], data={"PhoneNumber": DID})
        assert added.status_code == 201, added.text


async def test_the_first_party_reaches_the_second_who_sees_only_the_virtual_number(
    node: Node, served: str
) -> None:
    await plivo_pool_of_the_did(node, served)
    masking = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10).masking_sessions
    created: Any = await sdk(
        lambda: masking.create_masking_session(first_party=CALLER, second_party=B_NUMBER)
    )
    assert created.virtual_number == DID
    _, participants = await stored(node.database, created.session_uuid)
    assert {p.proxy_identifier for p in participants} == {DID}

    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, hold_ms="1000")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    invite = far.received("INVITE")[0]
    assert invite.request_uri is not None and B_NUMBER in invite.request_uri
    for header in ("From", "P-Asserted-Identity"):
        assert f"sip:{DID}@" in (invite.header(header) or ""), invite.text
    assert CALLER not in invite.text, "the second party never sees the first party's number"
    (record,) = await node.records()
    assert record.service == "session" and record.status == "answered"

    # The call is the session's interaction, counted in its Plivo view.
    async with asyncio.timeout(10):
        while True:
            got: Any = await sdk(lambda: masking.get_masking_session(created.session_uuid))
            if got.response.total_call_count == 1:
                break
            await asyncio.sleep(0.1)
    assert got.response.last_interaction_time != ""
    assert got.response.status == "active"


async def test_a_pin_session_puts_the_first_party_through_once_the_pin_is_keyed_in(
    node: Node, served: str
) -> None:
    await plivo_pool_of_the_did(node, served)
    masking = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10).masking_sessions
    await sdk(
        lambda: masking.create_masking_session(
            first_party=CALLER,
            second_party=B_NUMBER,
            is_pin_authentication_required=True,
            first_party_pin="1234",
            second_party_pin="5678",
            pin_retry=1,
            pin_retry_wait=3,
            call_time_limit=60,
        )
    )
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        # 1 2 3 4 # as RFC 4733 events from the ACK on (callmask answers with the prompt).
        caller = await call(node, "uac_dtmf.xml", hold_ms="4000")
        far = await far_end.wait(20)
    assert caller.returncode == 0, caller.describe()
    invite = far.received("INVITE")[0]
    assert f"sip:{DID}@" in (invite.header("From") or "") and CALLER not in invite.text
    (record,) = await node.records()
    details = json.loads(record.details or "{}")
    assert record.status == "answered", (record.hangup_cause, details)
    assert details["pin"] == {
        "attempts": 1,
        "prompt_start_ms": details["pin"]["prompt_start_ms"],
        "result": "correct",
        "prompt": "speech",
        "incorrect_prompt": "speech",
    }
    assert details["time_limit_s"] == 60


async def test_a_wrong_pin_ends_the_call_as_failed_before_the_second_party_rings(
    node: Node, served: str
) -> None:
    await plivo_pool_of_the_did(node, served)
    masking = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10).masking_sessions
    await sdk(
        lambda: masking.create_masking_session(
            first_party=CALLER,
            second_party=B_NUMBER,
            is_pin_authentication_required=True,
            first_party_pin="9999",
            second_party_pin="5678",
            pin_retry=0,
        )
    )
    async with SippUas("uas_answer.xml", port=node.trunk_port) as far_end:
        caller = await call(node, "uac_dtmf.xml", hold_ms="8000")
    assert caller.returncode == 0, caller.describe()
    assert far_end.result is not None and not far_end.result.received("INVITE")
    (record,) = await node.records()
    assert (record.status, record.hangup_cause) == ("failed", "incorrect PIN after 1 attempts")


async def test_a_call_reaching_the_session_call_time_limit_is_ended_on_both_legs(
    node: Node, served: str
) -> None:
    await plivo_pool_of_the_did(node, served)
    masking = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10).masking_sessions
    await sdk(
        lambda: masking.create_masking_session(
            first_party=CALLER, second_party=B_NUMBER, call_time_limit=2
        )
    )
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, hold_ms="8000")  # would talk 8 s; the limit is 2 s
        far = await far_end.wait(20)
    assert caller.returncode == 0, caller.describe()
    assert far.received("BYE"), "the second party got BYE from callmask"
    (record,) = await node.records()
    assert record.hangup_cause == "call time limit reached" and record.hangup_by == "system"
    talk_s = (record.ended_at - record.answered_at).total_seconds()
    assert 1.5 <= talk_s <= 3.0, talk_s


async def test_a_caller_sharing_the_number_among_pin_sessions_reaches_the_one_of_the_pin(
    node: Node, served: str
) -> None:
    # One virtual number; the caller is in two PIN sessions on it, with two agents.
    await plivo_pool_of_the_did(node, served)
    masking = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10).masking_sessions
    other_agent = "+41793026786"
    for agent, pin in ((B_NUMBER, "5555"), (other_agent, "1234")):
        created: Any = await sdk(
            lambda agent=agent, pin=pin: masking.create_masking_session(
                first_party=CALLER,
                second_party=agent,
                is_pin_authentication_required=True,
                first_party_pin=pin,
                second_party_pin="9" + pin,
                pin_retry=0,
            )
        )
        assert created.virtual_number == DID
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, "uac_dtmf.xml", hold_ms="3000")  # keys 1 2 3 4 #
        far = await far_end.wait(20)
    assert caller.returncode == 0, caller.describe()
    invite = far.received("INVITE")[0]
    assert invite.request_uri is not None and other_agent in invite.request_uri
    assert B_NUMBER not in invite.text and CALLER not in invite.text
    (record,) = await node.records()
    details = json.loads(record.details or "{}")
    assert record.status == "answered", (record.hangup_cause, details)
    assert details["pin"]["result"] == "correct"


async def test_a_pin_keyed_in_by_sip_info_puts_the_caller_through(node: Node, served: str) -> None:
    await plivo_pool_of_the_did(node, served)
    masking = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10).masking_sessions
    await sdk(
        lambda: masking.create_masking_session(
            first_party=CALLER,
            second_party=B_NUMBER,
            is_pin_authentication_required=True,
            first_party_pin="9876",
            second_party_pin="1234",
        )
    )
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        # 9 8 7 6 as SIP INFO (application/dtmf-relay, one application/dtmf); no RTP.
        caller = await call(node, "uac_pin_info.xml", hold_ms="2000")
        far = await far_end.wait(20)
    assert caller.returncode == 0, caller.describe()
    assert far.received("INVITE"), "the second party was called"
    (record,) = await node.records()
    details = json.loads(record.details or "{}")
    assert record.status == "answered", (record.hangup_cause, details)
    assert details["pin"]["result"] == "correct"
    assert details["dtmf"] == {"caller_info": 4}, details


async def test_the_customers_own_pin_prompt_audio_is_what_the_caller_hears(
    node: Node, served: str, tmp_path: Path
) -> None:
    await plivo_pool_of_the_did(node, served)
    spoken = AudioSamples(tmp_path).speech_mp3("Welcome to the clinic. Your PIN, please.")
    node.receiver.always("/pin.mp3", Reply(body=spoken, headers={"content-type": "audio/mpeg"}))
    masking = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10).masking_sessions
    await sdk(
        lambda: masking.create_masking_session(
            first_party=CALLER,
            second_party=B_NUMBER,
            is_pin_authentication_required=True,
            first_party_pin="1234",
            second_party_pin="5678",
            pin_prompt_play=node.receiver.url("/pin.mp3"),
        )
    )
    # Fetched once, when the session was created: kept as one of the account's files.
    async with node.database.session() as session:
        (kept,) = (await session.scalars(select(AudioFile))).all()
    assert kept.account_id == node.tenant.account_id and kept.size_bytes == len(spoken)
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, "uac_dtmf.xml", hold_ms="3000")
        await far_end.wait(20)
    assert caller.returncode == 0, caller.describe()
    (record,) = await node.records()
    details = json.loads(record.details or "{}")
    assert record.status == "answered", (record.hangup_cause, details)
    assert details["pin"]["prompt"] == f"file {kept.file_id}"
    assert details["pin"]["incorrect_prompt"] == "speech"
    assert len(node.receiver.on("/pin.mp3")) == 1, "not fetched again by the call"
