"""A customer's web server for tests: a real HTTP server on 127.0.0.1 that records
every request and answers from a script (status, body, delay, headers).

Tests use it as the callback URL, the status URL, the webhook endpoint and the place
audio files are downloaded from, so callmask's HTTP client is exercised over a real
socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.sipp import free_udp_port


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: dict[str, list[Reply]] = {}
        self.default: dict[str, Reply | Callable[[Recorded], Reply]] = {}
        self.port = 0
        self.arrived = asyncio.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies`` in order."""
        self.script.setdefault(path, []).extend(replies)

    def always(self, path: str, reply: Reply | Callable[[Recorded], Reply]) -> None:
        self.default[path] = reply

    def on(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout_s: float = 10.0) -> list[Recorded]:
        async with asyncio.timeout(timeout_s):
            while len(self.on(path)) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.on(path)

    async def _handle(self, request: Request) -> Response:
        recorded = Recorded(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            received_at=asyncio.get_running_loop().time(),
        )
        self.requests.append(recorded)
        self.arrived.set()
        queued = self.script.get(recorded.path)
        if queued:
            reply = queued.pop(0)
        else:
            fallback = self.default.get(recorded.path, Reply())
            reply = fallback(recorded) if callable(fallback) else fallback
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        body = reply.body
        headers = dict(reply.headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("content-type", "application/json")
        return Response(body, reply.status, headers=headers)


def free_port() -> int:
    """A loopback port nobody else in this test process was given (see free_udp_port)."""
    return free_udp_port()


@contextlib.asynccontextmanager
async def serve_app(app: Any, port: int) -> AsyncIterator[uvicorn.Server]:
    """Run an ASGI app under uvicorn on 127.0.0.1:port inside the current loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


@contextlib.asynccontextmanager
async def running_receiver(port: int | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(
        routes=[Route("/{path:path}", receiver._handle, methods=["GET", "POST", "PUT"])]
    )
    receiver.port = port or free_port()
    async with serve_app(app, receiver.port):
        yield receiver
