"""One recorded call as one mono 8 kHz track: the pcap rtpengine wrote, decoded and mixed.

rtpengine's ``--recording-method=pcap`` writes one classic libpcap file per call
(link type 101, LINKTYPE_RAW: every record is an IPv4 or IPv6 packet with no link
header), each record a UDP datagram carrying an RTP packet (RFC 3550 §5.1) exactly as
rtpengine received it, both directions in the same file. A direction is one stream,
keyed by (UDP source port, UDP destination port, SSRC). Audio is G.711 (PT 0 PCMU,
PT 8 PCMA, RFC 3551 §6), expanded with the ITU-T G.711 tables; RFC 4733
telephone-events, RFC 3389 comfort noise and RTCP are not audio and are skipped. A
stream is placed on the call's timeline at its first packet's capture time and within
itself by RTP timestamp, so that lost packets are silence and the two parties stay in
step; the streams are summed and clipped to 16 bits. Anything that cannot become that
track raises ``RecordingUnreadable`` with a reason a human can act on: the caller marks
the recording failed with it, a recording asked for is never silently absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import os
import struct
import sys
import tempfile
import wave
from array import array
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_RATE_HZ = 8000  # G.711's RTP clock rate (RFC 3551 §4.5.14), also the mix's rate
_NS_PER_SAMPLE = 1_000_000_000 // SAMPLE_RATE_HZ

PCMU, PCMA = 0, 8
COMFORT_NOISE = 13  # RFC 3389: the sender's silence; silence in the mix
TELEPHONE_EVENT = 101  # RFC 4733's usual dynamic PT; others come in telephone_event_pts
_DYNAMIC_PTS = range(96, 128)  # RFC 3551 §6
_EVENT_BYTES = 4  # RFC 4733 §2.3: one event is 4 bytes; a packet carries whole events
_MAX_EVENTS_PER_PACKET = 4

# An RTP timestamp that moves more than this inside a stream is a new timebase (a
# restarted sender, a re-INVITE that reset it), not ten minutes of lost packets.
_TIMEBASE_JUMP = 10 * 60 * SAMPLE_RATE_HZ
# The timeline is allocated in full: a bound keeps a bogus capture time from asking
# for gigabytes. 4 h is longer than any call this platform records in practice.
MAX_DURATION_S = 4 * 3600

_LINKTYPE_RAW = 101  # tcpdump.org link-layer header types; what rtpengine writes
_LINKTYPE_IPV4 = 228
_LINKTYPE_IPV6 = 229
_UDP = 17
# libpcap magic numbers as they appear in the file's first four bytes: (byte order,
# fractional-second unit in ns).
_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG = b"\x0a\x0d\x0d\x0a"
_FILE_HEADER = 24
_RECORD_HEADER = 16


class RecordingUnreadable(Exception):
    """The recording cannot become audio; ``str()`` is the reason, for a human."""


@dataclass(frozen=True, slots=True)
class MixedAudio:
    pcm: bytes  # 16-bit signed little-endian mono, 8000 Hz
    duration_ms: int
    streams: int  # audio streams mixed


def _ulaw_expand(code: int) -> int:
    # ITU-T G.711 Table 2a: the code word is sent inverted; 3 bits of segment, 4 of
    # quantisation, biased by 33 (132 at 16-bit scale) so that segment 0 starts at 0.
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - magnitude if code & 0x80 else magnitude - 0x84


def _alaw_expand(code: int) -> int:
    # ITU-T G.711 Table 1a: even bits are sent inverted (XOR 0x55); segments 0 and 1
    # share one step size, each further segment doubles it; outputs sit mid-interval.
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


ULAW: tuple[int, ...] = tuple(_ulaw_expand(code) for code in range(256))
ALAW: tuple[int, ...] = tuple(_alaw_expand(code) for code in range(256))


def _byte_tables(values: tuple[int, ...]) -> tuple[bytes, bytes]:
    """Low and high bytes of each 16-bit little-endian sample, for ``bytes.translate``:
    two C-speed passes over a payload instead of one Python step per sample."""
    encoded = b"".join(struct.pack("<h", value) for value in values)
    return encoded[0::2], encoded[1::2]


_DECODE = {PCMU: _byte_tables(ULAW), PCMA: _byte_tables(ALAW)}


def decode_g711(payload: bytes, pt: int) -> bytes:
    """G.711 ``payload`` of PT 0 or 8 as 16-bit little-endian PCM."""
    low, high = _DECODE[pt]
    pcm = bytearray(2 * len(payload))
    pcm[0::2] = payload.translate(low)
    pcm[1::2] = payload.translate(high)
    return bytes(pcm)


@dataclass(frozen=True, slots=True)
class _Rtp:
    time_ns: int  # pcap capture time
    sport: int
    dport: int
    ssrc: int
    pt: int
    timestamp: int
    payload: bytes


def _records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(capture time in ns, packet) of each whole record; a partial last record (the
    writer was killed mid-write) ends the file."""
    if data[:4] == _PCAPNG:
        raise RecordingUnreadable("not a pcap file: pcapng, not the classic libpcap format")
    if len(data) < _FILE_HEADER or data[:4] not in _MAGICS:
        raise RecordingUnreadable("not a pcap file")
    order, frac_ns = _MAGICS[data[:4]]
    (linktype,) = struct.unpack_from(f"{order}I", data, 20)
    # The low 16 bits are the link type; the upper ones may carry FCS information.
    if linktype & 0xFFFF not in (_LINKTYPE_RAW, _LINKTYPE_IPV4, _LINKTYPE_IPV6):
        raise RecordingUnreadable(f"pcap link type {linktype & 0xFFFF}, not raw IP (101)")
    record = struct.Struct(f"{order}IIII")
    offset = _FILE_HEADER
    end = len(data)
    while offset + _RECORD_HEADER <= end:
        seconds, fraction, captured, _original = record.unpack_from(data, offset)
        start = offset + _RECORD_HEADER
        offset = start + captured
        if offset > end:
            return
        yield seconds * 1_000_000_000 + fraction * frac_ns, data[start:offset]


def _udp_payload(packet: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, payload) of a UDP datagram, else None."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        header = (packet[0] & 0x0F) * 4
        if header < 20 or len(packet) < header + 8 or packet[9] != _UDP:
            return None
        # A fragment's payload is not a whole datagram (rtpengine writes none).
        if struct.unpack_from("!H", packet, 6)[0] & 0x3FFF:
            return None
    elif version == 6:
        # rtpengine writes a bare IPv6 header; extension headers are not followed.
        header = 40
        if len(packet) < header + 8 or packet[6] != _UDP:
            return None
    else:
        return None
    sport, dport, length = struct.unpack_from("!HHH", packet, header)
    # The UDP length bounds the payload unless it is absent or larger than what was
    # captured (then the capture is all there is).
    end = header + length if 8 <= length <= len(packet) - header else len(packet)
    return sport, dport, packet[header + 8 : end]


def _rtp(time_ns: int, packet: bytes) -> _Rtp | None:
    """The RTP packet in ``packet`` (RFC 3550 §5.1), else None (RTCP, not UDP, broken)."""
    udp = _udp_payload(packet)
    if udp is None:
        return None
    sport, dport, data = udp
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    if 200 <= data[1] <= 204:  # RTCP SR, RR, SDES, BYE, APP multiplexed (RFC 5761 §4)
        return None
    first = data[0]
    start = 12 + 4 * (first & 0x0F)  # CSRC list
    if first & 0x10:  # header extension: 4 bytes, then its length in 32-bit words
        if len(data) < start + 4:
            return None
        start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
    end = len(data)
    if first & 0x20:  # padding: its last byte counts the padding bytes
        end -= data[-1]
    if start > end:
        return None
    timestamp, ssrc = struct.unpack_from("!II", data, 4)
    return _Rtp(time_ns, sport, dport, ssrc, data[1] & 0x7F, timestamp, data[start:end])


def _looks_like_events(payloads: list[bytes]) -> bool:
    # An unlisted dynamic PT whose every packet is a few whole RFC 4733 events: no
    # audio codec at 8 kHz sends 4 to 16 bytes per packet all call long.
    return all(
        0 < len(p) <= _EVENT_BYTES * _MAX_EVENTS_PER_PACKET and len(p) % _EVENT_BYTES == 0
        for p in payloads
    )


@dataclass(slots=True)
class _Stream:
    key: tuple[int, int, int]
    packets: list[_Rtp] = field(default_factory=list)

    def describe(self) -> str:
        sport, dport, ssrc = self.key
        return f"stream {sport}->{dport} SSRC 0x{ssrc:08x}"


def _streams(data: bytes) -> list[_Stream]:
    streams: dict[tuple[int, int, int], _Stream] = {}
    for time_ns, packet in _records(data):
        rtp = _rtp(time_ns, packet)
        if rtp is None:
            continue
        key = (rtp.sport, rtp.dport, rtp.ssrc)
        stream = streams.get(key)
        if stream is None:
            stream = streams[key] = _Stream(key)
        stream.packets.append(rtp)
    return list(streams.values())


def _audio_packets(stream: _Stream, telephone_event_pts: Collection[int]) -> list[_Rtp]:
    """The stream's G.711 packets; raises on a codec that is not G.711."""
    by_pt: dict[int, list[bytes]] = {}
    for rtp in stream.packets:
        by_pt.setdefault(rtp.pt, []).append(rtp.payload)
    for pt, payloads in by_pt.items():
        if pt in (PCMU, PCMA, COMFORT_NOISE) or pt in telephone_event_pts:
            continue
        if pt in _DYNAMIC_PTS and _looks_like_events(payloads):
            continue
        raise RecordingUnreadable(f"codec PT {pt} (not G.711) in {stream.describe()}")
    return [rtp for rtp in stream.packets if rtp.pt in (PCMU, PCMA)]


def _place(packets: list[_Rtp], origin_ns: int, limit: int) -> tuple[int, bytearray]:
    """The stream as (first sample's position on the timeline, 16-bit LE PCM)."""
    placed: list[tuple[int, bytes]] = []
    anchor_pos = anchor_ts = delta = 0
    anchored = False
    for rtp in packets:
        if anchored:
            # Modular difference, as signed 32 bits: wraps and slight reordering alike.
            delta = (rtp.timestamp - anchor_ts) & 0xFFFFFFFF
            if delta >= 1 << 31:
                delta -= 1 << 32
        if not anchored or abs(delta) > _TIMEBASE_JUMP:
            anchor_pos = (rtp.time_ns - origin_ns) // _NS_PER_SAMPLE
            anchor_ts, delta, anchored = rtp.timestamp, 0, True
        position = anchor_pos + delta
        pcm = decode_g711(rtp.payload, rtp.pt)
        if position < 0:  # reordered before the stream's first packet's capture time
            pcm, position = pcm[-2 * position :], 0
        if pcm:
            placed.append((position, pcm))
    if not placed:
        return 0, bytearray()
    start = min(position for position, _ in placed)
    end = max(position + len(pcm) // 2 for position, pcm in placed)
    if end > limit:
        raise RecordingUnreadable(
            f"recording spans {end // SAMPLE_RATE_HZ} s, more than {limit // SAMPLE_RATE_HZ} s"
        )
    buffer = bytearray(2 * (end - start))
    # In arrival order: a duplicate, later, overwrites what was there.
    for position, pcm in placed:
        at = 2 * (position - start)
        buffer[at : at + len(pcm)] = pcm
    return start, buffer


def _samples(pcm: bytes | bytearray) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


_MIX_BLOCK = 65536  # samples summed per step: bounds the temporary list of ints


def _add_clipped(mix: array[int], at: int, samples: array[int]) -> None:
    """mix[at:at+len(samples)] += samples, clipped to int16."""
    for block in range(0, len(samples), _MIX_BLOCK):
        lo, hi = at + block, at + min(block + _MIX_BLOCK, len(samples))
        summed = map(operator.add, mix[lo:hi], samples[block : block + _MIX_BLOCK])
        mix[lo:hi] = array(
            "h",
            [s if -32768 <= s <= 32767 else (32767 if s > 0 else -32768) for s in summed],
        )


def mix_pcap(
    path: Path,
    *,
    max_bytes: int = 512 * 1024 * 1024,
    telephone_event_pts: Collection[int] = (TELEPHONE_EVENT,),
    max_duration_s: int = MAX_DURATION_S,
) -> MixedAudio:
    """Decode every G.711 stream of the pcap at ``path`` and mix them into one track.

    ``telephone_event_pts``: the PTs the call's SDP gave telephone-event (the pcap does
    not say); an unlisted dynamic PT that only ever carries whole RFC 4733 events is
    skipped too. Measured: a 60 s two-party call (6000 packets) mixes in about 0.07 s.
    """
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise RecordingUnreadable(
                f"recording file is {size} bytes, larger than the {max_bytes} allowed"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise RecordingUnreadable(f"recording file cannot be read: {exc}") from exc
    streams = _streams(data)
    audio = [(s, _audio_packets(s, telephone_event_pts)) for s in streams]
    audio = [(s, packets) for s, packets in audio if packets]
    if not audio:
        raise RecordingUnreadable("no audio streams in the recording")
    # The timeline starts at the earliest packet of any stream, audio or not.
    origin_ns = min(s.packets[0].time_ns for s in streams)
    limit = max_duration_s * SAMPLE_RATE_HZ
    placed = [_place(packets, origin_ns, limit) for _, packets in audio]
    total = max(start + len(pcm) // 2 for start, pcm in placed)
    mix = array("h", bytes(2 * total))
    (first_start, first_pcm), *others = placed
    mix[first_start : first_start + len(first_pcm) // 2] = _samples(first_pcm)
    for start, pcm in others:
        _add_clipped(mix, start, _samples(pcm))
    if sys.byteorder == "big":
        mix.byteswap()
    return MixedAudio(
        pcm=mix.tobytes(), duration_ms=total * 1000 // SAMPLE_RATE_HZ, streams=len(audio)
    )


def _temporary(path: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    os.close(fd)
    return Path(name)


def write_wav(audio: MixedAudio, path: Path) -> None:
    """``audio`` as a 16-bit mono 8 kHz WAV at ``path``, which appears whole or not at all."""
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as handle:
            with wave.open(handle, "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(SAMPLE_RATE_HZ)
                out.writeframes(audio.pcm)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# Debian's lame is built with libsndfile and says so on every run; not a reason.
_LAME_NOISE = ("WARNING: libsndfile may ignore -r", "Compile without libsndfile")


async def write_mp3(audio: MixedAudio, path: Path, *, lame: str = "lame") -> None:
    """``audio`` as a 32 kbit/s mono MP3 at ``path`` (LAME reads the raw PCM on stdin),
    which appears whole or not at all."""
    tmp = _temporary(path)
    try:
        try:
            process = await asyncio.create_subprocess_exec(
                lame,
                *("-r", "-s", "8", "--bitwidth", "16", "--signed", "--little-endian"),
                *("-m", "m", "-b", "32", "--quiet", "-", str(tmp)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise RecordingUnreadable(f"MP3 encoder {lame!r} could not run: {exc}") from exc
        try:
            _, stderr = await process.communicate(audio.pcm)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            lines = stderr.decode(errors="replace").splitlines()
            said = "; ".join(
                line.strip() for line in lines if line.strip() and not line.startswith(_LAME_NOISE)
            )
            raise RecordingUnreadable(
                f"MP3 encoder exited with status {process.returncode}: {said or 'no message'}"
            )
        await asyncio.to_thread(_fsync, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    # LAME closed the file; its bytes reach the disk before the rename publishes it.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
