"""A running callmask node: the API server and, on the same event loop, every
background component (webhook worker, SIP, rtpengine) that later parts plug in.

One process, one asyncio loop (uvloop where available), as DESIGN.md asks.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from callmask.api.app import create_app
from callmask.config import Settings

log = logging.getLogger(__name__)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every OS
        log.info("uvloop not available, using the default asyncio loop")
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve(settings: Settings) -> None:
    _install_uvloop()
    config = uvicorn.Config(
        create_app(settings, with_calls=True, own_heap=True),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        loop="none",
        lifespan="on",
    )
    asyncio.run(uvicorn.Server(config).serve())
