"""The carrier scenarios prove themselves against each other, without callmask: every uac_*
scenario is pointed at a SIPp running a uas_* scenario, and the harness must read back what
each side saw (status codes, headers, SDP) and the RTP that flowed between them.

If one of these fails, the callmask interop tests that use the same scenario cannot be trusted.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.sipp import (
    DEFAULT_VARIABLES,
    G711A_PCAP,
    RtpCapture,
    SipMessage,
    SippUas,
    anchored_media,
    digest_response_valid,
    error_codes_offered,
    free_media_port,
    free_udp_port,
    parse_digest,
    parse_message_trace,
    rtp_capture_available,
    run_uac,
    scenario_variables,
    sipp_available,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not sipp_available(), reason="SIPp (Debian sip-tester) is not installed"),
]

needs_capture = pytest.mark.skipif(
    not rtp_capture_available(), reason="watching loopback needs CAP_NET_RAW"
)

DID = "4930901820"
CALLER = "4915112345678"


@pytest.fixture
def b_port() -> int:
    return free_udp_port()


def the_one(messages: list[SipMessage]) -> SipMessage:
    assert len(messages) >= 1, "expected the message at least once"
    return messages[0]


async def test_a_carrier_call_to_an_answering_far_end_completes_and_is_read_back(
    b_port: int,
) -> None:
    async with SippUas("uas_answer", port=b_port, calls=1, variables={"ring_ms": "200"}) as b:
        a = await run_uac(
            "uac_call",
            target=b.address,
            service=DID,
            variables={"caller": CALLER, "hold_ms": "300"},
            timeout_s=15,
        )
        b_result = await b.wait(timeout_s=10)

    assert a.returncode == 0 and a.successful == 1 and a.failed == 0, a.describe()
    assert b_result.returncode == 0 and b_result.successful == 1, b_result.describe()

    # What B received: the carrier's INVITE with the DID and the caller's identity.
    invite = the_one(b_result.received("INVITE"))
    assert invite.request_uri == f"sip:{DID}@127.0.0.1:{b_port}"
    assert f"sip:{CALLER}@127.0.0.1" in (invite.header("From") or "")
    assert invite.header("f") == invite.header("From"), "compact form of From"
    offer = invite.sdp_audio()
    assert offer is not None and offer.connection_address == "127.0.0.1"
    assert offer.payload_types == (8, 0, 101)

    # What A received: 180, then 200 whose SDP is B's media address.
    assert a.statuses_received() == [100, 180, 200]
    assert a.final_status() == 200
    answer = the_one(a.received(200)).sdp_audio()
    assert answer is not None
    assert answer.address == ("127.0.0.1", b.media_port)
    assert answer.payload_types == (8, 101) and answer.direction == "sendrecv"
    assert offer.address == the_one(a.sent("INVITE")).sdp_audio().address  # type: ignore[union-attr]

    # A hung up: A sent BYE, B answered it; both ends agree on the dialog.
    bye = the_one(b_result.received("BYE"))
    assert bye.call_id == invite.call_id
    assert the_one(a.received(200)).header("To") == bye.header("To")
    assert [m.first_line for m in a.sent("BYE")] and not a.received("BYE")

    # The message times follow the scenario: about ring_ms from 180 to 200 and hold_ms from the
    # ACK to the BYE.
    ack_sent = the_one(a.sent("ACK")).timestamp
    bye_sent = the_one(a.sent("BYE")).timestamp
    assert 0.25 <= bye_sent - ack_sent <= 1.0


async def test_the_far_end_hangs_up_first_and_the_caller_answers_its_bye(b_port: int) -> None:
    async with SippUas("uas_answer_bye", port=b_port, calls=2, variables={"hold_ms": "200"}) as b:
        # uac_call survives a BYE from the far end while it talks ...
        a1 = await run_uac(
            "uac_call",
            target=b.address,
            service=DID,
            variables={"hold_ms": "10000", "linger_ms": "200"},
            timeout_s=15,
        )
        # ... and uac_call_remote_bye waits for one.
        a2 = await run_uac(
            "uac_call_remote_bye",
            target=b.address,
            service=DID,
            variables={"linger_ms": "200"},
            timeout_s=15,
        )
        b_result = await b.wait(timeout_s=10)

    for a in (a1, a2):
        assert a.returncode == 0 and a.successful == 1, a.describe()
        bye = the_one(a.received("BYE"))
        assert not a.sent("BYE")
        # B's BYE goes to A's Contact, with From/To swapped relative to the INVITE.
        invite = the_one(a.sent("INVITE"))
        assert bye.request_uri is not None and bye.request_uri in (invite.header("Contact") or "")
        assert (bye.header("To") or "").startswith((invite.header("From") or "").split(";")[0])
        assert the_one(a.sent(200)).cseq_method == "BYE"
    assert b_result.returncode == 0 and b_result.successful == 2, b_result.describe()


async def test_a_busy_far_end_gives_the_caller_486_and_takes_the_ack(b_port: int) -> None:
    async with SippUas("uas_busy", port=b_port, calls=1) as b:
        a = await run_uac(
            "uac_expect_final", target=b.address, service=DID, variables={"linger_ms": "0"}
        )
        b_result = await b.wait(timeout_s=10)

    assert a.returncode == 0 and a.successful == 1, a.describe()
    assert a.final_status() == 486
    assert the_one(a.received(486)).first_line == "SIP/2.0 486 Busy Here"
    assert b_result.returncode == 0 and b_result.successful == 1, b_result.describe()
    # The ACK for a non-2xx final response is hop-by-hop: same branch as the INVITE.
    assert (
        the_one(b_result.received("ACK")).via_branch
        == the_one(b_result.received("INVITE")).via_branch
    )


@pytest.mark.parametrize(
    ("code", "reason"), [(480, "Temporarily Unavailable"), (503, "Service Unavailable"), (603, "")]
)
async def test_a_far_end_rejecting_with_a_chosen_code_is_seen_by_the_caller(
    b_port: int, code: int, reason: str
) -> None:
    variables = {"code": str(code), "ring_ms": "0"}
    if reason:
        variables["reason"] = reason
    async with SippUas("uas_error", port=b_port, calls=1, variables=variables) as b:
        a = await run_uac(
            "uac_expect_final", target=b.address, service=DID, variables={"linger_ms": "0"}
        )
        b_result = await b.wait(timeout_s=10)

    assert a.returncode == 0 and a.successful == 1, a.describe()
    assert a.final_status() == code
    final = the_one(a.received(code))
    assert final.first_line == f"SIP/2.0 {code} {reason or 'Decline'}"
    assert b_result.successful == 1, b_result.describe()


async def test_the_expect_final_caller_fails_the_call_when_it_is_answered_instead(
    b_port: int,
) -> None:
    async with SippUas("uas_answer", port=b_port, calls=1) as b:
        a = await run_uac(
            "uac_expect_final", target=b.address, service=DID, variables={"linger_ms": "0"}
        )
        b_result = await b.wait(timeout_s=10)

    assert a.final_status() == 200
    assert a.returncode == 1 and a.failed == 1, a.describe()
    # It still ended the dialog it did not want.
    assert the_one(b_result.received("BYE")).cseq_method == "BYE"
    assert b_result.successful == 1, b_result.describe()


async def test_a_caller_cancels_a_ringing_far_end_that_never_answers(b_port: int) -> None:
    async with SippUas("uas_no_answer", port=b_port, calls=1) as b:
        a = await run_uac(
            "uac_cancel",
            target=b.address,
            service=DID,
            variables={"cancel_after_ms": "300", "linger_ms": "0"},
        )
        b_result = await b.wait(timeout_s=10)

    assert a.returncode == 0 and a.successful == 1, a.describe()
    assert b_result.returncode == 0 and b_result.successful == 1, b_result.describe()
    invite = the_one(a.sent("INVITE"))
    cancel = the_one(a.sent("CANCEL"))
    # RFC 3261 section 9.1: the CANCEL matches the INVITE it cancels.
    assert cancel.via_branch == invite.via_branch
    assert cancel.request_uri == invite.request_uri
    assert (cancel.header("CSeq") or "").split()[0] == (invite.header("CSeq") or "").split()[0]
    assert [m.cseq_method for m in a.received(200)] == ["CANCEL"]
    assert a.final_status() == 487
    assert 0.25 <= cancel.timestamp - the_one(a.received(180)).timestamp <= 1.0
    # B saw the CANCEL and the ACK for its 487.
    assert the_one(b_result.received("CANCEL")).call_id == invite.call_id
    assert the_one(b_result.received("ACK")).via_branch == invite.via_branch


@needs_capture
async def test_early_media_reaches_the_caller_before_the_answer(b_port: int) -> None:
    a_media = free_media_port()
    early_media_b = SippUas("uas_early_media", port=b_port, calls=1, variables={"ring_ms": "600"})
    async with RtpCapture() as capture, early_media_b as b:
        a = await run_uac(
            "uac_call",
            target=b.address,
            service=DID,
            variables={"hold_ms": "200"},
            media_port=a_media,
        )
        b_result = await b.wait(timeout_s=10)

    assert a.returncode == 0 and a.successful == 1, a.describe()
    assert b_result.successful == 1, b_result.describe()
    assert a.statuses_received() == [100, 183, 200]
    progress = the_one(a.received(183))
    early_sdp = progress.sdp_audio()
    assert early_sdp is not None and early_sdp.address == ("127.0.0.1", b.media_port)
    answered_at = the_one(a.received(200)).timestamp
    b_to_a = capture.between(source=("127.0.0.1", b.media_port), destination=("127.0.0.1", a_media))
    # B's audio starts with the 183: at 30 ms per packet, 600 ms of ringing is ~20 packets that
    # reach A's port before the 200 does.
    early = [p for p in b_to_a if p.captured_at < answered_at]
    assert len(early) >= 10, capture.flows()
    assert len(b_to_a) > len(early), "B's audio goes on after the answer"


@needs_capture
async def test_audio_flows_both_ways_between_the_two_carriers_sipps(b_port: int) -> None:
    """How the callmask tests prove RTP flowed: RtpCapture watches loopback and reports every
    RTP packet by (source, destination); the SDP in each SIPp's trace says which ports to
    expect. Here A and B talk directly, so A's offer port and B's answer port must carry
    PCMA both ways for as long as the call lasted."""
    a_media = free_media_port()
    answering_b = SippUas("uas_answer", port=b_port, calls=1, variables={"ring_ms": "0"})
    async with RtpCapture() as capture, answering_b as b:
        a = await run_uac(
            "uac_call",
            target=b.address,
            service=DID,
            variables={"hold_ms": "900"},
            media_port=a_media,
        )
        b_result = await b.wait(timeout_s=10)

    assert a.successful == 1 and b_result.successful == 1, a.describe() + b_result.describe()
    offer = the_one(b_result.received("INVITE")).sdp_audio()
    answer = the_one(a.received(200)).sdp_audio()
    assert offer is not None and answer is not None
    assert offer.port == a_media and answer.port == b.media_port

    a_to_b = capture.between(source=("127.0.0.1", a_media), destination=answer.address)
    b_to_a = capture.between(source=("127.0.0.1", b.media_port), destination=offer.address)
    # g711a.pcap sends one 30 ms PCMA packet at a time: 900 ms of talk is ~30 packets; allow
    # for the start and stop of SIPp's playback threads.
    assert 20 <= len(a_to_b) <= 40, capture.flows()
    assert 20 <= len(b_to_a) <= 40, capture.flows()
    assert {p.payload_type for p in a_to_b + b_to_a} == {8}
    assert all(p.payload_size == 240 for p in a_to_b + b_to_a)
    # One stream per direction, in order.
    for packets in (a_to_b, b_to_a):
        assert len({p.ssrc for p in packets}) == 1
        numbers = [p.sequence_number for p in packets]
        assert numbers == sorted(numbers)
    assert G711A_PCAP.is_file()

    # The same check as a callmask test makes, where rtpengine sits between A and B: here
    # the "relay" each side was given is simply the other side.
    media = anchored_media(a, b_result)
    assert media.relay_for_a == media.b and media.relay_for_b == media.a
    counts = media.counts(capture)
    assert counts["a->relay"] == len(a_to_b) and counts["relay->a"] == len(b_to_a)


async def test_a_trunk_that_challenges_with_407_gets_checkable_credentials(b_port: int) -> None:
    user, password = DEFAULT_VARIABLES["auth_user"], DEFAULT_VARIABLES["auth_password"]
    async with SippUas("uas_auth", port=b_port, calls=1) as b:
        a = await run_uac(
            "uac_auth",
            target=b.address,
            service=DID,
            variables={"hold_ms": "200"},
            extra_args=["-au", user, "-ap", password],
        )
        b_result = await b.wait(timeout_s=10)

    assert a.returncode == 0 and a.successful == 1, a.describe()
    assert b_result.returncode == 0 and b_result.successful == 1, b_result.describe()
    challenge = the_one(b_result.sent(407)).header("Proxy-Authenticate") or ""
    assert parse_digest(challenge)["nonce"] == DEFAULT_VARIABLES["nonce"]
    first, second = b_result.received("INVITE")[:2]
    assert first.header("Proxy-Authorization") is None
    assert second.call_id == first.call_id
    # SIPp cannot verify Proxy-Authorization; the harness does.
    assert digest_response_valid(second, username=user, password=password)
    assert not digest_response_valid(second, username=user, password="wrong")
    credentials = parse_digest(second.header("Proxy-Authorization") or "")
    assert credentials["realm"] == DEFAULT_VARIABLES["realm"]
    assert credentials["qop"] == "auth"


@pytest.mark.parametrize("password_ok", [True, False])
async def test_a_trunk_that_challenges_with_401_verifies_the_password_itself(
    b_port: int, password_ok: bool
) -> None:
    user, password = DEFAULT_VARIABLES["auth_user"], DEFAULT_VARIABLES["auth_password"]
    async with SippUas("uas_auth_401", port=b_port, calls=1) as b:
        a = await run_uac(
            "uac_auth",
            target=b.address,
            service=DID,
            variables={"hold_ms": "200"},
            extra_args=["-au", user, "-ap", password if password_ok else "not-the-password"],
            timeout_s=15,
        )
        b_result = await b.wait(timeout_s=10)

    second = b_result.received("INVITE")[-1]
    assert second.header("Authorization") is not None
    if password_ok:
        assert b_result.successful == 1 and b_result.returncode == 0, b_result.describe()
        assert a.successful == 1, a.describe()
        assert digest_response_valid(
            second, username=user, password=password, header="Authorization"
        )
    else:
        assert b_result.failed == 1, b_result.describe()
        assert a.statuses_received()[-1] == 403, a.describe()


async def test_a_call_over_tcp_completes(b_port: int) -> None:
    # SIPp counts a call as failed (FailedTcpClosed) when the peer closes the connection while
    # the call is still on it, and a SIPp closes its connections when it exits. So B hangs up
    # (its call ends at the 200 for its BYE), A lingers after that 200, and B keeps running
    # until A is done. callmask keeps its connections open; only SIPp-to-SIPp needs this.
    async with SippUas(
        "uas_answer_bye", port=b_port, transport="tcp", variables={"hold_ms": "200"}
    ) as b:
        a = await run_uac(
            "uac_call_remote_bye",
            target=b.address,
            service=DID,
            variables={"linger_ms": "300"},
            transport="tcp",
        )
        b_result = await b.stop()
    assert a.successful == 1 and b_result.successful == 1, a.describe() + b_result.describe()
    invite = the_one(b_result.received("INVITE"))
    assert invite.transport == "TCP"
    assert "SIP/2.0/TCP" in (invite.header("Via") or "")
    assert the_one(a.received("BYE")).transport == "TCP"


async def test_twenty_calls_with_five_percent_loss_on_both_sides_all_complete(
    b_port: int,
) -> None:
    calls = 20
    # B stays on each call for as long as A may retransmit its BYE (SIPp: 500 ms doubling
    # to T2 = 4 s, 5 retransmissions, the last 11.5 s after the first BYE). B runs for
    # `calls` calls and then exits; with a shorter linger a call whose 200s to the BYE were
    # lost a few times over outlived B's copy of it, and A's last retransmissions went
    # unanswered.
    async with SippUas(
        "uas_answer",
        port=b_port,
        calls=calls,
        variables={"ring_ms": "100", "linger_ms": "12000"},
        extra_args=["-lost", "5"],
    ) as b:
        a = await run_uac(
            "uac_call",
            target=b.address,
            service=DID,
            calls=calls,
            rate=10,
            variables={"hold_ms": "300", "linger_ms": "4000"},
            extra_args=["-lost", "5"],
            timeout_s=60,
        )
        b_result = await b.wait(timeout_s=30)

    both = f"caller A: {a.describe()}\nfar end B: {b_result.describe()}"
    assert a.successful == calls and a.failed == 0, both
    assert b_result.successful == calls and b_result.failed == 0, both
    # Loss really was simulated, and recovered by retransmission.
    dropped = [m for m in a.messages + b_result.messages if m.lost]
    dropped_unsent = a.lost_on_send + b_result.lost_on_send
    assert dropped or dropped_unsent, "no loss happened: the test proved nothing"


async def test_a_uas_that_gets_no_call_is_stopped_on_exit(b_port: int) -> None:
    async with SippUas("uas_answer", port=b_port) as b:
        await asyncio.sleep(0.1)
    assert b.result is not None
    assert b.result.successful == 0 and b.result.messages == []


def test_a_scenario_refuses_a_variable_it_does_not_declare(b_port: int) -> None:
    assert scenario_variables("uac_call") == ("caller", "hold_ms", "linger_ms")
    with pytest.raises(ValueError, match="hold_time"):
        SippUas("uas_answer", port=b_port, variables={"hold_time": "1"})
    with pytest.raises(ValueError, match="499"):
        SippUas("uas_error", port=b_port, variables={"code": "499"})
    assert {480, 486, 503, 603} <= set(error_codes_offered())


def test_the_message_trace_parser_keeps_exact_bodies_and_marks_simulated_loss() -> None:
    invite = (
        b"INVITE sip:1@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK-1\r\n"
        b"Subject: a folded\r\n header\r\nContent-Type: application/sdp\r\nContent-Length: 61\r\n"
        b"\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 8\r\n----------\r\n"
    )
    ok = b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    trace = (
        b"----------------------------------------------- 2026-01-02 03:04:05.000001\n"
        b"UDP message sent (%d bytes):\n\n%s\n"
        % (len(invite), invite)
        + b"----------------------------------------------- 2026-01-02 03:04:05.500000\n"
        b"UDP message received [%d] bytes :\n\n%s\nUDP message lost (recv)."
        % (len(ok), ok)
        + b"----------------------------------------------- 2026-01-02 03:04:06.000000\n"
        b"UDP message received [%d] bytes :\n\n%s\n" % (len(ok), ok)
    )
    sent, dropped, received = parse_message_trace(trace)
    assert sent.method == "INVITE" and sent.direction == "sent"
    assert sent.header("Via") == "SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK-1"
    assert sent.via_branch == "z9hG4bK-1"
    assert sent.header("subject") == "a folded header"
    assert sent.body.endswith("----------\r\n")
    audio = sent.sdp_audio()
    assert audio is not None and audio.address == ("127.0.0.1", 4000)
    assert dropped.lost and dropped.status == 200
    assert not received.lost and received.cseq_method == "INVITE"
    assert received.timestamp - sent.timestamp == pytest.approx(0.999999)


def test_digest_check_matches_the_rfc_2617_example() -> None:
    # RFC 2617 section 3.5.
    request = SipMessage(
        "GET /dir/index.html HTTP/1.1",
        [
            (
                "Authorization",
                'Digest username="Mufasa", realm="testrealm@host.com", '
                'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
                'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
                'opaque="5ccc069c403ebaf9f0171e9517f40e41"',
            )
        ],
        "",
        "received",
    )
    assert digest_response_valid(
        request, username="Mufasa", password="Circle Of Life", header="Authorization"
    )
    assert not digest_response_valid(
        request, username="Mufasa", password="circle of life", header="Authorization"
    )
