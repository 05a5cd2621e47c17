"""Digits callers press, however they arrive: as RFC 4733 telephone-events in the RTP
stream, which rtpengine decodes and reports as one JSON datagram per digit, or as a
SIP INFO in the dialog (``application/dtmf-relay`` or ``application/dtmf``).

rtpengine sends its reports to the address of its ``--dtmf-log-dest`` option (the
managed rtpengine is started with this node's listener; an external one is pointed at
``CALLMASK_DTMF_LISTEN``), once per digit, when the digit ends. A report names the
call by the call-id callmask gave rtpengine and the side that pressed it by its
from-tag (``source_tag``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

log = logging.getLogger(__name__)

# RFC 4733 section 3.2: events 0-9, then *, #, A-D.
EVENT_DIGITS = "0123456789*#ABCD"
MAX_REPORT_BYTES = 4096  # a report is ~250 bytes; anything larger is not rtpengine's
MAX_INFO_BODY = 256


@dataclass(frozen=True, slots=True)
class DtmfReport:
    """One digit rtpengine decoded: which call, which side, which digit, how long."""

    call_id: str
    source_tag: str
    digit: str
    duration_ms: int


def report_of(datagram: bytes) -> DtmfReport | None:
    """rtpengine's JSON DTMF report, or None for anything else (logged)."""
    if len(datagram) > MAX_REPORT_BYTES:
        return None
    try:
        values = json.loads(datagram)
        event = int(values["event"])
        report = DtmfReport(
            call_id=str(values["callid"]),
            source_tag=str(values["source_tag"]),
            digit=EVENT_DIGITS[event],
            duration_ms=int(values.get("duration", 0)),
        )
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        log.warning("DTMF report not understood (%s): %r", exc, datagram[:200])
        return None
    return report


def digit_of_info(content_type: str | None, body: bytes) -> str | None:
    """The digit a SIP INFO carries, or None when it carries no DTMF.

    ``application/dtmf-relay`` bodies are ``Signal=5`` and ``Duration=160`` lines (the
    de-facto format of Cisco and most gateways); ``application/dtmf`` bodies are the
    digit alone."""
    if content_type is None or len(body) > MAX_INFO_BODY:
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("ascii", "replace")
    if kind == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                return _digit(value.strip())
        return None
    if kind == "application/dtmf":
        return _digit(text.strip())
    return None


def _digit(value: str) -> str | None:
    if len(value) == 1 and value.upper() in EVENT_DIGITS:
        return value.upper()
    if value.isdigit() and int(value) < len(EVENT_DIGITS):  # "Signal=11" for #
        return EVENT_DIGITS[int(value)]
    return None


class DtmfListener(asyncio.DatagramProtocol):
    """The UDP socket rtpengine reports digits to; hands each to ``on_report`` (set
    once the call engine exists; until then there is no call a digit could be for)."""

    def __init__(self) -> None:
        self.on_report: Callable[[DtmfReport], None] | None = None
        # Only rtpengine's reports count: a digit from anyone else could pass a PIN.
        self.allowed_hosts: frozenset[str] = frozenset({"127.0.0.1"})
        self.refused = 0
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, host: str, port: int = 0) -> DtmfListener:
        loop = asyncio.get_running_loop()
        _transport, listener = await loop.create_datagram_endpoint(cls, local_addr=(host, port))
        return listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if addr[0] not in self.allowed_hosts:
            self.refused += 1
            if self.refused in (1, 100, 10_000):  # a flood is logged, not every packet
                log.warning("DTMF report from %s refused: not rtpengine's address", addr[0])
            return
        report = report_of(data)
        if report is not None and self.on_report is not None:
            self.on_report(report)

    @property
    def address(self) -> str:
        """``host:port``, as rtpengine's ``DTMF-log-dest`` flag takes it."""
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
