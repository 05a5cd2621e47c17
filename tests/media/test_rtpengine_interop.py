"""The ng client against the real rtpengine (Debian rtpengine-daemon), started and stopped
by ManagedRtpengine: media anchoring between two phones, announcements, statistics."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from mutagen.mp3 import MP3

from callmask.media.rtpengine import RtpengineClient, RtpengineError, packet_counts
from callmask.media.rtpengine_process import ManagedRtpengine
from tests.support.rtp import (
    PCMU_PACKET_BYTES,
    PCMU_PAYLOAD_TYPE,
    RtpPeer,
    parse_rtp_packet,
    sdp_media_address,
    sdp_origin_address,
)

pytestmark = pytest.mark.interop

Engine = tuple[ManagedRtpengine, range]


def call_id() -> str:
    return f"{uuid.uuid4().hex}@test"


async def test_rtpengine_answers_an_ng_ping(ng_client: RtpengineClient) -> None:
    await ng_client.ping()


async def test_a_call_is_anchored_and_each_phone_hears_the_other_only_through_rtpengine(
    rtpengine: Engine, ng_client: RtpengineClient
) -> None:
    _, media_ports = rtpengine
    packets = 50
    the_call = call_id()
    async with RtpPeer(ssrc=0x0A0A0A0A) as caller, RtpPeer(ssrc=0x0B0B0B0B) as callee:
        # The caller's SDP carries a private origin address and an ICE candidate; neither
        # may reach the callee.
        offer_for_callee = await ng_client.offer(
            the_call,
            "caller-tag",
            caller.sdp(
                origin_address="192.0.2.10",
                extra_lines=(f"a=candidate:1 1 udp 2122260223 192.0.2.10 {caller.port} typ host",),
            ),
        )
        answer_for_caller = await ng_client.answer(
            the_call, "caller-tag", "callee-tag", callee.sdp(session_id=7)
        )

        assert "192.0.2.10" not in offer_for_callee
        assert "a=candidate" not in offer_for_callee
        assert sdp_origin_address(offer_for_callee) == "127.0.0.1"
        # The callee sends to what the offer told it; the caller to what the answer told it.
        to_caller_via_rtpengine = sdp_media_address(offer_for_callee)
        to_callee_via_rtpengine = sdp_media_address(answer_for_caller)
        assert to_caller_via_rtpengine[1] in media_ports
        assert to_callee_via_rtpengine[1] in media_ports
        assert to_caller_via_rtpengine[1] not in (caller.port, callee.port)

        await asyncio.gather(
            caller.send_stream(to_callee_via_rtpengine, packets, payload=b"\x01" * 160),
            callee.send_stream(to_caller_via_rtpengine, packets, payload=b"\x02" * 160),
        )
        at_callee = await callee.wait_for_packets(packets, timeout_s=5.0)
        at_caller = await caller.wait_for_packets(packets, timeout_s=5.0)

        assert len(at_callee) == packets
        assert len(at_caller) == packets
        # Each side sees rtpengine's port (the one it was told to send to), never the peer's.
        assert {p.source for p in at_callee} == {to_caller_via_rtpengine}
        assert {p.source for p in at_caller} == {to_callee_via_rtpengine}
        first = parse_rtp_packet(at_callee[0].data)
        assert first.payload_type == PCMU_PAYLOAD_TYPE
        assert first.ssrc == 0x0A0A0A0A
        assert first.payload == b"\x01" * PCMU_PACKET_BYTES
        assert parse_rtp_packet(at_caller[-1].data).payload == b"\x02" * PCMU_PACKET_BYTES

        during = packet_counts(await ng_client.query(the_call))
        stats = await ng_client.delete(the_call, "caller-tag")

    assert during == {"caller-tag": packets, "callee-tag": packets}
    assert stats["result"] == "ok"
    assert packet_counts(stats) == {"caller-tag": packets, "callee-tag": packets}
    with pytest.raises(RtpengineError):
        await ng_client.query(the_call)


async def test_deleting_a_call_without_its_tag_still_reports_statistics(
    ng_client: RtpengineClient,
) -> None:
    the_call = call_id()
    async with RtpPeer(ssrc=1) as caller, RtpPeer(ssrc=2) as callee:
        await ng_client.offer(the_call, "a", caller.sdp())
        answer = await ng_client.answer(the_call, "a", "b", callee.sdp())
        await caller.send_stream(sdp_media_address(answer), 5, interval_s=0.005)
        await callee.wait_for_packets(5, timeout_s=5.0)
        stats = await ng_client.delete(the_call)

    assert packet_counts(stats) == {"a": 5, "b": 0}
    with pytest.raises(RtpengineError, match="Unknown call"):
        await ng_client.query(the_call)
    # Deleting again is harmless: ok, with a warning and no statistics.
    again = await ng_client.delete(the_call, "a")
    assert again["result"] == "ok"
    assert "warning" in again
    assert packet_counts(again) == {}


async def test_rtpengine_refusals_surface_as_rtpengine_error_with_its_reason(
    ng_client: RtpengineClient,
) -> None:
    with pytest.raises(RtpengineError) as unknown:
        await ng_client.answer(call_id(), "a", "b", "v=0\r\n")
    assert unknown.value.result == "error"
    assert unknown.value.reason

    with pytest.raises(RtpengineError, match="parse SDP"):
        await ng_client.offer(call_id(), "a", "this is not SDP")

    the_call = call_id()
    async with RtpPeer(ssrc=3) as caller:
        await ng_client.offer(the_call, "a", caller.sdp())
        with pytest.raises(RtpengineError, match="media playback"):
            await ng_client.play_media(the_call, "a", "/nonexistent/announcement.mp3")
        await ng_client.delete(the_call, "a")


@pytest.fixture(scope="module")
def announcement(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """An MP3 spoken by espeak-ng and encoded by lame, and its duration per mutagen."""
    if shutil.which("espeak-ng") is None or shutil.which("lame") is None:
        pytest.skip("espeak-ng and lame are needed to make the announcement")
    directory = tmp_path_factory.mktemp("announcement")
    wav = directory / "announcement.wav"
    mp3 = directory / "announcement.mp3"
    subprocess.run(
        ["espeak-ng", "-w", str(wav), "The number you are calling is masked. Please hold."],
        check=True,
        timeout=30,
    )
    subprocess.run(["lame", "--quiet", str(wav), str(mp3)], check=True, timeout=30)
    duration_ms = round(float(MP3(str(mp3)).info.length) * 1000)  # type: ignore[no-untyped-call,attr-defined]
    return mp3, duration_ms


async def test_a_caller_hears_an_announcement_for_the_length_of_the_file(
    rtpengine: Engine, ng_client: RtpengineClient, announcement: tuple[Path, int]
) -> None:
    mp3, file_duration_ms = announcement
    _, media_ports = rtpengine
    the_call = call_id()
    # No B party: rtpengine is answered with a dummy that will never send (port 9, sendonly).
    dummy_answer = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n"
    )
    async with RtpPeer(ssrc=0xCA11E2) as caller:
        await ng_client.offer(the_call, "caller-tag", caller.sdp())
        answer_for_caller = await ng_client.answer(
            the_call, "caller-tag", "announcement", dummy_answer
        )
        rtpengine_port = sdp_media_address(answer_for_caller)
        assert rtpengine_port[1] in media_ports
        caller.send_one(rtpengine_port)  # a phone starts sending as soon as it is answered

        loop = asyncio.get_running_loop()
        started = loop.time()
        duration_ms = await ng_client.play_media(the_call, "caller-tag", str(mp3))
        heard = await caller.wait_for_quiet(quiet_s=0.5, timeout_s=file_duration_ms / 1000 + 5)
        stats = await ng_client.delete(the_call, "caller-tag")

    assert abs(duration_ms - file_duration_ms) <= 100, (duration_ms, file_duration_ms)
    expected_packets = duration_ms / 20
    assert expected_packets * 0.9 <= len(heard) <= expected_packets * 1.1 + 2, (
        len(heard),
        expected_packets,
    )
    assert {p.source for p in heard} == {rtpengine_port}
    span_s = heard[-1].received_at - heard[0].received_at
    # Paced in real time, not dumped at once.
    assert span_s == pytest.approx(duration_ms / 1000, abs=0.3)
    assert heard[0].received_at - started < 1.0
    packets = [parse_rtp_packet(p.data) for p in heard]
    assert {p.payload_type for p in packets} == {PCMU_PAYLOAD_TYPE}
    assert all(len(p.payload) == PCMU_PACKET_BYTES for p in packets)
    sequence_steps = {
        (later.sequence_number - earlier.sequence_number) & 0xFFFF
        for earlier, later in itertools.pairwise(packets)
    }
    assert sequence_steps == {1}
    assert packet_counts(stats)["caller-tag"] == 1
