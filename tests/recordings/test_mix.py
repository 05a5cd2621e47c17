"""The recording mixer against pcaps built here, byte for byte in the format rtpengine's
``--recording-method=pcap`` writes (classic libpcap, LINKTYPE_RAW, IPv4/UDP/RTP), from
known signals: which party is heard when, lost and duplicate packets, what is skipped,
what is refused, and the WAV and MP3 files made of the mix."""

from __future__ import annotations

import bisect
import math
import shutil
import struct
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import pytest

from callmask.media.audio import inspect_mp3
from callmask.recordings.mix import (
    ALAW,
    ULAW,
    MixedAudio,
    RecordingUnreadable,
    decode_g711,
    mix_pcap,
    write_mp3,
    write_wav,
)

RATE = 8000
PTIME = 160  # samples per 20 ms packet


# --- G.711 tables ----------------------------------------------------------------------


def test_ulaw_table_known_values() -> None:
    # ITU-T G.711 / the Sun reference g711.c (ulaw2linear), at 16-bit scale.
    assert ULAW[0xFF] == 0
    assert ULAW[0x7F] == 0
    assert ULAW[0x00] == -32124
    assert ULAW[0x80] == 32124
    assert ULAW[0xFE] == 8
    assert ULAW[0x7E] == -8
    assert ULAW[0xEF] == 132  # first step of segment 1 is 16
    # Sign bit only flips the sign; magnitudes grow as the inverted code grows.
    for code in range(128):
        assert ULAW[code] == -ULAW[code | 0x80]
    positive = [ULAW[0xFF - i] for i in range(128)]
    assert positive == sorted(positive)


def test_alaw_table_known_values() -> None:
    # ITU-T G.711 / the Sun reference g711.c (alaw2linear), at 16-bit scale.
    assert ALAW[0xD5] == 8
    assert ALAW[0x55] == -8
    assert ALAW[0xAA] == 32256
    assert ALAW[0x2A] == -32256
    assert ALAW[0xD4] == 24
    for code in range(128):
        assert ALAW[code] == -ALAW[code | 0x80]
    positive = sorted(ALAW[c] for c in range(128, 256))
    assert len(set(positive)) == 128


def test_decode_g711_is_the_table_as_little_endian_int16() -> None:
    payload = bytes(range(256))
    for pt, table in ((0, ULAW), (8, ALAW)):
        assert decode_g711(payload, pt) == struct.pack("<256h", *table)


# --- pcap building ---------------------------------------------------------------------


def _encoder(table: tuple[int, ...]) -> list[tuple[int, int]]:
    return sorted((value, code) for code, value in enumerate(table))


_ULAW_ENC = _encoder(ULAW)
_ALAW_ENC = _encoder(ALAW)


def encode(samples: list[int], pt: int) -> bytes:
    """The code whose expansion is nearest each sample (a G.711 compressor, by search)."""
    pairs = _ULAW_ENC if pt == 0 else _ALAW_ENC
    values = [v for v, _ in pairs]
    out = bytearray()
    for sample in samples:
        i = bisect.bisect_left(values, sample)
        candidates = [j for j in (i - 1, i) if 0 <= j < len(pairs)]
        best = min(candidates, key=lambda j: abs(values[j] - sample))
        out.append(pairs[best][1])
    return bytes(out)


def sine(freq_hz: float, seconds: float, amplitude: int = 8000) -> list[int]:
    n = round(seconds * RATE)
    return [round(amplitude * math.sin(2 * math.pi * freq_hz * i / RATE)) for i in range(n)]


def rtp(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    *,
    marker: bool = False,
    csrcs: int = 0,
    extension_words: int | None = None,
    padding: int = 0,
) -> bytes:
    first = 0x80 | csrcs
    if extension_words is not None:
        first |= 0x10
    if padding:
        first |= 0x20
    header = struct.pack(
        "!BBHII", first, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
    )
    header += b"".join(struct.pack("!I", 0x1000 + i) for i in range(csrcs))
    if extension_words is not None:
        header += struct.pack("!HH", 0xBEDE, extension_words) + b"\x11" * (4 * extension_words)
    tail = b"\x00" * (padding - 1) + bytes([padding]) if padding else b""
    return header + payload + tail


def ip_udp(payload: bytes, sport: int, dport: int, *, options: int = 0, proto: int = 17) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ihl = 5 + options
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        4 * ihl + len(udp),
        0,
        0x4000,  # DF, not a fragment
        64,
        proto,
        0,
        bytes([192, 0, 2, 1]),
        bytes([192, 0, 2, 2]),
    )
    return ip + b"\x01" * (4 * options) + udp


def pcap(
    records: list[tuple[float, bytes]],
    *,
    order: str = "<",
    nano: bool = False,
    linktype: int = 101,
) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = bytearray(struct.pack(f"{order}IHHiIII", magic, 2, 4, 0, 0, 65535, linktype))
    for t, packet in records:
        seconds = int(t)
        fraction = round((t - seconds) * (1e9 if nano else 1e6))
        out += struct.pack(f"{order}IIII", seconds, fraction, len(packet), len(packet))
        out += packet
    return bytes(out)


T0 = 1_700_000_000.0  # capture times are wall-clock seconds


@dataclass
class Stream:
    samples: list[int]
    pt: int
    start_s: float
    sport: int
    dport: int
    ssrc: int
    first_ts: int = 1000
    first_seq: int = 7

    def packets(self) -> list[tuple[float, bytes]]:
        """One (capture time, IP packet) per 20 ms, RTP timestamp in step."""
        out = []
        for index, at in enumerate(range(0, len(self.samples), PTIME)):
            payload = encode(self.samples[at : at + PTIME], self.pt)
            packet = rtp(self.pt, self.first_seq + index, self.first_ts + at, self.ssrc, payload)
            out.append((T0 + self.start_s + at / RATE, ip_udp(packet, self.sport, self.dport)))
        return out


def stream_a() -> Stream:  # the caller: 1 kHz, μ-law, 2 s from t=0
    return Stream(sine(1000, 2.0), 0, 0.0, 30000, 40000, 0xAAAA0001)


def stream_b() -> Stream:  # the callee: 400 Hz, A-law, 1.5 s from t=0.5 s
    return Stream(sine(400, 1.5, 6000), 8, 0.5, 40002, 30002, 0xBBBB0002, first_ts=123456)


def interleaved(*streams: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    return sorted((r for s in streams for r in s), key=lambda r: r[0])


def write(tmp_path: Path, data: bytes, name: str = "call.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def samples_of(audio: MixedAudio) -> list[int]:
    return list(struct.unpack(f"<{len(audio.pcm) // 2}h", audio.pcm))


def power(window: list[int], freq_hz: float) -> float:
    """Amplitude of the ``freq_hz`` component of ``window`` (one DFT bin)."""
    re = sum(x * math.cos(2 * math.pi * freq_hz * i / RATE) for i, x in enumerate(window))
    im = sum(x * math.sin(2 * math.pi * freq_hz * i / RATE) for i, x in enumerate(window))
    return 2 * math.hypot(re, im) / len(window)


def window_at(samples: list[int], t_s: float, n: int = 400) -> list[int]:
    at = round(t_s * RATE)
    return samples[at : at + n]  # 50 ms: whole periods of both 1 kHz and 400 Hz


# --- the mix ---------------------------------------------------------------------------


def two_party(tmp_path: Path) -> MixedAudio:
    records = interleaved(stream_a().packets(), stream_b().packets())
    return mix_pcap(write(tmp_path, pcap(records)))


def test_two_parties_are_placed_on_one_timeline(tmp_path: Path) -> None:
    audio = two_party(tmp_path)
    assert audio.streams == 2
    assert abs(audio.duration_ms - 2000) <= 20
    assert len(audio.pcm) == 2 * audio.duration_ms * RATE // 1000
    samples = samples_of(audio)
    alone = window_at(samples, 0.25)
    assert power(alone, 1000) > 7000
    assert power(alone, 400) < 100
    both = window_at(samples, 1.0)
    assert power(both, 1000) > 7000
    assert power(both, 400) > 5000
    # Just before B's first packet (t=0.5 s): still A only.
    assert power(window_at(samples, 0.45), 400) < 100


def test_a_single_stream_decodes_to_its_signal(tmp_path: Path) -> None:
    a = stream_a()
    audio = mix_pcap(write(tmp_path, pcap(a.packets())))
    samples = samples_of(audio)
    assert len(samples) == len(a.samples)
    # G.711 at amplitude 8000: the error is under half a step of segment 5 (256).
    assert max(abs(x - y) for x, y in zip(samples, a.samples, strict=True)) <= 128


def test_a_lost_packet_is_160_samples_of_silence(tmp_path: Path) -> None:
    a = stream_a()
    records = a.packets()
    del records[10]
    samples = samples_of(mix_pcap(write(tmp_path, pcap(records))))
    assert len(samples) == len(a.samples)
    assert samples[1600:1760] == [0] * 160
    assert any(samples[1440:1600]) and any(samples[1760:1920])


def test_a_duplicate_packet_overwrites(tmp_path: Path) -> None:
    a = Stream([1000] * 480, 0, 0.0, 30000, 40000, 1)
    records = a.packets()
    late = rtp(0, a.first_seq + 1, a.first_ts + PTIME, 1, encode([-2000] * PTIME, 0))
    records.append((T0 + 0.07, ip_udp(late, 30000, 40000)))
    samples = samples_of(mix_pcap(write(tmp_path, pcap(records))))
    assert len(samples) == 480
    assert set(samples[160:320]) == {ULAW[encode([-2000], 0)[0]]}
    assert set(samples[:160]) == set(samples[320:]) == {ULAW[encode([1000], 0)[0]]}


def test_streams_are_summed_and_clipped(tmp_path: Path) -> None:
    loud = [30000] * 320
    a = Stream(loud, 0, 0.0, 30000, 40000, 1)
    b = Stream(loud, 8, 0.0, 40000, 30000, 2)
    quiet = Stream([-1000] * 320, 0, 0.0, 30002, 40002, 3)
    audio = mix_pcap(write(tmp_path, pcap(interleaved(a.packets(), b.packets()))))
    assert set(samples_of(audio)) == {32767}
    audio = mix_pcap(write(tmp_path, pcap(interleaved(a.packets(), quiet.packets()))))
    expected = ULAW[encode([30000], 0)[0]] + ULAW[encode([-1000], 0)[0]]
    assert set(samples_of(audio)) == {expected}
    assert audio.streams == 2


def test_telephone_events_are_skipped(tmp_path: Path) -> None:
    a = stream_a()
    plain = mix_pcap(write(tmp_path, pcap(a.packets()), "plain.pcap"))
    records = a.packets()
    # RFC 4733 events in the same stream (same SSRC, same clock), start with marker.
    for i, at in enumerate((0.3, 0.32, 0.34)):
        event = struct.pack("!BBH", 5, 10 | (0x80 if i == 2 else 0), 160 * (i + 1))
        packet = rtp(101, 9000 + i, 1000 + 2400, a.ssrc, event, marker=i == 0)
        records.append((T0 + at, ip_udp(packet, a.sport, a.dport)))
    # A dynamic PT the pcap cannot name, carrying only events, on its own SSRC.
    other = rtp(96, 1, 50, 0xEEEE, struct.pack("!BBH", 1, 10, 160))
    records.append((T0 + 0.5, ip_udp(other, 30004, 40004)))
    audio = mix_pcap(write(tmp_path, pcap(sorted(records, key=lambda r: r[0]))))
    assert audio == plain


def test_a_listed_telephone_event_pt_is_skipped(tmp_path: Path) -> None:
    records = stream_a().packets()
    odd = rtp(120, 1, 0, 0xEEEE, b"\x01" * 160)
    records.append((T0 + 0.5, ip_udp(odd, 30004, 40004)))
    path = write(tmp_path, pcap(sorted(records, key=lambda r: r[0])))
    assert mix_pcap(path, telephone_event_pts={101, 120}).streams == 1
    with pytest.raises(RecordingUnreadable, match="PT 120"):
        mix_pcap(path)


def test_rtcp_and_non_udp_are_skipped(tmp_path: Path) -> None:
    a = stream_a()
    plain = mix_pcap(write(tmp_path, pcap(a.packets()), "plain.pcap"))
    records = a.packets()
    rr = struct.pack("!BBHI", 0x80, 201, 1, a.ssrc)  # RTCP RR on the RTP port (rtcp-mux)
    records.append((T0 + 0.1, ip_udp(rr, a.sport, a.dport)))
    sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, 0xCCCC, 0, 0, 0, 0, 0)
    records.append((T0 + 0.2, ip_udp(sr, a.sport + 1, a.dport + 1)))
    tcp_like = ip_udp(rtp(0, 1, 0, 0xDDDD, b"\x00" * 160), 5060, 5060, proto=6)
    records.append((T0 + 0.3, tcp_like))
    records.append((T0 + 0.4, ip_udp(b"\x00" * 40, 7000, 7002)))  # not RTP (version 0)
    records.append((T0 + 0.5, b"\x60" + b"\x00" * 10))  # broken IPv6
    audio = mix_pcap(write(tmp_path, pcap(sorted(records, key=lambda r: r[0]))))
    assert audio == plain


def test_header_options_csrcs_extension_and_padding_are_stepped_over(tmp_path: Path) -> None:
    a = stream_a()
    plain = mix_pcap(write(tmp_path, pcap(a.packets()), "plain.pcap"))
    records = []
    for index, at in enumerate(range(0, len(a.samples), PTIME)):
        payload = encode(a.samples[at : at + PTIME], 0)
        packet = rtp(
            0,
            index,
            a.first_ts + at,
            a.ssrc,
            payload,
            csrcs=index % 3,
            extension_words=(index % 4) or None,
            padding=index % 5,
        )
        udp = ip_udp(packet, a.sport, a.dport, options=index % 3)
        records.append((T0 + at / RATE, udp))
    assert mix_pcap(write(tmp_path, pcap(records))) == plain


@pytest.mark.parametrize(("order", "nano"), [("<", True), (">", False), (">", True)])
def test_byte_orders_and_nanosecond_files(tmp_path: Path, order: str, nano: bool) -> None:
    records = interleaved(stream_a().packets(), stream_b().packets())
    plain = mix_pcap(write(tmp_path, pcap(records), "plain.pcap"))
    assert mix_pcap(write(tmp_path, pcap(records, order=order, nano=nano))) == plain


def test_rtp_timestamp_wraparound(tmp_path: Path) -> None:
    a = stream_a()
    plain = mix_pcap(write(tmp_path, pcap(a.packets()), "plain.pcap"))
    a.first_ts = (1 << 32) - 5 * PTIME - 17
    assert mix_pcap(write(tmp_path, pcap(a.packets()))) == plain


def test_a_reordered_packet_lands_in_its_place(tmp_path: Path) -> None:
    a = stream_a()
    plain = mix_pcap(write(tmp_path, pcap(a.packets()), "plain.pcap"))
    records = a.packets()
    records[5], records[6] = (records[6][0], records[5][1]), (records[5][0], records[6][1])
    assert mix_pcap(write(tmp_path, pcap(records))) == plain


def test_a_timestamp_jump_over_ten_minutes_is_a_new_timebase(tmp_path: Path) -> None:
    first = Stream([1000] * 1600, 0, 0.0, 30000, 40000, 1)  # 0.2 s
    # Same stream, restarted 1 s later with an RTP timestamp 20 minutes on.
    second = Stream([-1000] * 1600, 0, 1.0, 30000, 40000, 1, first_ts=1000 + 20 * 60 * RATE)
    audio = mix_pcap(write(tmp_path, pcap(first.packets() + second.packets())))
    samples = samples_of(audio)
    assert audio.duration_ms == 1200
    assert audio.streams == 1
    assert set(samples[:1600]) == {ULAW[encode([1000], 0)[0]]}
    assert set(samples[1600:8000]) == {0}
    assert set(samples[8000:]) == {ULAW[encode([-1000], 0)[0]]}


def test_a_codec_that_is_not_g711_is_named(tmp_path: Path) -> None:
    records = stream_a().packets()
    g722 = rtp(9, 1, 0, 0x9999, b"\x55" * 160)
    records.append((T0 + 0.3, ip_udp(g722, 30006, 40006)))
    with pytest.raises(RecordingUnreadable, match=r"codec PT 9 \(not G.711\) in stream 30006"):
        mix_pcap(write(tmp_path, pcap(sorted(records, key=lambda r: r[0]))))


def test_no_audio_streams(tmp_path: Path) -> None:
    event = rtp(101, 1, 0, 5, struct.pack("!BBH", 1, 10, 160))
    with pytest.raises(RecordingUnreadable, match="no audio streams in the recording"):
        mix_pcap(write(tmp_path, pcap([(T0, ip_udp(event, 1000, 2000))])))
    with pytest.raises(RecordingUnreadable, match="no audio streams in the recording"):
        mix_pcap(write(tmp_path, pcap([])))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40,
        b"\xd4\xc3\xb2\xa1\x02\x00",  # a magic and no header
        b"\x0a\x0d\x0d\x0a" + b"\x00" * 40,  # pcapng
    ],
)
def test_a_file_that_is_not_a_pcap(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(RecordingUnreadable, match="not a pcap file"):
        mix_pcap(write(tmp_path, data))


def test_a_link_type_with_a_link_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingUnreadable, match="link type 1, not raw IP"):
        mix_pcap(write(tmp_path, pcap(stream_a().packets(), linktype=1)))


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingUnreadable, match="cannot be read"):
        mix_pcap(tmp_path / "gone.pcap")


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, pcap(stream_a().packets()))
    with pytest.raises(RecordingUnreadable, match="larger than the 1000 allowed"):
        mix_pcap(path, max_bytes=1000)


def test_a_bogus_capture_time_cannot_ask_for_hours_of_timeline(tmp_path: Path) -> None:
    records = stream_a().packets()
    late = Stream([1000] * 160, 0, 5 * 3600.0, 30008, 40008, 0x77).packets()
    with pytest.raises(RecordingUnreadable, match="more than 14400 s"):
        mix_pcap(write(tmp_path, pcap(records + late)))


def test_a_truncated_last_packet_keeps_the_earlier_ones(tmp_path: Path) -> None:
    a = stream_a()
    data = pcap(a.packets())
    record = 16 + 20 + 8 + 12 + PTIME
    # Mid-payload, mid-IP-header, mid-record-header, a whole record and part of the next.
    for cut in (50, record - 30, record - 8, record + 10):
        audio = mix_pcap(write(tmp_path, data[:-cut]))
        expect = len(a.samples) - PTIME * (1 if cut < record else 2)
        assert len(audio.pcm) == 2 * expect, cut
        assert audio.pcm == mix_pcap(write(tmp_path, data, "whole.pcap")).pcm[: 2 * expect]


def test_a_sixty_second_two_party_call(tmp_path: Path) -> None:
    # 6000 packets, 480 000 samples. Measured on this machine: 0.066-0.086 s to mix
    # (not asserted: timing tests fail on loaded machines, and the number is a comment).
    payload_a, payload_b = encode(sine(1000, 0.02), 0), encode(sine(400, 0.02), 8)
    records = []
    for i in range(3000):
        a = rtp(0, i, i * PTIME, 1, payload_a)
        b = rtp(8, i, 5000 + i * PTIME, 2, payload_b)
        records.append((T0 + i * 0.02, ip_udp(a, 30000, 40000)))
        records.append((T0 + i * 0.02 + 0.001, ip_udp(b, 40000, 30000)))
    path = write(tmp_path, pcap(records))
    started = time.perf_counter()
    audio = mix_pcap(path)
    elapsed = time.perf_counter() - started
    print(f"mixed a 60 s two-party call in {elapsed:.3f} s")
    assert audio.streams == 2
    assert abs(audio.duration_ms - 60_000) <= 20


# --- files -----------------------------------------------------------------------------


def test_the_wav_file(tmp_path: Path) -> None:
    audio = two_party(tmp_path)
    target = tmp_path / "out" / "rec.wav"
    target.parent.mkdir()
    write_wav(audio, target)
    with wave.open(str(target), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getframerate() == 8000
        assert wav.getsampwidth() == 2
        assert wav.getnframes() == len(audio.pcm) // 2
        assert wav.readframes(wav.getnframes()) == audio.pcm
    assert [p.name for p in target.parent.iterdir()] == ["rec.wav"]


def test_a_wav_that_cannot_be_written_leaves_nothing(tmp_path: Path) -> None:
    audio = MixedAudio(pcm=b"\x00\x00" * 80, duration_ms=10, streams=1)
    target = tmp_path / "rec.wav"
    target.mkdir()  # os.replace onto a directory fails
    with pytest.raises(OSError):
        write_wav(audio, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.wav"]


async def test_the_mp3_file(tmp_path: Path) -> None:
    if shutil.which("lame") is None:
        pytest.skip("lame is not installed (Debian package lame, scripts/install-system.sh)")
    audio = two_party(tmp_path)
    target = tmp_path / "out" / "rec.mp3"
    target.parent.mkdir()
    await write_mp3(audio, target)
    info = inspect_mp3(target.read_bytes())
    assert abs(info.duration_ms - audio.duration_ms) <= 100
    assert info.sample_rate_hz == 8000
    assert [p.name for p in target.parent.iterdir()] == ["rec.mp3"]


async def test_an_encoder_that_fails_is_a_reason(tmp_path: Path) -> None:
    audio = MixedAudio(pcm=b"\x00\x00" * 8000, duration_ms=1000, streams=1)
    script = tmp_path / "lame"
    script.write_text("#!/bin/sh\ncat >/dev/null\necho 'Can'\"'\"'t init outfile' >&2\nexit 3\n")
    script.chmod(0o755)
    target = tmp_path / "out" / "rec.mp3"
    target.parent.mkdir()
    with pytest.raises(RecordingUnreadable, match="status 3: Can't init outfile"):
        await write_mp3(audio, target, lame=str(script))
    with pytest.raises(RecordingUnreadable, match="could not run"):
        await write_mp3(audio, target, lame=str(tmp_path / "no-such-lame"))
    assert list(target.parent.iterdir()) == []


def test_mixed_audio_pcm_is_little_endian() -> None:
    # The worker appends silence as zero bytes and the WAV writer takes pcm as is.
    assert decode_g711(bytes([0x80]), 0) == b"\x7c\x7d"  # 32124 = 0x7D7C
