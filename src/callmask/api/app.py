"""The FastAPI application: routers of both dialects, the operator API, error shapes,
body limits, and a lifespan that owns the node's shared services.

``create_app`` takes settings (and optionally an already opened ``Database``) so tests
and ``callmask run`` build the same app; nothing is created at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from callmask.api import health, metrics, webhooks
from callmask.api.admin import routes as admin
from callmask.api.deps import Services
from callmask.api.errors import install_error_handlers
from callmask.api.infobip import actions, files, numbers
from callmask.api.limits import BodySizeLimit
from callmask.api.request_target import NulFreeTarget
from callmask.api.tata.routes import routers as tata_routers
from callmask.config import Settings
from callmask.media.audio import AudioStore
from callmask.store.database import Database
from callmask.webhooks.transport import delivery_client
from callmask.webhooks.worker import DEFAULT_CONCURRENCY, DeliveryWorker


def create_app(
    settings: Settings, *, database: Database | None = None, with_calls: bool = False
) -> FastAPI:
    """``with_calls`` also starts the call path (SIP, rtpengine, call engine); the API
    alone is what most tests need."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = database is None
        db = database or Database(settings.effective_database_url)
        async with (
            httpx.AsyncClient(headers={"user-agent": "callmask"}) as http,
            # Webhooks get their own client: its small per-lane pools keep the cost of
            # 50 concurrent deliveries down (see webhooks/transport.py).
            delivery_client(DEFAULT_CONCURRENCY) as webhook_http,
            asyncio.TaskGroup() as group,
        ):
            worker = DeliveryWorker(db, webhook_http, allow_private=settings.webhook_allow_private)
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
        *tata_routers,
    ):
        app.include_router(router)
    return app
