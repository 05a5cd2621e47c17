"""Node-to-node requests over PostgreSQL ``LISTEN``/``NOTIFY``.

Each node listens on one channel named after its node id. A request is a notification
on the owner's channel carrying a correlation id and the asker's channel; the owner
answers on the asker's channel with the same id. PostgreSQL caps a payload at 8000
bytes, so an answer is sent in numbered parts that one session delivers in order.
Notifications are not stored: a node that is not listening when one is sent never sees
it, which is why every ``ask`` has a bounded wait and the asker checks the owner's
heartbeat before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# 8000 bytes is PostgreSQL's payload limit; the envelope around a part takes < 200.
PART_CHARS = 7000
RECONNECT_DELAY_S = 1.0

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class NodeUnreachable(Exception):
    """The node asked did not answer within the wait."""


def channel_of(node_id: str) -> str:
    # A channel is an identifier (63 bytes at most); node ids are free text.
    return "callmask_node_" + hashlib.sha256(node_id.encode()).hexdigest()[:32]


def asyncpg_dsn(database_url: str) -> str:
    """``postgresql+asyncpg://...`` (SQLAlchemy's form) as asyncpg takes it."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class NodeBus:
    def __init__(self, database_url: str, node_id: str, handler: Handler) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.node_id = node_id
        self.channel = channel_of(node_id)
        self.handler = handler
        self._connection: asyncpg.Connection | None = None
        self._send_turn = asyncio.Lock()  # one asyncpg connection runs one query at a time
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._parts: dict[str, list[str]] = {}
        self._requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def open(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        await connection.add_listener(self.channel, self._on_notification)
        self._connection = connection

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(NodeUnreachable("this node is leaving the cluster"))

    async def run(self) -> None:
        """Answer requests, each in its own task; reconnect if the connection drops."""
        async with asyncio.TaskGroup() as tasks:
            while True:
                try:
                    request = await asyncio.wait_for(self._requests.get(), RECONNECT_DELAY_S)
                except TimeoutError:
                    await self._keep_connected()
                    continue
                tasks.create_task(self._answer(request))

    async def ask(self, node_id: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send ``body`` to ``node_id`` and wait for its answer."""
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            envelope = {"k": "q", "id": request_id, "to": self.channel, "body": body}
            await self._notify(channel_of(node_id), json.dumps(envelope))
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise NodeUnreachable(f"node {node_id} did not answer within {timeout_s:g} s") from None
        finally:
            self._waiting.pop(request_id, None)
            self._parts.pop(request_id, None)

    # -- inside -------------------------------------------------------------------

    async def _keep_connected(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            return
        log.warning("cluster bus connection lost; reconnecting")
        try:
            await self.open()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cluster bus reconnect failed: %s", exc)

    async def _notify(self, channel: str, payload: str) -> None:
        connection = self._connection
        if connection is None or connection.is_closed():
            raise NodeUnreachable("the cluster bus is not connected")
        async with self._send_turn:
            await connection.execute("SELECT pg_notify($1, $2)", channel, payload)

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            kind = message["k"]
        except (ValueError, KeyError, TypeError):
            log.warning("cluster bus: unreadable notification dropped")
            return
        if kind == "q":
            self._requests.put_nowait(message)
        elif kind == "r":
            self._on_part(message)

    def _on_part(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        future = self._waiting.get(request_id) if isinstance(request_id, str) else None
        if future is None or future.done():
            return  # an answer after the wait ended
        assert isinstance(request_id, str)
        parts = self._parts.setdefault(request_id, [])
        parts.append(str(message.get("data", "")))
        if len(parts) < int(message.get("of", 1)):
            return
        try:
            future.set_result(json.loads("".join(parts)))
        except ValueError:
            future.set_exception(NodeUnreachable("the answer arrived garbled"))

    async def _answer(self, request: dict[str, Any]) -> None:
        body = request.get("body")
        try:
            answer = await self.handler(body if isinstance(body, dict) else {})
        except Exception as exc:
            log.exception("cluster request %s failed", body)
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        text = json.dumps(answer, separators=(",", ":"), default=str)
        pieces = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
        try:
            for piece in pieces:
                part = {"k": "r", "id": request.get("id"), "of": len(pieces), "data": piece}
                await self._notify(str(request.get("to")), json.dumps(part))
        except (NodeUnreachable, OSError, asyncpg.PostgresError) as exc:
            log.warning("cluster bus: could not answer %s: %s", request.get("id"), exc)
