"""Node-to-node requests over PostgreSQL ``LISTEN``/``NOTIFY``.

Each node listens on one channel named after its node id. A request is a notification
on the owner's channel carrying a correlation id and the asker's channel; the owner
answers on the asker's channel with the same id. A notification's payload must be
shorter than 8000 bytes (PostgreSQL's ``NOTIFY``), so an answer is sent in numbered
parts, reassembled by number. Notifications are not stored: a node that is not
listening when one is sent never sees it, which is why every ``ask`` has a bounded
wait and the asker checks the owner's heartbeat before and after.
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

# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more (its NOTIFY page).
MAX_PAYLOAD_BYTES = 7999
# An answer is compact ASCII JSON (``ensure_ascii``). A part carries a slice of it as a
# JSON string, where each ``"`` or ``\`` of the slice becomes two characters: a slice
# of 3900 characters is at most 7800 in the part, leaving room for the envelope.
PART_CHARS = 3900
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


def answer_parts(request_id: str, answer: dict[str, Any]) -> list[str]:
    """The notifications that carry ``answer``, each under the payload limit."""
    text = json.dumps(answer, separators=(",", ":"), default=str)
    pieces = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
    return [
        json.dumps({"k": "r", "id": request_id, "n": number, "of": len(pieces), "data": piece})
        for number, piece in enumerate(pieces)
    ]


class NodeBus:
    def __init__(self, database_url: str, node_id: str, handler: Handler) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.node_id = node_id
        self.channel = channel_of(node_id)
        self.handler = handler
        self._connection: asyncpg.Connection | None = None
        self._send_turn = asyncio.Lock()  # one asyncpg connection runs one query at a time
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._parts: dict[str, dict[int, str]] = {}
        self._requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

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
        """Answer requests, each in its own task; reconnect when the connection drops
        (a request sent meanwhile is lost, and its asker's wait ends it)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._stay_connected(), name="cluster bus connection")
            while True:
                request = await self._requests.get()
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

    async def _stay_connected(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_DELAY_S)
            if self.connected:
                continue
            log.warning("cluster bus connection lost; reconnecting")
            try:
                await self.open()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("cluster bus reconnect failed: %s", exc)
            else:
                log.info("cluster bus connected again")

    async def _notify(self, channel: str, payload: str) -> None:
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            # Requests are small (ids and a number) and answers are split: a bug.
            raise ValueError(f"cluster bus payload of {len(payload.encode())} bytes")
        connection = self._connection
        if connection is None or connection.is_closed():
            raise NodeUnreachable("the cluster bus is not connected")
        try:
            async with self._send_turn:
                await connection.execute("SELECT pg_notify($1, $2)", channel, payload)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise NodeUnreachable(f"the cluster bus lost its connection: {exc}") from exc

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
        try:
            number, count, data = int(message["n"]), int(message["of"]), str(message["data"])
        except (KeyError, TypeError, ValueError):
            future.set_exception(NodeUnreachable("the answer arrived garbled"))
            return
        parts = self._parts.setdefault(request_id, {})
        parts[number] = data
        if len(parts) < count:
            return
        try:
            future.set_result(json.loads("".join(parts[i] for i in range(count))))
        except (KeyError, ValueError):
            future.set_exception(NodeUnreachable("the answer arrived garbled"))

    async def _answer(self, request: dict[str, Any]) -> None:
        body = request.get("body")
        try:
            answer = await self.handler(body if isinstance(body, dict) else {})
        except Exception as exc:
            log.exception("cluster request %s failed", body)
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            for part in answer_parts(str(request.get("id")), answer):
                await self._notify(str(request.get("to")), part)
        except (NodeUnreachable, asyncpg.PostgresError) as exc:
            log.warning("cluster bus: could not answer %s: %s", request.get("id"), exc)
