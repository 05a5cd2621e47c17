"""SIPp as the carrier in interop tests: run the scenarios in tests/interop/scenarios, read back
what each SIPp sent and received, and capture the RTP that flowed on loopback.

A SIPp UAC plays the carrier delivering a call (side A); a SIPp UAS plays the carrier's far
side (side B). Both run as real processes on 127.0.0.1 (SIP signalling, media and control
sockets alike). Every run writes SIPp's own traces into a work directory (``-trace_msg``,
``-trace_err``, ``-trace_stat``, ``-trace_screen``); this module parses them into
:class:`SipMessage` and :class:`SippResult` objects so tests assert on status codes, headers and
SDP the way the carrier saw them. Message syntax follows RFC 3261 section 7 (compact header
forms per section 7.3.3), SDP follows RFC 4566, RTP headers RFC 3550 section 5.1, digest
credentials RFC 2617 section 3.2.2.

RTP: SIPp 3.6.1 keeps no totals of the RTP it plays or receives, so :class:`RtpCapture` watches
the loopback interface itself (an ``AF_PACKET`` socket with a kernel filter that passes only
incoming IPv4 UDP datagrams that look like RTP version 2). That shows every leg, including the
ones between a peer and rtpengine that no test socket could bind. It needs ``CAP_NET_RAW``,
as does SIPp's ``play_pcap_audio`` (a raw socket) that the scenarios use to talk.

Written for SIPp 3.6.1 (Debian ``sip-tester``); see the comments in each scenario for the SIPp
behaviours the scenarios work around.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "interop" / "scenarios"
"""Where the carrier scenarios live; a bare scenario name is looked up here."""

G711A_PCAP = Path("/usr/share/sip-tester/g711a.pcap")
"""The PCMA recording the scenarios play: 236 RTP packets of 30 ms (7.05 s), payload type 8."""

LOOPBACK = "127.0.0.1"

DEFAULT_VARIABLES: Mapping[str, str] = {
    "caller": "12125550100",
    "hold_ms": "500",
    "ring_ms": "100",
    "cancel_after_ms": "200",
    # Long enough for one retransmission of a lost final response or BYE (Timer G/E start at
    # T1 = 500 ms); loss tests raise it to ride out several.
    "linger_ms": "1000",
    "code": "503",
    "realm": "carrier.test",
    "nonce": "5f3c1ab0e7d24c16b2a9f0c8d1e6a4b7",
    "auth_user": "callmask",
    "auth_password": "trunk-secret",
}
"""Values the harness passes with ``-set`` for every variable a scenario declares in its
``<Global variables=...>`` and the test does not give. ``reason`` defaults to the RFC 3261
reason phrase of ``code``."""

REASON_PHRASES: Mapping[int, str] = {
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    480: "Temporarily Unavailable",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}
"""RFC 3261 section 21 reason phrases."""

# RFC 3261 section 7.3.3 compact forms, plus the RFC 3515/3891/4028 ones carriers send.
_COMPACT_HEADERS: Mapping[str, str] = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "u": "allow-events",
}

# How long a stopping SIPp gets at each step: SIGUSR1 lets calls finish, a second SIGUSR1
# aborts them, SIGTERM makes SIPp write its logs and exit, SIGKILL is the last resort.
_SOFT_STOP_S = 3.0
_ABORT_STOP_S = 2.0
_TERM_STOP_S = 2.0
_LISTEN_TIMEOUT_S = 5.0
_EXIT_GRACE_S = 5.0


class SippError(RuntimeError):
    """SIPp could not be started, or stopped listening before the test was done with it."""


class SippTimeoutError(TimeoutError):
    """SIPp did not finish in time; it has been stopped and ``result`` holds what it did."""

    def __init__(self, message: str, result: SippResult) -> None:
        super().__init__(f"{message}\n{result.describe()}")
        self.result = result


def sipp_available() -> bool:
    """True when the ``sipp`` binary (Debian ``sip-tester``) is on PATH."""
    return shutil.which("sipp") is not None


# Ports this process has handed out. A port is free when asked for but is only bound
# later, by whoever got it; two parts of one test (a trunk's SIPp and rtpengine's ng
# socket, say) would otherwise be offered the same one. Never again.
_handed_out: set[int] = set()

# Where the ports handed out come from: below the kernel's ephemeral range, so that no
# socket the kernel numbers itself (an HTTP client's connection, rtpengine's ng client, a
# SIPp media socket) can take a port between the moment it is handed out and the moment
# its owner binds it, and above and apart from the rtpengine media ranges the tests and
# benches configure (20000 and up).
_HANDED_OUT_FROM = range(10000, 20000)


def _ephemeral_ports() -> range:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        low, high = (int(field) for field in ports.read().split())
    return range(low, high + 1)


_EPHEMERAL = _ephemeral_ports()
if _EPHEMERAL.start < _HANDED_OUT_FROM.stop and _HANDED_OUT_FROM.start < _EPHEMERAL.stop:
    raise RuntimeError(
        f"the kernel's ephemeral ports ({_EPHEMERAL}) overlap the ports the tests "
        f"hand out ({_HANDED_OUT_FROM}); raise net.ipv4.ip_local_port_range's low end"
    )


def _bindable(kind: socket.SocketKind, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def free_udp_port() -> int:
    """A port on 127.0.0.1 that is free for both UDP and TCP right now (SIP listens on
    both) and that this process has not handed out before."""
    for _ in range(200):
        port = random.choice(_HANDED_OUT_FROM)
        if port in _handed_out:
            continue
        if _bindable(socket.SOCK_DGRAM, port) and _bindable(socket.SOCK_STREAM, port):
            _handed_out.add(port)
            return port
    raise SippError(f"no port in {_HANDED_OUT_FROM} free for both UDP and TCP after 200 tries")


def free_media_port() -> int:
    """An even UDP port P on 127.0.0.1 with P+2 also free: SIPp binds ``-mp`` and ``-mp``+2."""
    for _ in range(200):
        port = random.randrange(_HANDED_OUT_FROM.start, _HANDED_OUT_FROM.stop - 4, 2)
        if {port, port + 1, port + 2, port + 3} & _handed_out:
            continue
        if _bindable(socket.SOCK_DGRAM, port) and _bindable(socket.SOCK_DGRAM, port + 2):
            _handed_out.update((port, port + 1, port + 2, port + 3))
            return port
    raise SippError(f"no free even UDP port pair in {_HANDED_OUT_FROM} after 200 tries")


# --------------------------------------------------------------------------- SIP messages


@dataclass(frozen=True, slots=True)
class SdpAudio:
    """The audio stream of an SDP body (RFC 4566 sections 5.7, 5.14 and 6)."""

    connection_address: str
    port: int
    payload_types: tuple[int, ...]
    direction: str
    """sendrecv, sendonly, recvonly or inactive (media level wins over session level)."""

    @property
    def address(self) -> tuple[str, int]:
        return (self.connection_address, self.port)


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One SIP message as a SIPp saw it: sent by it or received by it."""

    first_line: str
    headers: list[tuple[str, str]]
    body: str
    direction: Literal["sent", "received"]
    timestamp: float = 0.0
    """Wall-clock time SIPp logged it (seconds since the epoch, microsecond resolution)."""
    transport: str = "UDP"
    lost: bool = False
    """Received, but dropped unprocessed by SIPp to simulate loss (``-lost``)."""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive, compact forms understood)."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every occurrence of header ``name``, in order (comma lists are not split)."""
        wanted = _canonical_header_name(name)
        return [value for key, value in self.headers if _canonical_header_name(key) == wanted]

    @property
    def status(self) -> int | None:
        """The status code of a response; None for a request."""
        if not self.first_line.startswith("SIP/2.0 "):
            return None
        code = self.first_line.split(" ", 2)[1]
        return int(code) if code.isdigit() else None

    @property
    def method(self) -> str | None:
        """The method of a request; None for a response (see ``cseq_method``)."""
        if self.first_line.startswith("SIP/"):
            return None
        return self.first_line.split(" ", 1)[0]

    @property
    def request_uri(self) -> str | None:
        if self.method is None:
            return None
        parts = self.first_line.split(" ")
        return parts[1] if len(parts) == 3 else None

    @property
    def cseq_method(self) -> str | None:
        """The method named in CSeq: what a response answers."""
        cseq = self.header("CSeq")
        if cseq is None:
            return None
        parts = cseq.split()
        return parts[1].upper() if len(parts) == 2 else None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def via_branch(self) -> str | None:
        """The branch parameter of the top Via (RFC 3261 section 8.1.1.7)."""
        via = self.header("Via")
        if via is None:
            return None
        match = re.search(r";\s*branch=([^;,\s]+)", via, re.IGNORECASE)
        return match.group(1) if match else None

    @property
    def text(self) -> str:
        """The message as text again (CRLF line ends), for assertions on 'anywhere in it'."""
        lines = [self.first_line, *(f"{key}: {value}" for key, value in self.headers)]
        return "\r\n".join(lines) + "\r\n\r\n" + self.body

    def sdp_audio(self) -> SdpAudio | None:
        """The first m=audio stream of the body, or None without an SDP audio stream."""
        content_type = (self.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/sdp" or not self.body:
            return None
        return parse_sdp_audio(self.body)


def _canonical_header_name(name: str) -> str:
    lowered = name.strip().lower()
    return _COMPACT_HEADERS.get(lowered, lowered)


def parse_sdp_audio(body: str) -> SdpAudio | None:
    """The first m=audio stream of an SDP body, with its c= (media level or session level)."""
    session_address: str | None = None
    session_direction = "sendrecv"
    in_audio = False
    port = 0
    payload_types: tuple[int, ...] = ()
    media_address: str | None = None
    media_direction: str | None = None
    for raw_line in body.splitlines():
        line = raw_line.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        fields = value.split()
        if kind == "m":
            if in_audio:
                break  # only the first audio stream
            if len(fields) >= 3 and fields[0] == "audio" and fields[1].isdigit():
                in_audio = True
                port = int(fields[1])
                payload_types = tuple(int(pt) for pt in fields[3:] if pt.isdigit())
            continue
        if kind == "c" and fields:
            if in_audio:
                media_address = fields[-1]
            else:
                session_address = fields[-1]
        elif kind == "a" and value in ("sendrecv", "sendonly", "recvonly", "inactive"):
            if in_audio:
                media_direction = value
            else:
                session_direction = value
    address = media_address or session_address
    if not in_audio or address is None:
        return None
    return SdpAudio(address, port, payload_types, media_direction or session_direction)


def parse_sip_message(
    raw: bytes,
    direction: Literal["sent", "received"],
    *,
    timestamp: float = 0.0,
    transport: str = "UDP",
    lost: bool = False,
) -> SipMessage:
    """Split one message into start line, headers (folded lines joined) and body."""
    text = raw.decode("utf-8", errors="replace")
    head, separator, body = text.partition("\r\n\r\n")
    if not separator:
        head, _, body = text.partition("\n\n")
    lines = head.replace("\r\n", "\n").split("\n")
    first_line = lines[0].strip()
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0] in " \t" and headers:
            # RFC 3261 section 7.3.1: a line starting with whitespace continues the previous one.
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip(), value.strip()))
    return SipMessage(first_line, headers, body, direction, timestamp, transport, lost)


# A block of SIPp's -trace_msg file (SIPp 3.6.1 socket.cpp): a dashed line with the local time,
# then "UDP message sent (N bytes):" or "UDP message received [N] bytes :", a blank line and
# exactly N bytes of message. Other blocks (unexpected/ignored/dead-call copies) are not wanted:
# every message also appears in a sent/received block.
_TRACE_BLOCK = re.compile(
    rb"-{47} (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})\n"
    rb"(?P<transport>[A-Z]+) (?:[a-z]+ )?message (?:sent \((?P<sent>\d+) bytes\):"
    rb"|received \[(?P<received>\d+)\] bytes :)\n\n",
)
# Written by SIPp right after the received block it refers to when -lost drops the message.
_LOST_ON_RECEIVE = re.compile(rb"\n?[A-Z]+ message (?:\(retrans\) )?lost \(recv\)\.")


# Written by SIPp instead of a sent block when -lost drops a message it was about to send.
_LOST_ON_SEND = b"message voluntary lost (while sending)"


def parse_message_trace(data: bytes) -> list[SipMessage]:
    """Parse a SIPp -trace_msg file into messages, in the order SIPp logged them."""
    messages: list[SipMessage] = []
    position = 0
    # Search on from the end of the previous message, never inside one: a body may hold
    # anything, and SIPp glues some notes ("... lost (recv).") straight onto the next dashes.
    while (block := _TRACE_BLOCK.search(data, position)) is not None:
        size_text = block.group("sent") or block.group("received")
        assert size_text is not None
        start = block.end()
        end = start + int(size_text)
        lost = bool(block.group("received") and _LOST_ON_RECEIVE.match(data, end))
        when = datetime.strptime(block.group("time").decode(), "%Y-%m-%d %H:%M:%S.%f")
        messages.append(
            parse_sip_message(
                data[start:end],
                "sent" if block.group("sent") else "received",
                timestamp=when.timestamp(),
                transport=block.group("transport").decode(),
                lost=lost,
            )
        )
        position = end
    return messages


# --------------------------------------------------------------------------- results


@dataclass
class SippResult:
    """What one SIPp run did: exit code, call counts, every SIP message, SIPp's own logs.

    Exit codes (SIPp 3.6.1): 0 every call succeeded, 1 at least one failed, 97 stopped by an
    internal command, 99 no call processed, 255 fatal error (also the global -timeout), 254
    could not bind a socket; negative when the harness had to kill it.
    """

    returncode: int
    successful: int
    failed: int
    messages: list[SipMessage]
    stderr: str
    errors: str = ""
    """SIPp's error log (-trace_err): unexpected messages, failed regexps, timeouts."""
    screen: str = ""
    """SIPp's final statistics screens (-trace_screen)."""
    command: tuple[str, ...] = ()
    workdir: Path | None = None
    """Where the traces are, when the caller gave a directory that outlives the run."""
    lost_on_send: int = 0
    """Messages SIPp left unsent for ``-lost``: it logs no block for them, only a note."""

    def received(self, method_or_status: str | int) -> list[SipMessage]:
        """Requests of that method or responses with that status that SIPp received and
        processed (not the ones it dropped for ``-lost``), retransmissions included."""
        return self._select("received", method_or_status)

    def sent(self, method_or_status: str | int) -> list[SipMessage]:
        """Requests of that method or responses with that status that SIPp sent."""
        return self._select("sent", method_or_status)

    def final_status(self, method: str = "INVITE") -> int | None:
        """The first final status (>= 200) SIPp received for a ``method`` request."""
        for message in self.messages:
            if message.direction != "received" or message.lost or message.status is None:
                continue
            if message.status >= 200 and message.cseq_method == method.upper():
                return message.status
        return None

    def statuses_received(self, method: str = "INVITE") -> list[int]:
        """Every status received for ``method`` requests, in order, retransmissions included."""
        return [
            message.status
            for message in self.messages
            if message.direction == "received"
            and not message.lost
            and message.status is not None
            and message.cseq_method == method.upper()
        ]

    def describe(self) -> str:
        """A summary for assertion messages: command, counts, the message flow, the errors."""
        flow = "\n".join(
            f"  {'->' if m.direction == 'sent' else '<-'} {m.first_line}"
            f"{' (dropped: -lost)' if m.lost else ''}"
            for m in self.messages
        )
        return (
            f"sipp exit {self.returncode}: {self.successful} successful, {self.failed} failed\n"
            f"command: {' '.join(self.command)}\n"
            f"messages:\n{flow or '  (none)'}\n"
            f"errors:\n{_tail(self.errors, 3000) or '  (none)'}\n"
            f"stderr:\n{_tail(self.stderr, 2000) or '  (none)'}"
        )

    def _select(self, direction: str, method_or_status: str | int) -> list[SipMessage]:
        wanted_status: int | None = None
        wanted_method: str | None = None
        if isinstance(method_or_status, int):
            wanted_status = method_or_status
        elif method_or_status.isdigit():
            wanted_status = int(method_or_status)
        else:
            wanted_method = method_or_status.upper()
        return [
            message
            for message in self.messages
            if message.direction == direction
            and not message.lost
            and (
                message.status == wanted_status
                if wanted_status is not None
                else message.method == wanted_method
            )
        ]


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _read_counts(stat_file: Path, screen: str) -> tuple[int, int]:
    """Successful and failed calls: the last row of -trace_stat, else the final screen."""
    with contextlib.suppress(OSError):
        rows = [row for row in stat_file.read_text(errors="replace").splitlines() if row]
        if len(rows) >= 2:
            names = rows[0].split(";")
            values = rows[-1].split(";")
            table = dict(zip(names, values, strict=False))
            successful = table.get("SuccessfulCall(C)", "0")
            failed = table.get("FailedCall(C)", "0")
            if successful.isdigit() and failed.isdigit():
                return int(successful), int(failed)
    counts = [0, 0]
    for index, label in enumerate(("Successful call", "Failed call")):
        found = re.findall(rf"^\s*{label}\s*\|\s*\d+\s*\|\s*(\d+)", screen, re.MULTILINE)
        if found:
            counts[index] = int(found[-1])
    return counts[0], counts[1]


# --------------------------------------------------------------------------- scenarios


def scenario_path(scenario: str | os.PathLike[str]) -> Path:
    """A scenario file: a path, or a name (with or without .xml) in SCENARIO_DIR."""
    path = Path(scenario)
    if path.is_file():
        return path
    name = path.name if path.suffix == ".xml" else f"{path.name}.xml"
    candidate = SCENARIO_DIR / name
    if not candidate.is_file():
        raise FileNotFoundError(f"no SIPp scenario {scenario!r} (looked in {SCENARIO_DIR})")
    return candidate


def scenario_variables(scenario: str | os.PathLike[str]) -> tuple[str, ...]:
    """The variables a scenario takes with -set (its <Global variables="..."/> list)."""
    root = ElementTree.parse(scenario_path(scenario)).getroot()
    names: list[str] = []
    for element in root.iter("Global"):
        names.extend(name.strip() for name in element.get("variables", "").split(","))
    return tuple(name for name in names if name)


def error_codes_offered() -> tuple[int, ...]:
    """The final status codes uas_error.xml can answer with (its send_NNN branches)."""
    root = ElementTree.parse(SCENARIO_DIR / "uas_error.xml").getroot()
    codes = [
        int(label.get("id", "")[5:])
        for label in root.iter("label")
        if re.fullmatch(r"send_\d{3}", label.get("id", ""))
    ]
    return tuple(codes)


def _set_arguments(
    path: Path, variables: Mapping[str, str], transport: Literal["udp", "tcp"] = "udp"
) -> list[str]:
    """-set NAME VALUE for every declared variable; SIPp itself rejects undeclared ones with a
    fatal error, so refuse them here with a clearer message."""
    declared = scenario_variables(path)
    unknown = sorted(set(variables) - set(declared))
    if unknown:
        raise ValueError(
            f"{path.name} takes no variable(s) {unknown}; it declares {list(declared)}"
        )
    values = {name: str(value) for name, value in variables.items()}
    if path.name == "uas_error.xml":
        code = int(values.get("code", DEFAULT_VARIABLES["code"]))
        offered = error_codes_offered()
        if code not in offered:
            raise ValueError(f"uas_error.xml answers only {offered}, not {code}")
        values.setdefault("reason", REASON_PHRASES.get(code, "Error"))
    if transport == "tcp":
        # Nothing is retransmitted over TCP (RFC 3261 Timers J and K are 0 there), and a call
        # still lingering when the peer closes the connection counts as failed in SIPp 3.6.1.
        values.setdefault("linger_ms", "0")
    arguments: list[str] = []
    for name in declared:
        value = values.get(name, DEFAULT_VARIABLES.get(name))
        if value is None:
            raise ValueError(f"{path.name} needs variable {name!r} and there is no default")
        arguments += ["-set", name, value]
    return arguments


# --------------------------------------------------------------------------- processes


@dataclass
class _Run:
    """One SIPp process and its files."""

    scenario: Path
    workdir: Path
    keep_workdir: bool
    command: list[str] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None

    @property
    def message_file(self) -> Path:
        return self.workdir / "messages.log"

    @property
    def error_file(self) -> Path:
        return self.workdir / "errors.log"

    @property
    def stat_file(self) -> Path:
        return self.workdir / "stats.csv"

    @property
    def screen_file(self) -> Path:
        return self.workdir / "screen.log"

    @property
    def stdout_file(self) -> Path:
        return self.workdir / "stdout.log"

    @property
    def stderr_file(self) -> Path:
        return self.workdir / "stderr.log"

    def build(
        self,
        *,
        remote: tuple[str, int] | None,
        local_port: int,
        media_port: int,
        transport: Literal["udp", "tcp"],
        variables: Mapping[str, str],
        extra_args: Sequence[str],
        trace_messages: bool = True,
    ) -> None:
        command = ["sipp"]
        if remote is not None:
            command.append(f"{remote[0]}:{remote[1]}")
        command += [
            "-sf", str(self.scenario),
            "-t", "u1" if transport == "udp" else "t1",
            # Everything on loopback: signalling, media and the control socket (SIPp binds the
            # control socket to every address unless told otherwise).
            "-i", LOOPBACK, "-p", str(local_port), "-bind_local",
            "-mi", LOOPBACK, "-mp", str(media_port),
            "-ci", LOOPBACK, "-cp", str(free_udp_port()),
            "-nostdin",
            "-trace_err", "-error_file", str(self.error_file),
            "-trace_stat", "-stf", str(self.stat_file), "-fd", "1",
            "-trace_screen", "-screen_file", str(self.screen_file),
        ]  # fmt: skip
        if trace_messages:
            command += ["-trace_msg", "-message_file", str(self.message_file)]
        command += _set_arguments(self.scenario, variables, transport)
        command += list(extra_args)
        self.command = command

    async def start(self) -> asyncio.subprocess.Process:
        with (
            self.stdout_file.open("wb") as stdout,
            self.stderr_file.open("wb") as stderr,
        ):
            # Files, not pipes: SIPp repaints its screen on stdout every second and would block
            # on a full pipe nobody reads.
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=self.workdir,
                start_new_session=True,
            )
        return self.process

    async def stop(self) -> None:
        """Stop SIPp if it still runs: soft quit, abort calls, SIGTERM, SIGKILL."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        steps = (
            (signal.SIGUSR1, _SOFT_STOP_S),
            (signal.SIGUSR1, _ABORT_STOP_S),
            (signal.SIGTERM, _TERM_STOP_S),
        )
        for signal_number, wait_s in steps:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal_number)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), wait_s)
                return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

    def result(self) -> SippResult:
        process = self.process
        returncode = -1 if process is None or process.returncode is None else process.returncode
        messages: list[SipMessage] = []
        trace = b""
        with contextlib.suppress(OSError):
            trace = self.message_file.read_bytes()
            messages = parse_message_trace(trace)
        screen = _read_text(self.screen_file)
        successful, failed = _read_counts(self.stat_file, screen)
        return SippResult(
            returncode=returncode,
            successful=successful,
            failed=failed,
            messages=messages,
            stderr=_read_text(self.stderr_file),
            errors=_read_text(self.error_file),
            screen=screen,
            command=tuple(self.command),
            lost_on_send=trace.count(_LOST_ON_SEND),
            workdir=self.workdir if self.keep_workdir else None,
        )

    def cleanup(self) -> None:
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _new_run(scenario: str | os.PathLike[str], workdir: Path | None, role: str) -> _Run:
    path = scenario_path(scenario).resolve()
    if workdir is None:
        return _Run(path, Path(tempfile.mkdtemp(prefix=f"sipp-{role}-")), keep_workdir=False)
    directory = Path(tempfile.mkdtemp(prefix=f"sipp-{role}-{path.stem}-", dir=workdir))
    return _Run(path, directory, keep_workdir=True)


def _is_listening(port: int, transport: Literal["udp", "tcp"]) -> bool:
    """Whether something has bound 127.0.0.1:port, read from /proc/net (Linux) so that the
    check never races SIPp for the port the way a test bind would."""
    table = Path("/proc/net/udp" if transport == "udp" else "/proc/net/tcp")
    wanted = f"0100007F:{port:04X}"
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        # TCP sockets must be in state 0A (LISTEN); UDP ones have no listening state.
        if len(fields) > 3 and fields[1] == wanted and (transport == "udp" or fields[3] == "0A"):
            return True
    return False


class SippUas:
    """SIPp as the carrier's far side: ``async with SippUas("uas_answer", port=p) as b:``.

    Starts a UAS on 127.0.0.1:port, waits (at most 5 s) until it is listening, and on exit
    stops it if it still runs and collects ``result``. ``calls`` is SIPp's -m: the UAS exits
    after that many calls (``wait`` waits for that); None keeps it answering until ``stop()``
    or exit.

    ``variables`` fill the scenario's ``-set`` variables (the rest get DEFAULT_VARIABLES).
    ``media_port`` is what the scenario's SDP offers and where SIPp plays audio from (a free
    even port when None; SIPp also binds port + 2). ``workdir``: keep SIPp's logs in a new
    directory under it (e.g. pytest's tmp_path) instead of a temporary one removed after the
    run. ``trace_messages=False`` skips -trace_msg for load runs (``messages`` is then empty).
    Anything else goes in ``extra_args`` (e.g. ``["-lost", "5"]``, ``["-rtp_echo"]``).
    """

    def __init__(
        self,
        scenario: str,
        *,
        port: int,
        variables: Mapping[str, str] | None = None,
        calls: int | None = None,
        extra_args: Sequence[str] = (),
        media_port: int | None = None,
        transport: Literal["udp", "tcp"] = "udp",
        workdir: Path | None = None,
        trace_messages: bool = True,
    ) -> None:
        self.port = port
        self.media_port = media_port if media_port is not None else free_media_port()
        self.calls = calls
        self.transport: Literal["udp", "tcp"] = transport
        self.result: SippResult | None = None
        self._run = _new_run(scenario, workdir, "uas")
        arguments = list(extra_args)
        if calls is not None:
            arguments = ["-m", str(calls), *arguments]
        try:
            self._run.build(
                remote=None,
                local_port=port,
                media_port=self.media_port,
                transport=transport,
                variables=dict(variables or {}),
                extra_args=arguments,
                trace_messages=trace_messages,
            )
        except BaseException:
            self._run.cleanup()
            raise

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    @property
    def command(self) -> tuple[str, ...]:
        return tuple(self._run.command)

    async def __aenter__(self) -> Self:
        process = await self._run.start()
        try:
            async with asyncio.timeout(_LISTEN_TIMEOUT_S):
                while not _is_listening(self.port, self.transport):
                    if process.returncode is not None:
                        break
                    await asyncio.sleep(0.02)
        except TimeoutError:
            pass
        if process.returncode is not None or not _is_listening(self.port, self.transport):
            await self._run.stop()
            result = self._run.result()
            self._run.cleanup()
            raise SippError(
                f"SIPp UAS did not start listening on 127.0.0.1:{self.port}\n{result.describe()}"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.result is None:
            await self.stop()

    async def wait(self, timeout_s: float) -> SippResult:
        """Wait until SIPp has handled its ``calls`` calls and exited; its result.

        Raises SippTimeoutError (after stopping SIPp) when it is still running after
        ``timeout_s``.
        """
        if self.calls is None:
            raise ValueError("wait() needs calls=N: a UAS without -m only ends when stopped")
        process = self._run.process
        if process is None:
            raise SippError("the UAS was not started (use it with 'async with')")
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            result = await self.stop()
            raise SippTimeoutError(f"SIPp UAS still running after {timeout_s} s", result) from None
        return await self.stop()

    async def stop(self) -> SippResult:
        """Stop SIPp now (calls in progress get ~3 s to end) and return its result."""
        if self.result is None:
            await self._run.stop()
            self.result = self._run.result()
            self._run.cleanup()
        return self.result


async def run_uac(
    scenario: str,
    *,
    target: tuple[str, int],
    service: str,
    calls: int = 1,
    rate: float = 1,
    variables: Mapping[str, str] | None = None,
    local_port: int | None = None,
    timeout_s: float = 30,
    extra_args: Sequence[str] = (),
    media_port: int | None = None,
    transport: Literal["udp", "tcp"] = "udp",
    workdir: Path | None = None,
    trace_messages: bool = True,
) -> SippResult:
    """Run SIPp as the calling carrier until it has placed and finished ``calls`` calls.

    ``service`` is the Request-URI user (the DID, SIPp's -s), ``rate`` calls per second,
    ``local_port`` the SIP port it sends from (a free one when None). ``variables``,
    ``media_port``, ``transport``, ``workdir``, ``trace_messages`` and ``extra_args`` as for
    SippUas. SIPp gets ``timeout_s`` as its global -timeout (with -timeout_error, so it exits
    255 when it hits it); if it is somehow still running 5 s later it is stopped and
    SippTimeoutError is raised.
    """
    run = _new_run(scenario, workdir, "uac")
    try:
        run.build(
            remote=target,
            local_port=local_port if local_port is not None else free_udp_port(),
            media_port=media_port if media_port is not None else free_media_port(),
            transport=transport,
            variables=dict(variables or {}),
            extra_args=[
                *("-s", service, "-m", str(calls), "-r", repr(float(rate))),
                *("-timeout", f"{max(1, math.ceil(timeout_s))}s", "-timeout_error"),
                *extra_args,
            ],
            trace_messages=trace_messages,
        )
        process = await run.start()
        try:
            await asyncio.wait_for(process.wait(), timeout_s + _EXIT_GRACE_S)
        except TimeoutError:
            await run.stop()
            raise SippTimeoutError(
                f"SIPp UAC still running after {timeout_s + _EXIT_GRACE_S} s", run.result()
            ) from None
        return run.result()
    finally:
        await run.stop()
        run.cleanup()


# --------------------------------------------------------------------------- digest


def parse_digest(header_value: str) -> dict[str, str]:
    """The parameters of a Digest credentials or challenge value (RFC 2617 section 3.2),
    names lower-cased, quotes removed. Empty when the scheme is not Digest."""
    scheme, _, rest = header_value.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    pattern = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?')
    return {
        match.group(1).lower(): match.group(2) if match.group(2) is not None else match.group(3)
        for match in pattern.finditer(rest)
    }


def digest_response_valid(
    request: SipMessage,
    *,
    username: str,
    password: str,
    header: str = "Proxy-Authorization",
) -> bool:
    """Whether the digest ``response`` in ``header`` of ``request`` is right for this username
    and password (MD5, with or without qop=auth; RFC 2617 section 3.2.2.1).

    Like SIPp's verifyauth it takes realm, nonce, uri, nc and cnonce from the header itself;
    check those against the challenge and the Request-URI separately (``parse_digest``).
    """
    import hashlib

    params = parse_digest(request.header(header) or "")
    if not params or params.get("username") != username:
        return False
    if params.get("algorithm", "MD5").upper() != "MD5" or request.method is None:
        return False

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    realm, nonce, uri = params.get("realm", ""), params.get("nonce", ""), params.get("uri", "")
    ha1 = md5(f"{username}:{realm}:{password}")
    ha2 = md5(f"{request.method}:{uri}")
    qop = params.get("qop")
    if qop is None:
        expected = md5(f"{ha1}:{nonce}:{ha2}")
    elif qop == "auth":
        nc, cnonce = params.get("nc", ""), params.get("cnonce", "")
        expected = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    else:
        return False
    return params.get("response", "").lower() == expected


# --------------------------------------------------------------------------- media paths


@dataclass(frozen=True, slots=True)
class AnchoredMedia:
    """Where RTP should flow in a call between carrier sides A and B through a media relay
    (rtpengine), from the SDP each SIPp saw: A offers ``a`` and is answered with
    ``relay_for_a``; B is offered ``relay_for_b`` and answers ``b``. A relay sends to each side
    from the address it gave that side (symmetric RTP), so the four legs are
    a -> relay_for_a, relay_for_a -> a, b -> relay_for_b, relay_for_b -> b.
    Without a relay (A and B talking directly) relay_for_a is b and relay_for_b is a.
    """

    a: tuple[str, int]
    relay_for_a: tuple[str, int]
    relay_for_b: tuple[str, int]
    b: tuple[str, int]

    def counts(self, capture: RtpCapture) -> dict[str, int]:
        """Packets seen on each leg, and on a direct A-B path that bypasses the relay."""
        return {
            "a->relay": len(capture.between(self.a, self.relay_for_a)),
            "relay->a": len(capture.between(self.relay_for_a, self.a)),
            "b->relay": len(capture.between(self.b, self.relay_for_b)),
            "relay->b": len(capture.between(self.relay_for_b, self.b)),
            "a<->b direct": len(capture.between(self.a, self.b))
            + len(capture.between(self.b, self.a)),
        }


def anchored_media(a: SippResult, b: SippResult) -> AnchoredMedia:
    """The media addresses of a call from A's and B's traces (the first INVITE each side
    handled, the 200 for it, or the 183 when no 200 carried SDP)."""

    def first_sdp(messages: list[SipMessage], what: str) -> SdpAudio:
        for message in messages:
            audio = message.sdp_audio()
            if audio is not None:
                return audio
        raise AssertionError(f"no SDP audio in {what}")

    a_answers = [m for m in a.received(200) + a.received(183) if m.cseq_method == "INVITE"]
    b_answers = [m for m in b.sent(200) + b.sent(183) if m.cseq_method == "INVITE"]
    return AnchoredMedia(
        a=first_sdp(a.sent("INVITE"), "the INVITE A sent").address,
        relay_for_a=first_sdp(a_answers, "the answer A received").address,
        relay_for_b=first_sdp(b.received("INVITE"), "the INVITE B received").address,
        b=first_sdp(b_answers, "the answer B sent").address,
    )


# --------------------------------------------------------------------------- RTP capture


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet seen on loopback (header fields per RFC 3550 section 5.1)."""

    source: tuple[str, int]
    destination: tuple[str, int]
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload_size: int
    captured_at: float
    """Wall-clock time the harness read it (``time.time()``, the clock of
    ``SipMessage.timestamp``, so packets can be placed before or after a SIP message)."""


# Classic BPF (Linux packet(7), SO_ATTACH_FILTER) run by the kernel on every loopback frame:
# keep incoming (not PACKET_OUTGOING: loopback shows each packet twice) unfragmented IPv4 UDP
# whose first payload byte has RTP version 2. Loopback frames carry a 14-byte Ethernet header.
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4
_PACKET_OUTGOING = 4
_RTP_FILTER: tuple[tuple[int, int, int, int], ...] = (
    (0x20, 0, 0, _SKF_AD_PKTTYPE),  # 0: ld  pkttype
    (0x15, 10, 0, _PACKET_OUTGOING),  # 1: jeq OUTGOING -> drop
    (0x28, 0, 0, 12),  # 2: ldh ethertype
    (0x15, 0, 8, 0x0800),  # 3: jeq IPv4, else drop
    (0x30, 0, 0, 23),  # 4: ldb ip protocol
    (0x15, 0, 6, 17),  # 5: jeq UDP, else drop
    (0x28, 0, 0, 20),  # 6: ldh flags + fragment offset
    (0x45, 4, 0, 0x1FFF),  # 7: jset fragment -> drop
    (0xB1, 0, 0, 14),  # 8: ldx 4 * (ip[0] & 0x0f)
    (0x50, 0, 0, 22),  # 9: ldb first UDP payload byte (14 + ihl + 8)
    (0x54, 0, 0, 0xC0),  # 10: and version bits
    (0x15, 1, 0, 0x80),  # 11: jeq version 2 -> accept, else drop
    (0x06, 0, 0, 0),  # 12: drop
    (0x06, 0, 0, 0xFFFF),  # 13: accept
)
_SO_ATTACH_FILTER = 26
_ETH_P_ALL = 0x0003


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _open_capture_socket() -> socket.socket:
    # Protocol 0 receives nothing until bound, so no unfiltered frame is queued before the
    # filter is attached.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        instructions = (_SockFilter * len(_RTP_FILTER))(
            *(_SockFilter(code, jt, jf, k) for code, jt, jf, k in _RTP_FILTER)
        )
        program = _SockFprog(len(_RTP_FILTER), instructions)
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(program))
        sock.bind(("lo", _ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def rtp_capture_available() -> bool:
    """Whether this process may watch loopback (CAP_NET_RAW, Linux)."""
    try:
        _open_capture_socket().close()
    except (OSError, AttributeError):
        return False
    return True


def _decode_frame(frame: bytes, now: float) -> RtpPacket | None:
    if len(frame) < 14 + 20 + 8 + 12:
        return None
    ip = frame[14:]
    header_length = (ip[0] & 0x0F) * 4
    udp = ip[header_length:]
    if len(udp) < 8 + 12:
        return None
    source_port, destination_port = struct.unpack("!HH", udp[:4])
    rtp = udp[8:]
    first, second, sequence_number, timestamp, ssrc = struct.unpack("!BBHII", rtp[:12])
    if 200 <= second <= 204:
        return None  # RTCP SR/RR/SDES/BYE/APP (RFC 3550 section 6) shares the version bits
    # Header length: fixed 12 bytes, CSRC list, extension (RFC 3550 section 5.3.1).
    rtp_header = 12 + 4 * (first & 0x0F)
    if first & 0x10 and len(rtp) >= rtp_header + 4:
        rtp_header += 4 + 4 * struct.unpack("!H", rtp[rtp_header + 2 : rtp_header + 4])[0]
    return RtpPacket(
        source=(socket.inet_ntoa(ip[12:16]), source_port),
        destination=(socket.inet_ntoa(ip[16:20]), destination_port),
        payload_type=second & 0x7F,
        sequence_number=sequence_number,
        timestamp=timestamp,
        ssrc=ssrc,
        payload_size=max(0, len(rtp) - rtp_header),
        captured_at=now,
    )


Endpoint = int | tuple[str, int]
"""A port (any loopback address) or an exact (address, port)."""


def _matches(endpoint: tuple[str, int], wanted: Endpoint | None) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, int):
        return endpoint[1] == wanted
    return endpoint == wanted


class RtpCapture:
    """Records the RTP packets that cross loopback while it is open.

    ``async with RtpCapture() as capture: ...`` then ask ``capture.between(source, destination)``
    (ports or (address, port) pairs) or ``capture.flows()``. RTCP (packet types 200-204) is
    left out. At most ``max_packets`` are kept so a
    load test cannot exhaust memory; ``overflowed`` says when more came.
    """

    def __init__(self, *, max_packets: int = 200_000) -> None:
        self.packets: list[RtpPacket] = []
        self.max_packets = max_packets
        self.overflowed = False
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._socket = _open_capture_socket()
        self._loop.add_reader(self._socket.fileno(), self._drain)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is None:
            return
        self._drain()
        if self._loop is not None:
            self._loop.remove_reader(self._socket.fileno())
        self._socket.close()
        self._socket = None

    def _drain(self) -> None:
        sock, loop = self._socket, self._loop
        if sock is None or loop is None:
            return
        now = time.time()
        # Bounded: at most 10,000 frames per wake-up, the rest on the next one.
        for _ in range(10_000):
            try:
                frame = sock.recv(65_535)
            except (BlockingIOError, InterruptedError):
                break
            packet = _decode_frame(frame, now)
            if packet is None:
                continue
            if len(self.packets) >= self.max_packets:
                self.overflowed = True
                continue
            self.packets.append(packet)
        self._arrived.set()

    def between(
        self, source: Endpoint | None = None, destination: Endpoint | None = None
    ) -> list[RtpPacket]:
        """Packets from ``source`` to ``destination`` (either may be None for any)."""
        return [
            packet
            for packet in self.packets
            if _matches(packet.source, source) and _matches(packet.destination, destination)
        ]

    def flows(self) -> Counter[tuple[tuple[str, int], tuple[str, int]]]:
        """Packet counts per (source, destination)."""
        return Counter((packet.source, packet.destination) for packet in self.packets)

    def involving(self, port: int) -> list[RtpPacket]:
        """Packets to or from ``port``."""
        return [p for p in self.packets if port in (p.source[1], p.destination[1])]

    async def wait_for(
        self,
        count: int,
        *,
        source: Endpoint | None = None,
        destination: Endpoint | None = None,
        timeout_s: float = 5.0,
    ) -> list[RtpPacket]:
        """Wait until ``count`` packets from ``source`` to ``destination`` have been seen."""
        async with asyncio.timeout(timeout_s):
            while len(found := self.between(source, destination)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return found

    def __iter__(self) -> Iterator[RtpPacket]:
        return iter(self.packets)
