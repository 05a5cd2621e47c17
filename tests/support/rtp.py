"""A media endpoint for tests: a UDP socket on 127.0.0.1 that sends a PCMU RTP stream,
records every datagram it receives (with its source), and writes the SDP that offers it.

RTP per RFC 3550 section 5.1 (fixed 12-byte header, version 2, no CSRC, no extension);
PCMU per RFC 3551 section 4.5.14: payload type 0, 8000 Hz, one byte per sample, so a
20 ms packet carries 160 bytes and advances the timestamp by 160. SDP per RFC 4566, just
enough for one audio stream.
"""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass

PCMU_PAYLOAD_TYPE = 0
PCMU_PACKET_BYTES = 160  # 20 ms at 8000 samples/s, 1 byte per sample
PACKET_INTERVAL_S = 0.020
# 0xFF is digital silence in mu-law (RFC 3551 4.5.14: PCMU encodes zero as 0xFF).
PCMU_SILENCE = b"\xff" * PCMU_PACKET_BYTES

_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    marker: bool
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes


def build_rtp_packet(
    *,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    payload: bytes = PCMU_SILENCE,
    payload_type: int = PCMU_PAYLOAD_TYPE,
    marker: bool = False,
) -> bytes:
    first = 0x80  # V=2, P=0, X=0, CC=0
    second = (0x80 if marker else 0) | (payload_type & 0x7F)
    return (
        _HEADER.pack(
            first,
            second,
            sequence_number & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc & 0xFFFFFFFF,
        )
        + payload
    )


def parse_rtp_packet(data: bytes) -> RtpPacket:
    """Parse a plain RTP packet; ValueError if it is not RTP version 2."""
    if len(data) < _HEADER.size:
        raise ValueError(f"{len(data)} bytes is shorter than an RTP header")
    first, second, sequence_number, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError(f"RTP version {first >> 6}, expected 2")
    header_bytes = _HEADER.size + 4 * (first & 0x0F)
    return RtpPacket(
        marker=bool(second & 0x80),
        payload_type=second & 0x7F,
        sequence_number=sequence_number,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=data[header_bytes:],
    )


def audio_sdp(
    port: int,
    *,
    session_id: int = 1,
    origin_address: str = "127.0.0.1",
    connection_address: str = "127.0.0.1",
    user: str = "-",
    direction: str = "sendrecv",
    extra_lines: tuple[str, ...] = (),
) -> str:
    """An SDP offering PCMU on ``connection_address:port`` (CRLF line ends, RFC 4566 5)."""
    lines = [
        "v=0",
        f"o={user} {session_id} {session_id} IN IP4 {origin_address}",
        "s=-",
        f"c=IN IP4 {connection_address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {PCMU_PAYLOAD_TYPE}",
        f"a=rtpmap:{PCMU_PAYLOAD_TYPE} PCMU/8000",
        "a=ptime:20",
        *extra_lines,
        f"a={direction}",
    ]
    return "\r\n".join(lines) + "\r\n"


_CONNECTION = re.compile(r"^c=IN IP4 (\S+)", re.MULTILINE)
_AUDIO = re.compile(r"^m=audio (\d+) ", re.MULTILINE)


def sdp_media_address(sdp: str) -> tuple[str, int]:
    """Where to send audio for ``sdp``: the c= address in effect for m=audio and its port."""
    media = _AUDIO.search(sdp)
    if media is None:
        raise ValueError("SDP has no m=audio line")
    # A media-level c= (after m=) overrides the session-level one (RFC 4566 5.7).
    media_level = _CONNECTION.search(sdp, media.end())
    session_level = _CONNECTION.search(sdp, 0, media.start())
    connection = media_level or session_level
    if connection is None:
        raise ValueError("SDP has no c= line for its audio")
    return connection.group(1), int(media.group(1))


def sdp_origin_address(sdp: str) -> str:
    match = re.search(r"^o=\S+ \S+ \S+ IN IP4 (\S+)", sdp, re.MULTILINE)
    if match is None:
        raise ValueError("SDP has no IPv4 o= line")
    return match.group(1)


@dataclass(frozen=True, slots=True)
class Received:
    data: bytes
    source: tuple[str, int]
    received_at: float


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, peer: RtpPeer) -> None:
        self._peer = peer

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        host, port = str(addr[0]), int(addr[1])
        self._peer._received(Received(data, (host, port), asyncio.get_running_loop().time()))


class RtpPeer:
    """One party's media socket on 127.0.0.1 (a caller's or callee's phone)."""

    def __init__(self, *, ssrc: int) -> None:
        self.ssrc = ssrc
        self.received: list[Received] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._arrival = asyncio.Event()
        self._sequence_number = 0

    async def __aenter__(self) -> RtpPeer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def port(self) -> int:
        if self._transport is None:
            raise RuntimeError("RtpPeer is not open")
        return int(self._transport.get_extra_info("sockname")[1])

    def sdp(
        self,
        *,
        session_id: int = 1,
        origin_address: str = "127.0.0.1",
        user: str = "-",
        direction: str = "sendrecv",
        extra_lines: tuple[str, ...] = (),
    ) -> str:
        return audio_sdp(
            self.port,
            session_id=session_id,
            origin_address=origin_address,
            user=user,
            direction=direction,
            extra_lines=extra_lines,
        )

    def send_one(self, destination: tuple[str, int], payload: bytes = PCMU_SILENCE) -> None:
        if self._transport is None:
            raise RuntimeError("RtpPeer is not open")
        packet = build_rtp_packet(
            sequence_number=self._sequence_number,
            timestamp=self._sequence_number * PCMU_PACKET_BYTES,
            ssrc=self.ssrc,
            payload=payload,
            marker=self._sequence_number == 0,
        )
        self._transport.sendto(packet, destination)
        self._sequence_number += 1

    async def send_stream(
        self,
        destination: tuple[str, int],
        count: int,
        *,
        interval_s: float = PACKET_INTERVAL_S,
        payload: bytes = PCMU_SILENCE,
    ) -> None:
        """Send ``count`` packets paced like a phone (one per 20 ms by default)."""
        for index in range(count):
            self.send_one(destination, payload)
            if index + 1 < count:
                await asyncio.sleep(interval_s)

    async def wait_for_packets(self, count: int, *, timeout_s: float) -> list[Received]:
        """Wait until ``count`` datagrams have arrived or ``timeout_s`` passed; return all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self.received) < count:
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                break
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining_s)
            except TimeoutError:
                break
        return list(self.received)

    async def wait_for_quiet(self, *, quiet_s: float, timeout_s: float) -> list[Received]:
        """Wait until nothing has arrived for ``quiet_s`` (a stream ended), at most
        ``timeout_s``; return everything received."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            last_s = self.received[-1].received_at if self.received else None
            if last_s is not None and loop.time() - last_s >= quiet_s:
                break
            await asyncio.sleep(min(quiet_s / 4, max(deadline - loop.time(), 0)))
        return list(self.received)

    def _received(self, packet: Received) -> None:
        self.received.append(packet)
        self._arrival.set()
