"""Digits as they arrive: rtpengine's JSON reports of RFC 4733 events (as rtpengine
10.5 prints them) and SIP INFO bodies from gateways; reports from anyone but rtpengine
are refused."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from callmask.media.dtmf import DtmfListener, DtmfReport, digit_of_info, report_of


def rtpengine_report(event: int, **changes: object) -> bytes:
    values: dict[str, object] = {
        "callid": "0f3c",
        "source_tag": "a-tag",
        "source_label": "",
        "tags": ["a-tag", "b-tag"],
        "type": "DTMF",
        "timestamp": 1796560227,
        "source_ip": "127.0.0.2",
        "event": event,
        "duration": 120,
        "volume": 10,
    }
    values.update(changes)
    return json.dumps(values).encode()


@pytest.mark.parametrize(("event", "digit"), [(0, "0"), (9, "9"), (10, "*"), (11, "#"), (15, "D")])
def test_rtpengine_reports_name_the_digit_the_call_and_the_side(event: int, digit: str) -> None:
    assert report_of(rtpengine_report(event)) == DtmfReport("0f3c", "a-tag", digit, 120)


@pytest.mark.parametrize(
    "datagram",
    [b"not json", rtpengine_report(16), rtpengine_report(-1)[:20], b"{}", b"x" * 5000],
)
def test_anything_else_on_the_report_port_is_no_digit(datagram: bytes) -> None:
    assert report_of(datagram) is None


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay", b"Signal= #\nDuration=100", "#"),
        ("Application/DTMF-Relay; charset=x", b"signal=11\r\n", "#"),
        ("application/dtmf", b"7", "7"),
        ("application/dtmf", b"*\r\n", "*"),
        ("application/dtmf-relay", b"Duration=160", None),
        ("application/dtmf-relay", b"Signal=55", None),
        ("application/dtmf", b"x", None),
        ("application/sdp", b"v=0", None),
        (None, b"Signal=5", None),
    ],
)
def test_sip_info_bodies_of_gateways_give_their_digit(
    content_type: str | None, body: bytes, digit: str | None
) -> None:
    assert digit_of_info(content_type, body) == digit


async def test_the_listener_takes_reports_only_from_rtpengines_address() -> None:
    got: list[DtmfReport] = []
    arrived = asyncio.Event()
    listener = await DtmfListener.open("127.0.0.1")
    listener.on_report = lambda report: (got.append(report), arrived.set())
    host, port = listener.address.rsplit(":", 1)
    try:
        for source in ("127.0.0.2", "127.0.0.1"):  # a stranger first, then rtpengine
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.bind((source, 0))
                event = 1 if source == "127.0.0.2" else 2
                sender.sendto(rtpengine_report(event), (host, int(port)))
        await asyncio.wait_for(arrived.wait(), timeout=5)
        await asyncio.sleep(0.05)
    finally:
        listener.close()
    assert [r.digit for r in got] == ["2"] and listener.refused == 1
