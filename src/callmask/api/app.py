"""The FastAPI application: routers of both dialects, the operator API, error shapes,
body limits, and a lifespan that owns the node's shared services.

``create_app`` takes settings (and optionally an already opened ``Database``) so tests
and ``callmask run`` build the same app; nothing is created at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from callmask import heap
from callmask.api import health, metrics, webhooks
from callmask.api.admin import routes as admin
from callmask.api.deps import Services
from callmask.api.errors import install_error_handlers
from callmask.api.infobip import actions, files, numbers
from callmask.api.limits import BodySizeLimit
from callmask.api.request_target import NulFreeTarget
from callmask.api.tata.routes import routers as tata_routers
from callmask.config import Settings
from callmask.console.routes import router as console_router
from callmask.media.audio import AudioStore
from callmask.outbound import WEBHOOK_USER_AGENT, client_session
from callmask.store.database import Database
from callmask.webhooks.worker import DEFAULT_CONCURRENCY, DeliveryWorker

# One audio download per upload by URL, while the upload request waits: aiohttp's own
# default cap is plenty.
AUDIO_DOWNLOAD_CONNECTIONS = 100


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    with_calls: bool = False,
    own_heap: bool = False,
) -> FastAPI:
    """``with_calls`` also starts the call path (SIP, rtpengine, call engine); the API
    alone is what most tests need. ``own_heap``: the app is the process (``callmask
    run``), so it settles and keeps the garbage collector (``callmask.heap``) once its
    services are up, before SIP takes calls; never inside a test process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = database is None
        db = database or Database(settings.effective_database_url)
        allow_private = settings.webhook_allow_private
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
            asyncio.TaskGroup() as group,
        ):
            worker = DeliveryWorker(db, webhook_http, allow_private=allow_private)
            services = Services(
                settings=settings,
                database=db,
                http=http,
                audio_store=AudioStore(settings.files_dir),
                webhooks=worker,
            )
            app.state.services = services
            worker_task = (
                group.create_task(worker.run(), name="webhook worker")
                if settings.webhook_worker
                else None
            )
            heap_keeper = None
            if own_heap:
                heap.settle()
                heap_keeper = group.create_task(heap.keep(), name="heap keeper")
            try:
                if with_calls:
                    # Imported here: an API-only app never loads the SIP and media stack.
                    from callmask.calls.runtime import running_call_path

                    async with running_call_path(
                        settings, db, group, audio_dir=settings.files_dir, webhooks=worker
                    ) as engine:
                        services.calls = engine
                        yield
                        services.calls = None
                else:
                    yield
            finally:
                if heap_keeper is not None:
                    heap_keeper.cancel()
                if worker_task is not None:
                    # Stopped before the store closes: it stores its last results.
                    worker_task.cancel()
                    await asyncio.wait([worker_task])
                if owned:
                    await db.close()

    app = FastAPI(
        title="callmask",
        summary="Self-hosted number masking: Infobip- and Tata-compatible APIs",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(NulFreeTarget)
    for router in (
        health.router,
        numbers.router,
        actions.router,
        files.router,
        admin.router,
        webhooks.router,
        metrics.router,
        console_router,
        *tata_routers,
    ):
        app.include_router(router)
    return app
