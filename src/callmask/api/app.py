"""The FastAPI application: routers of every dialect, the operator API, error shapes,
body limits. Only the HTTP app: the services its routes use are composed and run by
``callmask.node``; nothing is created at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from callmask.api import health, metrics, webhooks
from callmask.api.admin import routes as admin
from callmask.api.errors import install_error_handlers
from callmask.api.idempotency import IdempotencyKeys
from callmask.api.infobip import actions, files, numbers
from callmask.api.limits import BodySizeLimit
from callmask.api.plivo import router as plivo_router
from callmask.api.request_target import NulFreeTarget
from callmask.api.tata.routes import routers as tata_routers
from callmask.api.twilio import router as twilio_router
from callmask.config import Settings
from callmask.console.routes import router as console_router

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(settings: Settings, *, lifespan: Lifespan | None = None) -> FastAPI:
    """The HTTP app: routers, error shapes, middleware. It starts nothing; the node
    (``callmask.node``) puts its running services in ``app.state.services``, before
    serving or from ``lifespan``."""
    app = FastAPI(
        title="callmask",
        summary="Self-hosted number masking: Infobip- and Tata-compatible APIs",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Inside BodySizeLimit: the body it reads to hash is already capped.
    app.add_middleware(IdempotencyKeys)
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
        twilio_router,
        plivo_router,
    ):
        app.include_router(router)
    return app
