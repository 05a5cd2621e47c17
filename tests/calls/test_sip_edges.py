"""SIP edge cases of the call path, end to end: SIPp is the carrier on both sides (or a
raw UDP socket where SIPp cannot misbehave the way a test needs), rtpengine anchors the
media, a loopback HTTP server is the customer's callback and status URL.

Covered: TCP on both legs (RFC 3261 18), a trunk that challenges the outbound INVITE
(RFC 3261 22.2, RFC 2617 digest), early media (RFC 3960: 183 with SDP before 200), hold
and resume by either party (RFC 3264 8.4: re-INVITE with a=sendonly, then a=sendrecv),
retransmitted INVITEs (RFC 3261 17.2.1), and malformed input (RFC 3261 21.4.1: 400 where
the message can be answered; dropped and counted otherwise).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import pytest

from tests.calls.conftest import B_NUMBER, CALLER, CALLER_ID, DID, Node
from tests.support.receiver import Reply
from tests.support.sipp import (
    RtpCapture,
    SdpAudio,
    SipMessage,
    SippResult,
    SippUas,
    digest_response_valid,
    free_media_port,
    parse_digest,
    parse_sip_message,
    run_uac,
)

pytestmark = pytest.mark.interop

DID_DIGITS = DID.removeprefix("+")
DIAL = {"command": "dial", "phoneNumber": B_NUMBER.removeprefix("+"), "callerId": CALLER_ID}
# The credentials the challenging trunk scenarios expect (tests/support/sipp.py defaults).
TRUNK_USER = "callmask"
TRUNK_PASSWORD = "trunk-secret"
TRUNK_REALM = "carrier.test"
TRUNK_NONCE = "5f3c1ab0e7d24c16b2a9f0c8d1e6a4b7"
TCP_TRUNK = {"trunk_uri": "sip:127.0.0.1:{trunk_port};transport=tcp"}
WITH_CREDENTIALS = {"trunk_username": TRUNK_USER, "trunk_password": TRUNK_PASSWORD}
WRONG_PASSWORD = {"trunk_username": TRUNK_USER, "trunk_password": "not-the-secret"}


async def call(
    node: Node,
    scenario: str = "uac_call.xml",
    *,
    timeout_s: float = 30,
    media_port: int | None = None,
    transport: str = "udp",
    **variables: str,
) -> SippResult:
    return await run_uac(
        scenario,
        target=("127.0.0.1", node.sip_port),
        service=DID_DIGITS,
        variables={"caller": CALLER, **variables},
        timeout_s=timeout_s,
        media_port=media_port,
        transport="tcp" if transport == "tcp" else "udp",
    )


def cseq_number(message: SipMessage) -> int:
    return int((message.header("CSeq") or "").split()[0])


def anchored(node: Node, audio: SdpAudio | None) -> bool:
    """Whether an SDP points at rtpengine (its port range on loopback)."""
    settings = node.settings
    return (
        audio is not None
        and audio.connection_address == "127.0.0.1"
        and settings.rtpengine_port_min <= audio.port <= settings.rtpengine_port_max
    )


@pytest.mark.parametrize("node", [TCP_TRUNK], indirect=True, ids=["tcp trunk"])
async def test_a_carrier_delivers_the_call_over_tcp_and_the_trunk_leg_goes_over_tcp(
    node: Node,
) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1, transport="tcp") as far_end:
        caller = await call(node, transport="tcp", hold_ms="1500")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    assert far.returncode == 0, far.describe()
    # Every message either side exchanged went over TCP, and callmask said so in its Via.
    assert {m.transport for m in caller.messages + far.messages} == {"TCP"}
    (invite,) = far.received("INVITE")
    assert (invite.header("Via") or "").startswith("SIP/2.0/TCP ")
    assert "transport=tcp" in (invite.header("Contact") or "")
    assert anchored(node, invite.sdp_audio())
    assert anchored(node, caller.received(200)[0].sdp_audio())
    assert far.received("ACK") and far.received("BYE")
    (report,) = await node.status_reports()
    assert report["status"] == "answered"
    assert isinstance(report["duration"], int) and abs(report["duration"] - 1.5) <= 1


@pytest.mark.parametrize(
    ("node", "scenario", "header"),
    [
        (WITH_CREDENTIALS, "uas_auth_401.xml", "Authorization"),
        (WITH_CREDENTIALS, "uas_auth.xml", "Proxy-Authorization"),
    ],
    ids=["401", "407"],
    indirect=["node"],
)
async def test_a_trunk_that_challenges_the_outbound_invite_gets_valid_digest_credentials(
    node: Node, scenario: str, header: str
) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    async with SippUas(scenario, port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, hold_ms="1000")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    assert far.returncode == 0, far.describe()
    first, second = far.received("INVITE")
    assert first.header(header) is None, "credentials before any challenge"
    # The retry is a new transaction in the same call (RFC 3261 22.2: same Call-ID, CSeq + 1).
    assert second.call_id == first.call_id and second.via_branch != first.via_branch
    assert cseq_number(second) == cseq_number(first) + 1
    # RFC 2617 3.2.2: the response hash matches the configured password, and it answers
    # the challenge that was made, for the Request-URI the INVITE carries.
    assert digest_response_valid(
        second, username=TRUNK_USER, password=TRUNK_PASSWORD, header=header
    )
    credentials = parse_digest(second.header(header) or "")
    assert credentials["realm"] == TRUNK_REALM and credentials["nonce"] == TRUNK_NONCE
    assert credentials["uri"] == second.request_uri
    assert credentials.get("qop") == "auth" and credentials.get("cnonce")
    assert far.received("ACK"), "the challenge is ACKed (RFC 3261 17.1.1.3)"
    (report,) = await node.status_reports()
    assert report["status"] == "answered"


@pytest.mark.parametrize("node", [WRONG_PASSWORD], indirect=True, ids=["wrong password"])
async def test_a_trunk_that_refuses_the_credentials_fails_the_call_for_the_caller(
    node: Node,
) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    async with SippUas("uas_auth_401.xml", port=node.trunk_port, calls=1) as far_end:
        caller = await call(node, "uac_expect_final.xml")
        far = await far_end.wait(15)
    # The trunk answers the wrong credentials 403; callmask tries them once only and the
    # caller hears 480 (calls/call.py _code_for_caller), the report says failed
    # (calls/outcome.py status_for_code: a 4xx that is not busy/no-answer).
    assert caller.final_status() == 480, caller.describe()
    assert far.sent(403), far.describe()
    invites = far.received("INVITE")
    assert len(invites) == 2, "credentials are tried once, not in a loop"
    second = invites[1]
    assert digest_response_valid(
        second, username=TRUNK_USER, password="not-the-secret", header="Authorization"
    )
    assert not digest_response_valid(
        second, username=TRUNK_USER, password=TRUNK_PASSWORD, header="Authorization"
    )
    (report,) = await node.status_reports()
    assert report["status"] == "failed" and report["duration"] == 0
    (record,) = await node.records()
    assert record.sip_code == 480 and "403" in record.hangup_cause


async def test_early_media_from_the_far_end_reaches_the_caller_through_rtpengine(
    node: Node,
) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    caller_media, far_media = free_media_port(), free_media_port()
    async with (
        RtpCapture() as rtp,
        SippUas(
            "uas_early_media.xml",
            port=node.trunk_port,
            calls=1,
            media_port=far_media,
            variables={"ring_ms": "1500"},
        ) as far_end,
    ):
        caller = await call(node, hold_ms="500", media_port=caller_media)
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    assert far.returncode == 0, far.describe()
    statuses = caller.statuses_received()
    assert 183 in statuses and 200 in statuses, caller.describe()
    assert statuses.index(183) < statuses.index(200)
    (progress,) = caller.received(183)
    early = progress.sdp_audio()
    assert early is not None and anchored(node, early), progress.text
    assert (progress.header("Content-Type") or "").startswith("application/sdp")
    answer = next(m for m in caller.received(200) if m.cseq_method == "INVITE")
    assert anchored(node, answer.sdp_audio())
    # The far end's announcement reached the caller from rtpengine's port before the call
    # was answered, and never straight from the far end.
    answered_at = answer.timestamp
    early_packets = [
        p
        for p in rtp.between(early.port, ("127.0.0.1", caller_media))
        if p.captured_at < answered_at
    ]
    # 1.5 s of ringing is 50 packets of 30 ms; allow for the first ones in flight.
    assert len(early_packets) > 30, rtp.flows()
    assert not rtp.between(far_media, caller_media)
    (report,) = await node.status_reports()
    assert report["status"] == "answered"
    (record,) = await node.records()
    assert record.ringing_at is not None and record.answered_at is not None
    assert (record.answered_at - record.ringing_at).total_seconds() >= 1.0


def invite_offers(result: SippResult, direction: str) -> list[SipMessage]:
    """INVITEs (initial and re-INVITEs) that SIPp sent or received, in order."""
    messages = result.sent("INVITE") if direction == "sent" else result.received("INVITE")
    unique: dict[str, SipMessage] = {}
    for message in messages:  # retransmissions repeat the CSeq
        unique.setdefault(message.header("CSeq") or "", message)
    return list(unique.values())


def direction(message: SipMessage) -> str:
    audio = message.sdp_audio()
    assert audio is not None, message.text
    return audio.direction


def answers_to_invites(result: SippResult, direction: str) -> list[SipMessage]:
    """The first 200 for each INVITE CSeq that SIPp sent or received, in order."""
    messages = result.sent(200) if direction == "sent" else result.received(200)
    unique: dict[str, SipMessage] = {}
    for message in messages:
        if message.cseq_method == "INVITE":
            unique.setdefault(message.header("CSeq") or "", message)
    return list(unique.values())


async def test_a_caller_puts_the_call_on_hold_and_resumes_through_callmask(node: Node) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    far_media = free_media_port()
    async with (
        RtpCapture() as rtp,
        SippUas("uas_answer.xml", port=node.trunk_port, calls=1, media_port=far_media) as far_end,
    ):
        caller = await call(node, "uac_hold.xml", hold_by="caller", talk_ms="800", hold_ms="800")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    assert far.returncode == 0, far.describe()
    # The far end saw the same dialog re-offered twice, each time with rtpengine's address
    # and the caller's direction: on hold (sendonly), then back (sendrecv).
    initial, hold, resume = invite_offers(far, "received")
    assert hold.call_id == resume.call_id == initial.call_id
    assert all(anchored(node, m.sdp_audio()) for m in (initial, hold, resume))
    assert [direction(hold), direction(resume)] == ["sendonly", "sendrecv"]
    for message in (hold, resume):
        assert CALLER not in message.text, "the caller leaked into a re-INVITE"
    # Callmask ACKed each 200 the far end gave (the initial one and both re-INVITEs).
    assert len({m.header("CSeq") for m in far.received("ACK")}) == 3, far.describe()
    # The caller got a 200 with rtpengine's SDP for each of its offers.
    answered = answers_to_invites(caller, "received")
    assert len(answered) == 3, caller.describe()
    assert all(anchored(node, m.sdp_audio()) for m in answered)
    # After the resume the caller's audio still reaches the far end through rtpengine.
    resume_audio = resume.sdp_audio()
    assert resume_audio is not None
    relay_port = resume_audio.port
    resumed = [
        p for p in rtp.between(relay_port, far_media) if p.captured_at > answered[2].timestamp
    ]
    assert len(resumed) > 5, rtp.flows()
    (report,) = await node.status_reports()
    assert report["status"] == "answered"
    assert len(node.receiver.on("/callback")) == 1


async def test_the_far_end_puts_the_caller_on_hold_and_resumes_through_callmask(
    node: Node,
) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    async with SippUas(
        "uas_hold.xml",
        port=node.trunk_port,
        calls=1,
        variables={"ring_ms": "100", "talk_ms": "500", "hold_ms": "800", "linger_ms": "1000"},
    ) as far_end:
        caller = await call(node, "uac_hold.xml", hold_by="far", talk_ms="500", hold_ms="0")
        far = await far_end.wait(15)
    assert caller.returncode == 0, caller.describe()
    assert far.returncode == 0, far.describe()
    # The caller is re-offered the far end's hold and resume in its own dialog, from
    # rtpengine, with nothing of the far end in it.
    initial_answer = answers_to_invites(caller, "received")[0]
    hold, resume = invite_offers(caller, "received")
    assert hold.call_id == resume.call_id == initial_answer.call_id
    assert all(anchored(node, m.sdp_audio()) for m in (hold, resume))
    assert [direction(hold), direction(resume)] == ["sendonly", "sendrecv"]
    far_invite = far.received("INVITE")[0]
    for message in (hold, resume):
        assert far_invite.call_id != message.call_id
        assert B_NUMBER.removeprefix("+") not in message.text, "the far end leaked to the caller"
    assert len({m.header("CSeq") for m in caller.received("ACK")}) == 2, caller.describe()
    # The far end's offers were answered with rtpengine's SDP and the caller's direction.
    hold_answer, resume_answer = answers_to_invites(far, "received")
    assert all(anchored(node, m.sdp_audio()) for m in (hold_answer, resume_answer))
    assert [direction(hold_answer), direction(resume_answer)] == ["recvonly", "sendrecv"]
    (report,) = await node.status_reports()
    assert report["status"] == "answered"


# --------------------------------------------------------------------------- raw SIP over UDP


class SipSocket(asyncio.DatagramProtocol):
    """A carrier that misbehaves on purpose: a UDP socket on 127.0.0.1 that sends exactly
    the bytes a test gives it and keeps every datagram that comes back."""

    def __init__(self) -> None:
        self.port = 0
        self.datagrams: list[bytes] = []
        self._arrived = asyncio.Event()
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._transport is not None:
            self._transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.datagrams.append(data)
        self._arrived.set()

    def send(self, data: bytes, port: int) -> None:
        assert self._transport is not None
        self._transport.sendto(data, ("127.0.0.1", port))

    @property
    def messages(self) -> list[SipMessage]:
        return [parse_sip_message(data, "received") for data in self.datagrams]

    async def wait_for(
        self, wanted: Callable[[SipMessage], bool], timeout_s: float = 10.0
    ) -> SipMessage:
        """The first message received (so far or within ``timeout_s``) that ``wanted`` accepts."""
        async with asyncio.timeout(timeout_s):
            for _ in range(10_000):  # one round per datagram that arrives
                for message in self.messages:
                    if wanted(message):
                        return message
                self._arrived.clear()
                await self._arrived.wait()
        raise AssertionError(f"no wanted reply among {len(self.datagrams)} datagrams")

    async def quiet(self, period_s: float) -> list[SipMessage]:
        """Everything received once nothing more has arrived for ``period_s``."""
        for _ in range(100):  # bounded: at most 100 quiet periods
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), period_s)
            except TimeoutError:
                break
        return self.messages


def sdp_offer(media_port: int) -> bytes:
    return (
        "v=0\r\no=- 4711 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()


@dataclass(frozen=True, slots=True)
class RawCall:
    """The identity of one call a SipSocket places, and the requests it sends in it."""

    node_port: int
    local_port: int
    call_id: str = field(default_factory=lambda: secrets.token_hex(12))
    from_tag: str = field(default_factory=lambda: secrets.token_hex(6))

    def request(
        self,
        method: str,
        cseq: int,
        *,
        uri: str | None = None,
        to: str | None = None,
        body: bytes = b"",
        extra: str = "",
        via: bool = True,
    ) -> bytes:
        branch = "z9hG4bK" + secrets.token_hex(8)
        lines = [f"{method} {uri or self.did_uri} SIP/2.0"]
        if via:
            lines.append(f"Via: SIP/2.0/UDP 127.0.0.1:{self.local_port};branch={branch};rport")
        lines += [
            "Max-Forwards: 70",
            f"From: <sip:{CALLER}@127.0.0.1>;tag={self.from_tag}",
            f"To: {to or '<' + self.did_uri + '>'}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{CALLER}@127.0.0.1:{self.local_port}>",
        ]
        if extra:
            lines.append(extra)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    @property
    def did_uri(self) -> str:
        return f"sip:{DID_DIGITS}@127.0.0.1:{self.node_port}"

    def invite(self) -> bytes:
        return self.request("INVITE", 1, body=sdp_offer(free_media_port()))


def is_response(status: int, method: str, call_id: str) -> Callable[[SipMessage], bool]:
    return lambda m: m.status == status and m.cseq_method == method and m.call_id == call_id


def contact_uri(message: SipMessage) -> str:
    contact = message.header("Contact") or ""
    return contact[contact.find("<") + 1 : contact.find(">")] if "<" in contact else contact


async def test_a_carrier_that_sends_its_invite_twice_gets_one_call(node: Node) -> None:
    # The callback takes a moment, as real ones do: the carrier's retransmission (RFC 3261
    # 17.1.1.2, Timer A) arrives while callmask is still asking where the call goes.
    node.receiver.always("/callback", Reply(body=DIAL, delay_s=0.5))
    async with (
        SipSocket() as carrier,
        SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end,
    ):
        raw = RawCall(node.sip_port, carrier.port)
        invite = raw.invite()
        carrier.send(invite, node.sip_port)
        await carrier.wait_for(is_response(100, "INVITE", raw.call_id), 5)
        carrier.send(invite, node.sip_port)  # the same bytes: same branch, same everything
        answer = await carrier.wait_for(is_response(200, "INVITE", raw.call_id), 10)
        to = answer.header("To") or ""
        carrier.send(raw.request("ACK", 1, uri=contact_uri(answer), to=to), node.sip_port)
        # A late copy of the INVITE after the answer (RFC 6026 7.1: absorbed, no new call).
        carrier.send(invite, node.sip_port)
        await asyncio.sleep(0.5)
        carrier.send(raw.request("BYE", 2, uri=contact_uri(answer), to=to), node.sip_port)
        await carrier.wait_for(is_response(200, "BYE", raw.call_id), 5)
        far = await far_end.wait(15)
    assert far.returncode == 0, far.describe()
    # Exactly one outbound call: one INVITE transaction, one Call-ID, one callback.
    invites = far.received("INVITE")
    assert len({(m.call_id, m.via_branch) for m in invites}) == 1, far.describe()
    assert len(node.receiver.on("/callback")) == 1
    # The retransmission was answered with the response already sent (17.2.1), not 482.
    statuses = [m.status for m in carrier.messages if m.cseq_method == "INVITE"]
    assert statuses.count(100) >= 2, statuses
    assert 482 not in statuses and 500 not in statuses, statuses
    (report,) = await node.status_reports()
    assert report["status"] == "answered"
    assert len(await node.records()) == 1


def drop_counts(node: Node) -> dict[str, int]:
    counters = node.engine.endpoint.counters
    return {"parse_errors": counters.parse_errors, "dropped": counters.dropped} | dict(
        counters.by_reason
    )


def increase(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)
    }


async def test_malformed_input_is_answered_400_where_addressable_and_never_stops_calls(
    node: Node,
) -> None:
    node.receiver.always("/callback", Reply(body=DIAL))
    before = drop_counts(node)
    async with SipSocket() as carrier:
        ping = RawCall(node.sip_port, carrier.port)
        truncated_body = RawCall(node.sip_port, carrier.port)
        cut_in_headers = RawCall(node.sip_port, carrier.port)
        headers_only = cut_in_headers.invite()
        wrong_version = RawCall(node.sip_port, carrier.port)
        no_via = RawCall(node.sip_port, carrier.port)
        huge = RawCall(node.sip_port, carrier.port)
        addressable = {
            # Content-Length promises more body than the datagram holds (RFC 3261 18.3).
            truncated_body.call_id: (truncated_body.invite()[:-40], 400),
            # The datagram ends inside the header: no empty line, no body.
            cut_in_headers.call_id: (headers_only[: headers_only.index(b"Contact:")], 400),
            wrong_version.call_id: (
                wrong_version.invite().replace(b" SIP/2.0\r\n", b" SIP/3.0\r\n", 1),
                505,
            ),
        }
        unaddressable = [
            bytes(range(256)),  # not text at all
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS ClientHello on the SIP port",
            no_via.request("INVITE", 1, body=sdp_offer(9), via=False),  # nowhere to answer
        ]
        # One header over 32 KiB (the endpoint's limit): refused before parsing.
        oversize = huge.request("INVITE", 1, body=sdp_offer(9), extra="X-Padding: " + "a" * 33_000)
        assert len(oversize) > 32 * 1024
        for data, _ in addressable.values():
            carrier.send(data, node.sip_port)
        for data in [*unaddressable, oversize]:
            carrier.send(data, node.sip_port)
        replies = await carrier.quiet(0.5)

        # Each addressable one got exactly its error, built from its own Via/From/To/Call-ID/CSeq.
        assert sorted((m.call_id or "", m.status) for m in replies) == sorted(
            (call_id, status) for call_id, (_, status) in addressable.items()
        ), [m.first_line for m in replies]
        for reply in replies:
            sent = parse_sip_message(addressable[reply.call_id or ""][0], "sent")
            assert reply.via_branch == sent.via_branch
            assert reply.header("CSeq") == "1 INVITE"
            assert ";tag=" in (reply.header("To") or "")
        assert increase(before, drop_counts(node)) == {
            "parse_errors": 6,
            "dropped": 7,
            "answered 400": 3,
            "unparseable": 3,
            "oversize": 1,
        }
        assert node.receiver.on("/callback") == [], "no broken INVITE started a call"

        # Over TCP an oversize message cannot be framed: callmask closes that connection.
        reader, writer = await asyncio.open_connection("127.0.0.1", node.sip_port)
        try:
            writer.write(oversize.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
            await writer.drain()
            async with asyncio.timeout(5):
                assert await reader.read() == b""
        finally:
            writer.close()
        assert node.engine.endpoint.counters.by_reason.get("tcp framing") == 1

        # The same socket then places a well-formed call, which is answered as usual.
        async with SippUas("uas_answer.xml", port=node.trunk_port, calls=1) as far_end:
            caller = await call(node, hold_ms="500")
            far = await far_end.wait(15)
        assert caller.returncode == 0, caller.describe()
        assert far.returncode == 0, far.describe()
        # And the socket that sent all that is still answered like any other.
        carrier.send(ping.request("OPTIONS", 1), node.sip_port)
        await carrier.wait_for(is_response(200, "OPTIONS", ping.call_id), 5)
    (report,) = await node.status_reports()
    assert report["status"] == "answered"
