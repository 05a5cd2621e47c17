"""Recorded Plivo sessions, end to end: the official plivo SDK creates a session with
``record``, SIPp is the carrier on both sides, the managed rtpengine records the call
(pcap), callmask mixes the file, announces it to the customer's
``recording_callback_url`` (a loopback HTTP server) and serves it to the account that
owns it, and only to that account."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from typing import Any

import httpx
import pytest
from plivo.rest.client import Client
from sqlalchemy import select

from callmask.media.audio import inspect_mp3
from callmask.store.models import CallRecord, Recording
from tests.calls import conftest as calls_rig
from tests.calls.conftest import B_NUMBER, CALLER, Node
from tests.calls.test_masking_calls import call
from tests.conftest import create_tenant
from tests.plivo.conftest import auth_id, plivo_auth
from tests.plivo.test_calls import plivo_pool_of_the_did, sdk, served
from tests.support.sipp import RtpCapture, SippUas, free_media_port

pytestmark = pytest.mark.interop

__all__ = ["served"]  # the fixture, used by name
node = calls_rig.node  # the node of tests/calls, with its call path

CALLBACK = "/recording"


def the_callback(node: Node, index: int = 0) -> dict[str, Any]:
    return json.loads(node.receiver.on(CALLBACK)[index].body)


async def the_call(node: Node) -> CallRecord:
    (record,) = await node.records()
    return record


def talk_seconds(record: CallRecord) -> float:
    assert record.answered_at is not None and record.ended_at is not None
    return (record.ended_at - record.answered_at).total_seconds()


async def test_a_pin_session_with_recording_is_recorded_and_served_only_to_its_account(
    node: Node, served: str
) -> None:
    await plivo_pool_of_the_did(node, served)
    client = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10)
    await sdk(
        lambda: client.masking_sessions.create_masking_session(
            first_party=CALLER,
            second_party=B_NUMBER,
            is_pin_authentication_required=True,
            first_party_pin="1234",
            second_party_pin="5678",
            record=True,
            recording_callback_url=node.receiver.url(CALLBACK),
        )
    )
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        # 1 2 3 4 # as RFC 4733 events; the call is held 6 s from the ACK.
        caller = await call(node, "uac_dtmf.xml", hold_ms="6000")
        far = await far_end.wait(20)
    assert caller.returncode == 0, caller.describe()
    assert CALLER not in far.received("INVITE")[0].text
    record = await the_call(node)
    details = json.loads(record.details or "{}")
    assert record.status == "answered", (record.hangup_cause, details)
    assert details["pin"]["result"] == "correct"
    assert details["recording"]["consent_ms"] > 500

    await node.receiver.wait_for(CALLBACK, timeout_s=20)
    announced = the_callback(node)
    assert announced["recording_status"] == "completed", announced
    assert announced["call_uuid"] == record.call_id
    got: Any = await sdk(lambda: client.recordings.get(announced["recording_id"]))
    assert got.recording_format == "mp3" and got.recording_url == announced["recording_url"]
    listed: Any = await sdk(lambda: client.recordings.list(call_uuid=record.call_id))
    assert [r.recording_id for r in listed] == [announced["recording_id"]]

    # The file, at recording_url, for its own account: a real MP3 as long as the talk.
    url = announced["recording_url"].replace(node.settings.effective_public_url, served)
    async with httpx.AsyncClient(timeout=10) as http:
        mine = await http.get(url, auth=plivo_auth(node.tenant))
        assert mine.status_code == 200, mine.text
        assert mine.headers["content-type"] == "audio/mpeg"
        heard_ms = inspect_mp3(mine.content).duration_ms
        assert abs(heard_ms / 1000 - talk_seconds(record)) <= 1.0, (heard_ms, record)
        assert abs(float(got.recording_duration_ms) - heard_ms) <= 100

        # Another account, with its own valid credentials, finds nothing; no
        # credentials get 401.
        other = await create_tenant(node.database, "other")
        theirs = await http.get(
            url.replace(auth_id(node.tenant), auth_id(other)), auth=plivo_auth(other)
        )
        assert theirs.status_code == 404, theirs.text
        assert (await http.get(url)).status_code == 401
        listing = await http.get(
            f"{served}/plivo/v1/Account/{auth_id(other)}/Recording/", auth=plivo_auth(other)
        )
        assert listing.json()["objects"] == []

    # Deleted: gone from the API and from the disk.
    await sdk(lambda: client.recordings.delete(announced["recording_id"]))
    async with node.database.session() as session:
        assert (await session.scalars(select(Recording))).all() == []
    assert not list(node.settings.recordings_dir.glob(f"*/{announced['recording_id']}.*"))
    async with httpx.AsyncClient(timeout=10) as http:
        gone = await http.get(url, auth=plivo_auth(node.tenant))
    assert gone.status_code == 404


async def test_both_parties_hear_the_consent_announcement_before_they_hear_each_other(
    node: Node, served: str
) -> None:
    await plivo_pool_of_the_did(node, served)
    client = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10)
    await sdk(
        lambda: client.masking_sessions.create_masking_session(
            first_party=CALLER,
            second_party=B_NUMBER,
            record=True,
            record_file_format="wav",
            recording_callback_url=node.receiver.url(CALLBACK),
        )
    )
    caller_media, far_media = free_media_port(), free_media_port()
    async with (
        RtpCapture() as rtp,
        SippUas("uas_answer.xml", port=node.trunk_port, calls=1, media_port=far_media) as far_end,
    ):
        caller = await call(node, hold_ms="5000", media_port=caller_media)
        await far_end.wait(20)
    assert caller.returncode == 0, caller.describe()
    record = await the_call(node)
    consent_ms = json.loads(record.details or "{}")["recording"]["consent_ms"]
    assert consent_ms > 500

    # Each party sends its own audio (SIPp's pcap) to rtpengine. While the consent
    # plays, what rtpengine sends a party is the announcement (rtpengine's own SSRC),
    # not the other party's audio; after it, the other party's audio.
    caller_ssrcs = {p.ssrc for p in rtp.between(caller_media) if p.payload_type != 101}
    far_ssrcs = {p.ssrc for p in rtp.between(far_media) if p.payload_type != 101}
    assert caller_ssrcs and far_ssrcs, rtp.flows()
    for party, other_ssrcs in ((caller_media, far_ssrcs), (far_media, caller_ssrcs)):
        heard = sorted(
            (p for p in rtp.between(None, party) if p.payload_type != 101),
            key=lambda p: p.captured_at,
        )
        announcement = [p for p in heard if p.ssrc not in other_ssrcs]
        assert len(announcement) >= consent_ms / 20 * 0.8, (party, len(announcement))
        other_party = [p for p in heard if p.ssrc in other_ssrcs]
        assert other_party, f"party on {party} never heard the other party"
        assert other_party[0].captured_at >= announcement[0].captured_at + consent_ms / 1000 * 0.8

    # The recording: a WAV of both streams, as long as the talk.
    await node.receiver.wait_for(CALLBACK, timeout_s=20)
    announced = the_callback(node)
    assert announced["recording_status"] == "completed", announced
    assert announced["recording_format"] == "wav"
    url = announced["recording_url"].replace(node.settings.effective_public_url, served)
    async with httpx.AsyncClient(timeout=10) as http:
        got = await http.get(url, auth=plivo_auth(node.tenant))
    assert got.status_code == 200 and got.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(got.content)) as audio:
        assert (audio.getnchannels(), audio.getframerate(), audio.getsampwidth()) == (1, 8000, 2)
        seconds = audio.getnframes() / 8000
    assert abs(seconds - talk_seconds(record)) <= 1.0, (seconds, talk_seconds(record))


async def test_a_recording_rtpengine_did_not_write_is_reported_failed_never_absent(
    node: Node, served: str
) -> None:
    await plivo_pool_of_the_did(node, served)
    client = Client(auth_id(node.tenant), node.tenant.api_key, timeout=10)
    await sdk(
        lambda: client.masking_sessions.create_masking_session(
            first_party=CALLER,
            second_party=B_NUMBER,
            record=True,
            recording_callback_url=node.receiver.url(CALLBACK),
        )
    )
    # rtpengine's file disappears from the spool while the call is up (a full or
    # cleaned-up disk): the node cannot mix it.
    pcaps = node.settings.effective_recording_spool / "pcaps"
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
        calling = asyncio.create_task(call(node, hold_ms="4000"))
        async with asyncio.timeout(10):
            # rtpengine tells nobody when it opens the file: looked for until it is there.
            while not (written := list(pcaps.glob("*.pcap"))):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        for pcap in written:
            pcap.unlink()
        caller = await calling
        await far_end.wait(20)
    assert caller.returncode == 0, caller.describe()
    await node.receiver.wait_for(CALLBACK, timeout_s=20)
    announced = the_callback(node)
    assert announced["recording_status"] == "failed"
    assert "no recording file" in announced["failure_reason"]
    assert announced["recording_url"] == ""
    listed: Any = await sdk(lambda: client.recordings.list())
    assert [r.recording_status for r in listed] == ["failed"]
