"""Starting and stopping the call path inside the app's lifespan: the media anchor
(a managed rtpengine child, or an external one at ``host:port``), its ng client, and
the call engine with its SIP endpoint. Every long-running task goes into the
lifespan's TaskGroup; leaving the context ends calls cleanly (BYE), then stops SIP
and rtpengine, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from callmask import heap
from callmask.calls.engine import CallEngine, Notifier
from callmask.config import Settings
from callmask.media.rtpengine import RtpengineClient, packet_counts
from callmask.media.rtpengine_process import ManagedRtpengine
from callmask.store.database import Database
from callmask.webhooks.transport import delivery_client

log = logging.getLogger(__name__)

ENGINE_START_TIMEOUT_S = 15.0
ROUTING_LANES = 16


def rtpengine_address(settings: Settings) -> tuple[str, int] | None:
    """``None`` for a managed rtpengine, else the ``host:port`` of an external one."""
    if settings.rtpengine == "managed":
        return None
    host, sep, port = settings.rtpengine.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"CALLMASK_RTPENGINE must be 'managed' or host:port, not {settings.rtpengine!r}"
        )
    return host.strip("[]"), int(port)


@contextlib.asynccontextmanager
async def running_call_path(
    settings: Settings,
    database: Database,
    group: asyncio.TaskGroup,
    *,
    audio_dir: Path,
    webhooks: Notifier | None,
) -> AsyncIterator[CallEngine]:
    managed: ManagedRtpengine | None = None
    address = rtpengine_address(settings)
    if address is None:
        managed = ManagedRtpengine(
            interface=settings.sip_host,
            ng_port=settings.rtpengine_ng_port,
            port_min=settings.rtpengine_port_min,
            port_max=settings.rtpengine_port_max,
            log_path=settings.data_dir / "rtpengine.log",
            pid_path=settings.data_dir / "rtpengine.pid",
        )
        await managed.start()
        group.create_task(managed.supervise(), name="rtpengine supervisor")
        address = managed.address
    client = RtpengineClient(address)
    await client.open()
    # Its own lane client: routing callbacks are the call path's largest CPU cost, and a
    # single httpx pool's cost per request grows with the requests in flight.
    routing_http = delivery_client(ROUTING_LANES, user_agent="callmask")
    engine = CallEngine(
        settings,
        database,
        routing_http,
        client,
        audio_dir=audio_dir,
        webhooks=webhooks,
        media_counts=packet_counts,
    )
    engine.rtpengine_process = managed
    if managed is not None:
        managed.on_exit = engine.media_lost
    serving = group.create_task(engine.serve(), name="call engine")
    try:
        async with asyncio.timeout(ENGINE_START_TIMEOUT_S):
            ready = asyncio.ensure_future(engine.ready.wait())
            await asyncio.wait({ready, serving}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                ready.cancel()
                serving.result()  # raises why SIP could not start (e.g. port in use)
        heap.settle()
        yield engine
    finally:
        engine.stop()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await serving
        await client.close()
        await routing_http.aclose()
        if managed is not None:
            await managed.stop()
