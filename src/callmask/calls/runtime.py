"""Starting and stopping the call path as part of the node (``callmask.node``): the
media anchor (a managed rtpengine child, or an external one at ``host:port``), its ng
client, and the call engine with its SIP endpoint. Every long-running task goes into
the node's TaskGroup; leaving the context ends calls cleanly (BYE), then stops SIP and
rtpengine, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from callmask.api.plivo.auth import auth_id_of
from callmask.api.plivo.recordings import callback_payload
from callmask.calls.engine import CallEngine, Notifier
from callmask.cluster.calls import ClusterCalls, joined
from callmask.config import Settings
from callmask.media.dtmf import DtmfListener
from callmask.media.rtpengine import RtpengineClient, RtpengineUnavailable, packet_counts
from callmask.media.rtpengine_process import ManagedRtpengine
from callmask.outbound import client_session
from callmask.recordings.worker import RecordingWorker
from callmask.routing.reports import payload_for
from callmask.store.database import Database
from callmask.store.models import Recording

log = logging.getLogger(__name__)

ENGINE_START_TIMEOUT_S = 15.0
# No cap on routing connections: a call in set-up waits for one callback at a time, so
# they are never more than the calls being set up, and a cap would let one customer's
# slow callback server hold the connections that other customers' calls wait for.
ROUTING_CONNECTIONS = 0


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


def spool_dir(settings: Settings) -> Path:
    """rtpengine's recording directory, made if missing (rtpengine makes its ``pcaps``
    and ``metadata`` subdirectories itself, but not the directory)."""
    spool = settings.effective_recording_spool.resolve()
    spool.mkdir(parents=True, exist_ok=True)
    return spool


def recording_worker(
    settings: Settings, database: Database, webhooks: Notifier | None
) -> RecordingWorker:
    """Mixes this node's recordings once their calls end; the callback is Plivo's."""

    def payload_of(row: Recording) -> dict[str, Any]:
        auth_id = auth_id_of(row.account_id) or row.account_id
        return callback_payload(settings, auth_id, row)

    return RecordingWorker(
        database,
        node_id=settings.effective_node_id,
        spool=spool_dir(settings),
        recordings_dir=settings.recordings_dir,
        payload_of=payload_of,
        on_events=webhooks.notify if webhooks is not None else None,
    )


def dtmf_address(settings: Settings) -> tuple[str, int]:
    """Where to take DTMF reports: CALLMASK_DTMF_LISTEN, else a free loopback port (the
    managed rtpengine is told it; an external one is not, see the warning)."""
    if settings.dtmf_listen is None:
        return ("127.0.0.1", 0)
    host, _, port = settings.dtmf_listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"CALLMASK_DTMF_LISTEN must be host:port, not {settings.dtmf_listen!r}")
    return host.strip("[]"), int(port)


@contextlib.asynccontextmanager
async def running_call_path(
    settings: Settings,
    database: Database,
    group: asyncio.TaskGroup,
    *,
    audio_dir: Path,
    webhooks: Notifier | None,
) -> AsyncIterator[ClusterCalls]:
    # rtpengine 10.5 sends its DTMF reports to one address for all its calls (its
    # --dtmf-log-dest; the per-call flag of later versions is unknown to it).
    dtmf = await DtmfListener.open(*dtmf_address(settings))
    try:
        async with _call_path(
            settings, database, group, dtmf, audio_dir=audio_dir, webhooks=webhooks
        ) as calls:
            yield calls
    finally:
        dtmf.close()


@contextlib.asynccontextmanager
async def _call_path(
    settings: Settings,
    database: Database,
    group: asyncio.TaskGroup,
    dtmf: DtmfListener,
    *,
    audio_dir: Path,
    webhooks: Notifier | None,
) -> AsyncIterator[ClusterCalls]:
    managed: ManagedRtpengine | None = None
    address = rtpengine_address(settings)
    if address is not None and settings.dtmf_listen is None:
        log.warning(
            "CALLMASK_DTMF_LISTEN is not set: digits callers press as RFC 4733 events "
            "reach no call unless the external rtpengine's --dtmf-log-dest points at it"
        )
    if address is None:
        managed = ManagedRtpengine(
            interface=settings.sip_host,
            ng_port=settings.rtpengine_ng_port,
            port_min=settings.rtpengine_port_min,
            port_max=settings.rtpengine_port_max,
            log_path=settings.data_dir / "rtpengine.log",
            pid_path=settings.data_dir / "rtpengine.pid",
            extra_args=[
                f"--dtmf-log-dest={dtmf.address}",
                # pcap, not rtpengine's own "proc" method: that needs its kernel module
                # and the separate recording daemon; pcap is written by the daemon
                # itself, one file per call, and only for calls told to record.
                "--recording-method=pcap",
                f"--recording-dir={spool_dir(settings)}",
            ],
        )
        await managed.start()
        group.create_task(managed.supervise(), name="rtpengine supervisor")
        address = managed.address
    dtmf.allowed_hosts = frozenset({address[0]})
    client = RtpengineClient(address)
    await client.open()
    try:
        wire = await client.negotiate()
    except RtpengineUnavailable as exc:
        # An external rtpengine may come up later; until then calls get 503.
        log.warning("rtpengine at %s:%d does not answer yet: %s", *address, exc)
    else:
        log.info("rtpengine at %s:%d: ng protocol in %s", *address, wire)
    async with client_session(
        allow_private=settings.webhook_allow_private, max_connections=ROUTING_CONNECTIONS
    ) as routing_http:
        engine = CallEngine(
            settings,
            database,
            routing_http,
            client,
            audio_dir=audio_dir,
            webhooks=webhooks,
            media_counts=packet_counts,
        )
        dtmf.on_report = engine.dtmf_reported
        engine.rtpengine_process = managed
        if managed is not None:
            managed.on_exit = engine.media_lost
        serving = group.create_task(engine.serve(), name="call engine")
        recordings = group.create_task(
            recording_worker(settings, database, webhooks).run(), name="recording worker"
        )
        # Ready, or ended before it was (then its result raises why: SIP port in use...).
        serving.add_done_callback(lambda _: engine.ready.set())
        try:
            async with asyncio.timeout(ENGINE_START_TIMEOUT_S):
                await engine.ready.wait()
            if serving.done():
                serving.result()
            # The engine as the API sees it: on PostgreSQL, one node of several.
            async with joined(
                engine,
                database,
                engine.node_id,
                group,
                payload_for,
                webhooks.notify if webhooks is not None else None,
            ) as calls:
                yield calls
        finally:
            engine.stop()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await serving
            recordings.cancel()
            await asyncio.wait([recordings])
            await client.close()
            if managed is not None:
                await managed.stop()
