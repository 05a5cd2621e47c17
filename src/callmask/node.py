"""A running callmask node: its parts composed as siblings of one TaskGroup.

``running_node`` opens what the API and the call path share (the store, the outbound
HTTP sessions) and starts, as tasks of the caller's group, the webhook worker, the
session expiry sweep and (``with_calls``) the call path: the SIP endpoint and call
engine, the rtpengine supervisor, the cluster bus. ``run`` adds the API server and the
heap keeper to the same group, so a part that fails stops the node instead of leaving
it half up, and leaving the group stops the parts in reverse order: the API first,
then calls (BYE), then the worker, then the store. ``node_app`` is the same
composition run by the HTTP app's own lifespan, for tests and for an ASGI server that
owns the loop.

One process, one asyncio loop (uvloop where available), as DESIGN.md asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI

from callmask import heap
from callmask.api.app import create_app
from callmask.api.deps import Services
from callmask.config import Settings
from callmask.media.audio import AudioStore
from callmask.outbound import WEBHOOK_USER_AGENT, client_session
from callmask.sessions.lifetime import expire_forever
from callmask.store.database import Database
from callmask.webhooks.worker import DEFAULT_CONCURRENCY, DeliveryWorker

log = logging.getLogger(__name__)

# One audio download per upload by URL, while the upload request waits: aiohttp's own
# default cap is plenty.
AUDIO_DOWNLOAD_CONNECTIONS = 100


@contextlib.asynccontextmanager
async def running_node(
    settings: Settings,
    group: asyncio.TaskGroup,
    *,
    database: Database | None = None,
    with_calls: bool = False,
) -> AsyncIterator[Services]:
    """The node's services while the context is open, their tasks in ``group``.

    ``database``: an already open store (tests share one with their fixtures); it is
    then left open. ``with_calls``: also the call path (SIP, rtpengine, call engine);
    the API alone is what most tests need."""
    owned = database is None
    db = database or Database(settings.effective_database_url)
    allow_private = settings.webhook_allow_private
    try:
        async with (
            client_session(
                allow_private=allow_private, max_connections=AUDIO_DOWNLOAD_CONNECTIONS
            ) as http,
            # Webhooks get their own session, with a connection for each delivery the
            # worker may have in flight.
            client_session(
                allow_private=allow_private,
                max_connections=DEFAULT_CONCURRENCY,
                user_agent=WEBHOOK_USER_AGENT,
            ) as webhook_http,
        ):
            worker = DeliveryWorker(db, webhook_http, allow_private=allow_private)
            services = Services(
                settings=settings,
                database=db,
                http=http,
                audio_store=AudioStore(settings.files_dir),
                webhooks=worker,
            )
            worker_task = (
                group.create_task(worker.run(), name="webhook worker")
                if settings.webhook_worker
                else None
            )
            # Every node sweeps; each session is claimed by one (sessions.lifetime).
            expiry = group.create_task(
                expire_forever(db, on_events=worker.notify), name="session expiry"
            )
            try:
                if with_calls:
                    # Imported here: an API-only node never loads the SIP and media stack.
                    from callmask.calls.runtime import running_call_path

                    async with running_call_path(
                        settings, db, group, audio_dir=settings.files_dir, webhooks=worker
                    ) as calls:
                        services.calls = calls
                        yield services
                        services.calls = None
                else:
                    yield services
            finally:
                expiry.cancel()
                await asyncio.wait([expiry])
                if worker_task is not None:
                    # Stopped before the store closes: it stores its last results.
                    worker_task.cancel()
                    await asyncio.wait([worker_task])
    finally:
        if owned:
            await db.close()


def node_app(
    settings: Settings, *, database: Database | None = None, with_calls: bool = False
) -> FastAPI:
    """The HTTP app with a lifespan that runs ``running_node`` in its own TaskGroup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            asyncio.TaskGroup() as group,
            running_node(settings, group, database=database, with_calls=with_calls) as services,
        ):
            app.state.services = services
            yield

    return create_app(settings, lifespan=lifespan)


class _ApiServer(uvicorn.Server):
    """uvicorn's server without its own signal handling. uvicorn restores the previous
    handlers when it has stopped and raises the signal again, which (SIGTERM) would end
    the process before the rest of the node has closed its calls; ``run`` handles the
    signals instead and lets the node stop in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every OS
        log.info("uvloop not available, using the default asyncio loop")
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def run(settings: Settings) -> None:
    """``callmask run``: every part of the node, until SIGINT/SIGTERM (which uvicorn
    catches: the API stops taking requests, then the parts stop in reverse order)."""
    async with (
        asyncio.TaskGroup() as group,
        running_node(settings, group, with_calls=True) as services,
    ):
        app = create_app(settings)
        app.state.services = services
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_level=settings.log_level.lower(),
            loop="none",
            lifespan="off",
        )
        server = _ApiServer(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # A second SIGINT forces uvicorn to drop open connections, as it does itself.
            loop.add_signal_handler(signum, server.handle_exit, signum, None)
        api = group.create_task(server.serve(), name="api server")
        # Everything is up: settle the heap before the first call, then keep it.
        heap.settle()
        keeper = group.create_task(heap.keep(), name="heap keeper")
        try:
            await api
        finally:
            keeper.cancel()


def serve(settings: Settings) -> None:
    _install_uvloop()
    asyncio.run(run(settings))
