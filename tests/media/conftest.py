"""Fixtures for media tests: a managed rtpengine on random loopback ports, and a client.

Media ports are drawn at random from 40000-49999 for every test so that engineers running
their own rtpengine tests on the same machine rarely collide; the ng port is handed out
like every other test port (``tests.support.sipp.free_udp_port``), and a busy one is
retried.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callmask.media.rtpengine import RtpengineClient
from callmask.media.rtpengine_process import ManagedRtpengine, RtpengineStartError
from tests.support.sipp import free_udp_port

RTPENGINE_BINARY = shutil.which("rtpengine")
PORT_LOW = 40000
PORT_HIGH = 49999
MEDIA_PORT_COUNT = 100


def random_media_ports(count: int = MEDIA_PORT_COUNT) -> range:
    # rtpengine pairs an even RTP port with the odd RTCP port above it.
    base = random.randrange(PORT_LOW, PORT_HIGH - count, 2)
    return range(base, base + count)


def managed(log_path: Path | None, **options: object) -> tuple[ManagedRtpengine, range]:
    if RTPENGINE_BINARY is None:
        pytest.skip("the rtpengine binary (Debian rtpengine-daemon) is not installed")
    media_ports = random_media_ports()
    ng_port = free_udp_port()  # below 20000: never among the media ports
    engine = ManagedRtpengine(
        binary=RTPENGINE_BINARY,
        ng_port=ng_port,
        port_min=media_ports.start,
        port_max=media_ports.stop - 1,
        log_path=log_path,
        **options,  # type: ignore[arg-type]
    )
    return engine, media_ports


async def started(log_path: Path | None, **options: object) -> tuple[ManagedRtpengine, range]:
    """Start a managed rtpengine, retrying with other ports if the ng port got taken."""
    last_error: RtpengineStartError | None = None
    for _ in range(5):
        engine, media_ports = managed(log_path, **options)
        try:
            await engine.start()
        except RtpengineStartError as exc:
            if "is not free" not in str(exc):
                raise
            last_error = exc
            continue
        return engine, media_ports
    assert last_error is not None
    raise last_error


@pytest.fixture
async def rtpengine(tmp_path: Path) -> AsyncIterator[tuple[ManagedRtpengine, range]]:
    engine, media_ports = await started(tmp_path / "rtpengine.log")
    try:
        yield engine, media_ports
    finally:
        await engine.stop()


@pytest.fixture(params=["negotiated", "bencode"])
async def ng_client(
    request: pytest.FixtureRequest,
    rtpengine: tuple[ManagedRtpengine, range],
) -> AsyncIterator[RtpengineClient]:
    """A client of the real rtpengine, twice: in the form it negotiates (JSON, which
    rtpengine 10.5 speaks) and in bencode, the form every rtpengine speaks."""
    engine, _ = rtpengine
    wire = None if request.param == "negotiated" else request.param
    async with RtpengineClient(engine.address, wire=wire) as client:
        if wire is None:
            assert await client.negotiate() == "json"
        yield client
