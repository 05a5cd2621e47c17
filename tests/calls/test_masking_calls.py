"""Masked calls end to end: SIPp is the carrier on both sides (a caller dialling one of
the customer's DIDs, and the far end the trunk delivers the outbound leg to), rtpengine
anchors the media, a loopback HTTP server is the customer's callback and status URL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from callmask.media.audio import inspect_mp3
from callmask.store.models import Action, AudioFile, CallRecord
from callmask.store.repositories import AudioFiles
from tests.calls.conftest import B_NUMBER, CALLER, CALLER_ID, DID, Node
from tests.support.audio import AudioSamples
from tests.support.receiver import Reply
from tests.support.sipp import (
    LOOPBACK,
    RtpCapture,
    SippResult,
    SippUas,
    free_media_port,
    free_udp_port,
    run_uac,
)
from tests.support.udp_relay import DuplicatingRelay

pytestmark = pytest.mark.interop

DID_DIGITS = DID.removeprefix("+")
DIAL = {"command": "dial", "phoneNumber": B_NUMBER.removeprefix("+"), "callerId": CALLER_ID}
# The caller's carrier signals from its own address, so a leak of it would be visible.
CALLER_IP = "127.0.0.2"
CALLER_SIDE = ["-i", CALLER_IP, "-mi", CALLER_IP]


async def call(
    node: Node,
    scenario: str = "uac_call.xml",
    *,
    timeout_s: float = 30,
    media_port: int | None = None,
    **variables: str,
) -> SippResult:
    return await run_uac(
        scenario,
        target=("127.0.0.1", node.sip_port),
        service=DID_DIGITS,
        variables={"caller": CALLER, **variables},
        timeout_s=timeout_s,
        extra_args=CALLER_SIDE,
        media_port=media_port,
    )


async def the_record(node: Node) -> CallRecord:
    records = await node.records()
    assert len(records) == 1, records
    return records[0]


async def test_a_caller_is_bridged_to_the_callback_number_and_never_revealed(node: Node) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    caller_media, far_media = free_media_port(), free_media_port()
    async with (
        RtpCapture() as rtp,
        SippUas("uas_answer.xml", port=node.trunk_port, calls=1, media_port=far_media) as far_end,
    ):
        caller = await call(node, hold_ms="3000", media_port=caller_media)
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    assert far.returncode == 0, far.describe()

    invite = far.received("INVITE")[0]
    assert invite.request_uri is not None and B_NUMBER in invite.request_uri
    assert f"sip:{CALLER_ID}@" in (invite.header("From") or "")
    assert f"sip:{CALLER_ID}@" in (invite.header("P-Asserted-Identity") or "")
    for text in (CALLER, CALLER_IP):
        assert text not in invite.text, f"{text} leaked into the called party's INVITE"
    assert invite.call_id != caller.sent("INVITE")[0].call_id
    # Media goes through rtpengine: both sides see its ports, never each other's.
    offered = invite.sdp_audio()
    assert offered is not None
    assert node.settings.rtpengine_port_min <= offered.port <= node.settings.rtpengine_port_max
    answered = caller.received(200)[0].sdp_audio()
    assert answered is not None
    assert node.settings.rtpengine_port_min <= answered.port <= node.settings.rtpengine_port_max
    # RTP really flowed both ways between the parties and rtpengine, never directly.
    assert len(rtp.between(offered.port, (CALLER_IP, caller_media))) == 0
    assert len(rtp.between(answered.port, (CALLER_IP, caller_media))) > 50, rtp.flows()
    assert len(rtp.between(offered.port, far_media)) > 50, rtp.flows()
    assert not rtp.between(caller_media, far_media) and not rtp.between(far_media, caller_media)
    # The caller's BYE ended the far end too.
    assert far.received("BYE")

    (report,) = await node.status_reports()
    assert report["status"] == "answered"
    assert report["action"] == "dial"
    assert report["from"] == CALLER and report["to"] == DID_DIGITS
    assert report["transferTo"] == B_NUMBER.removeprefix("+")
    assert isinstance(report["duration"], int) and abs(report["duration"] - 3) <= 1
    record = await the_record(node)
    assert record.hangup_by == "caller"
    assert record.answered_at is not None and record.ringing_at is not None
    media = json.loads(record.details or "{}").get("media", {})
    assert media and all(count > 0 for count in media.values()), media


async def test_the_called_party_hanging_up_ends_the_callers_leg(node: Node) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    async with SippUas(
        "uas_answer_bye.xml", port=node.trunk_port, calls=1, variables={"hold_ms": "1000"}
    ) as far_end:
        caller = await call(node, "uac_call_remote_bye.xml")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    assert far.returncode == 0, far.describe()
    assert caller.received("BYE")
    (report,) = await node.status_reports()
    assert report["status"] == "answered"
    assert (await the_record(node)).hangup_by == "callee"


@pytest.mark.parametrize(
    ("scenario", "variables", "heard", "status"),
    [
        ("uas_busy.xml", {}, 486, "busy"),
        ("uas_error.xml", {"code": "503"}, 502, "congestion"),
        ("uas_error.xml", {"code": "480"}, 480, "no answer"),
    ],
)
async def test_an_unanswered_far_end_maps_to_the_documented_status(
    node: Node, scenario: str, variables: dict[str, str], heard: int, status: str
) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    async with SippUas(scenario, port=node.trunk_port, calls=1, variables=variables) as far_end:
        caller = await call(node, "uac_expect_final.xml")
        await far_end.wait(15)
    assert caller.final_status() == heard, caller.describe()
    (report,) = await node.status_reports()
    assert report["status"] == status
    assert report["duration"] == 0


@pytest.mark.parametrize("node", [{"ring_timeout": 2.0}], indirect=True)
async def test_a_far_end_that_never_answers_is_cancelled_at_the_ring_timeout(node: Node) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    async with SippUas("uas_no_answer.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, "uac_expect_final.xml")
        far = await far_end.wait(15)
    assert caller.final_status() == 480, caller.describe()
    assert far.received("CANCEL"), far.describe()
    (report,) = await node.status_reports()
    assert report["status"] == "no answer"


async def test_a_caller_who_gives_up_while_ringing_cancels_the_far_end(node: Node) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    async with SippUas("uas_no_answer.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, "uac_cancel.xml", cancel_after_ms="500")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    assert caller.final_status() == 487
    assert far.received("CANCEL"), far.describe()
    (report,) = await node.status_reports()
    assert report["status"] == "no answer"
    assert (await the_record(node)).hangup_by == "system"


async def test_a_caller_who_gives_up_while_the_callback_decides_is_not_dialled(
    node: Node,
) -> None:
    """The CANCEL ends the call at once: callmask does not sit out the customer's slow
    callback, and dials nobody once it answers."""
    node.receiver.always("/callback", Reply(body=DIAL, delay_s=1.5))
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, "uac_cancel_trying.xml", cancel_after_ms="200")
        await asyncio.sleep(2.0)  # past the callback's answer: still nobody is dialled
        far = await far_end.stop()
    assert not far.received("INVITE"), far.describe()
    assert caller.returncode == 0, caller.describe()
    assert caller.final_status() == 487
    (report,) = await node.status_reports()
    assert report["status"] == "no answer"
    record = await the_record(node)
    assert record.hangup_cause == "caller cancelled"
    ended_after_s = (record.ended_at - record.invited_at).total_seconds()
    assert ended_after_s < 1.0, f"the CANCEL waited for the callback ({ended_after_s:.2f} s)"


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=500, body=b"down for maintenance"),
        Reply(body=b"this is not json"),
        Reply(body={"command": "dial", "phoneNumber": "not a number", "callerId": CALLER_ID}),
        Reply(body=DIAL, delay_s=10.0),
    ],
    ids=["5xx", "garbage", "invalid number", "10 s slow"],
)
async def test_a_broken_callback_gives_the_caller_480_and_the_report_failed(
    node: Node, reply: Reply
) -> None:
    node.receiver.always("/callback", reply)
    caller = await call(node, "uac_expect_final.xml")
    assert caller.final_status() == 480, caller.describe()
    (report,) = await node.status_reports()
    assert report["status"] == "failed"
    record = await the_record(node)
    assert record.status == "failed" and record.hangup_cause


async def test_a_callback_that_is_down_gives_the_caller_480(node: Node) -> None:
    async with node.database.session() as session:
        action = await session.scalar(select(Action))
        assert action is not None
        action.callback_url = f"http://127.0.0.1:{free_udp_port()}/callback"
    caller = await call(node, "uac_expect_final.xml")
    assert caller.final_status() == 480, caller.describe()
    (report,) = await node.status_reports()
    assert report["status"] == "failed"


async def test_a_did_without_an_action_gets_404_and_nobody_is_asked(node: Node) -> None:
    caller = await run_uac(
        "uac_expect_final.xml",
        target=("127.0.0.1", node.sip_port),
        service="41793026799",
        variables={"caller": CALLER},
    )
    assert caller.final_status() == 404, caller.describe()
    assert node.receiver.on("/callback") == []


@pytest.mark.parametrize("node", [{"trunk_allow": ["10.0.0.0/8"]}], indirect=True)
async def test_an_invite_from_outside_the_trunk_allow_list_gets_403(node: Node) -> None:
    caller = await call(node, "uac_expect_final.xml")
    assert caller.final_status() == 403, caller.describe()
    assert node.receiver.on("/callback") == []


async def test_an_audio_answer_plays_the_file_to_the_caller_then_hangs_up(
    node: Node, tmp_path: Path
) -> None:
    data = AudioSamples(tmp_path).speech_mp3("Thank you for calling. Your driver is on the way.")
    info = inspect_mp3(data)
    audio = node.engine.audio_dir / "welcome.mp3"
    audio.parent.mkdir(parents=True, exist_ok=True)
    audio.write_bytes(data)
    async with node.database.session() as session:
        await AudioFiles(session).add(
            AudioFile(
                file_id="welcome",
                account_id=node.tenant.account_id,
                size_bytes=len(data),
                duration_ms=info.duration_ms,
                sha256=info.sha256,
                source_url=None,
            )
        )
    node.receiver.always("/callback", Reply(body={"command": "audio", "fileId": "welcome"}))
    caller_media = free_media_port()
    async with RtpCapture() as rtp:
        caller = await call(node, "uac_call_remote_bye.xml", media_port=caller_media)
    assert caller.returncode == 0, caller.describe()
    assert caller.received("BYE"), "callmask hangs up when the file has played"
    (report,) = await node.status_reports()
    assert report["status"] == "answered"
    assert report["action"] == "audio" and report["fileId"] == "welcome"
    assert abs(report["duration"] - info.duration_ms / 1000) <= 1.5
    # 20 ms packets for the length of the file reached the caller.
    heard = rtp.between(None, (CALLER_IP, caller_media))
    assert len(heard) >= (info.duration_ms // 20) * 0.8, rtp.flows()
    assert (await the_record(node)).hangup_by == "system"


async def test_calls_complete_when_the_network_loses_five_percent_of_packets(node: Node) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    calls = 200
    async with SippUas(
        "uas_answer.xml",
        port=node.trunk_port,
        variables={"linger_ms": "4000"},
        extra_args=["-lost", "5"],
    ) as far_end:
        caller = await run_uac(
            "uac_call.xml",
            target=("127.0.0.1", node.sip_port),
            service=DID_DIGITS,
            calls=calls,
            rate=20,
            variables={"caller": CALLER, "hold_ms": "300", "linger_ms": "4000"},
            extra_args=["-lost", "5"],
            timeout_s=120,
        )
        del far_end
    assert caller.successful >= calls * 0.99, caller.describe()


async def test_calls_complete_once_on_a_carrier_network_that_delivers_every_packet_twice(
    node: Node,
) -> None:
    """A carrier network that delivers every SIP packet twice, both ways on both legs: every
    call still completes for the caller and the far end, callmask places exactly one
    outbound call per call, writes one CDR and delivers one status report for it.

    netem is not available everywhere, so each leg runs through a DuplicatingRelay
    (tests/support/udp_relay.py): peers on loopback talk to the relay, which sends every
    datagram on twice from its own socket. What each side answers to decides whether a
    message crosses it:

    - caller leg, SIPp UAC -> relay -> callmask SIP port. SIPp sends every request (INVITE,
      ACK, BYE) to the address it was started against, the relay. callmask answers a UDP
      request at its Via sent-by unless the Via carries rport (RFC 3261 18.2.2, RFC 3581),
      so the caller asks for rport (uac_call_rport.xml) and the responses come back to the
      relay, which is where the requests came from.
    - trunk leg, callmask -> CALLMASK_TRUNK_URI -> SIPp UAS. The relay owns the node's
      trunk port. SIPp answers at the packet source, the relay. callmask sends its ACK and
      BYE to the Contact of the 200, so the far end names the relay there
      (uas_answer_contact.xml, which also tolerates a copy of the INVITE while ringing).

    RTP does not cross the relays: the SDP addresses are the parties' and rtpengine's own.
    """
    node.receiver.always("/callback", Reply(body=DIAL))
    calls = 20
    caller_port, far_port = free_udp_port(), free_udp_port()
    async with (
        DuplicatingRelay((LOOPBACK, caller_port), (LOOPBACK, node.sip_port)) as caller_leg,
        DuplicatingRelay(
            (LOOPBACK, node.sip_port), (LOOPBACK, far_port), port_for_a=node.trunk_port
        ) as trunk_leg,
    ):
        contact = "{}:{}".format(*trunk_leg.address_for_a)
        async with SippUas(
            "uas_answer_contact.xml", port=far_port, calls=calls, variables={"contact": contact}
        ) as far_end:
            caller = await run_uac(
                "uac_call_rport.xml",
                target=caller_leg.address_for_a,
                service=DID_DIGITS,
                calls=calls,
                rate=10,
                local_port=caller_port,
                variables={"caller": CALLER, "hold_ms": "300"},
                timeout_s=30,
            )
            far = await far_end.wait(15)
        reports = await node.status_reports(calls)
        await asyncio.sleep(1.0)  # room for a report delivered twice to show up

    # Every call completed for the carrier on both sides.
    assert caller.returncode == 0 and caller.successful == calls, caller.describe()
    assert far.returncode == 0 and far.successful == calls, far.describe()
    # One outbound call per call: the far end saw each INVITE dialogue twice over (the
    # copies), but only `calls` distinct Call-IDs.
    far_invites = far.received("INVITE")
    assert len({m.call_id for m in far_invites}) == calls, far.describe()
    assert len(far_invites) >= 2 * calls
    # One CDR per call, answered, tying each caller's Call-ID to one far-end Call-ID.
    records = await node.records()
    assert len(records) == calls
    assert {r.status for r in records} == {"answered"}
    assert {r.a_sip_call_id for r in records} == {m.call_id for m in caller.sent("INVITE")}
    assert {r.b_sip_call_id for r in records} == {m.call_id for m in far_invites}
    # One status report per call, each delivered once.
    assert len(node.receiver.on("/status")) == calls
    assert {report["status"] for report in reports} == {"answered"}
    assert len({r.headers.get("webhook-id") for r in node.receiver.on("/status")}) == calls
    # The copies really happened, both ways on both legs, in-dialog requests included:
    # per call the caller sends INVITE, ACK and BYE, callmask answers at least 180, 200
    # and 200 (BYE); callmask sends the far end INVITE, ACK and BYE, it answers 180, 200
    # and 200 (BYE).
    for leg in (caller_leg, trunk_leg):
        counts = leg.counts
        assert counts.strays == 0, counts
        assert counts.received["a->b"] >= 3 * calls and counts.received["b->a"] >= 3 * calls
        assert counts.duplicated >= sum(counts.received.values()), counts


async def test_a_caller_pressing_keys_is_heard_both_as_rtp_events_and_as_sip_info(
    node: Node,
) -> None:
    # 1 2 3 4 # as RFC 4733 events (decoded by rtpengine, reported to the node), then
    # 5 in a SIP INFO: both reach the call, which counts them per side and path.
    node.receiver.always("/callback", Reply(body=DIAL))
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, "uac_dtmf.xml", hold_ms="2500")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    assert far.returncode == 0, far.describe()
    record = await the_record(node)
    details = json.loads(record.details or "{}")
    assert details["dtmf"] == {"caller_rfc4733": 5, "caller_info": 1}, details
