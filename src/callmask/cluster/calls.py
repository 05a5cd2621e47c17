"""Live-call operations that work from any node (``CallControl`` over the cluster).

``ClusterCalls`` wraps this node's call engine. An operation on a call asks the local
engine first; if the call is not here, it finds the owner in ``open_calls`` (the row a
call writes through the ledger as soon as it is routed) and asks that node over the
bus (bus.py). A call so new that its row is not written yet, or one that never gets a
row, is looked for by asking every live node. The owner being gone (stale heartbeat)
or not answering in time is ``OwnerUnreachable``, which the API reports as 503; a call
nobody carries is "not live" (``False``/``None``), as on one node.

On SQLite (one node) there is no bus and this is the local engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import select

from callmask.calls.control import Announcement, CallControl, ClickToCall, LiveCall
from callmask.cluster import takeover
from callmask.cluster.bus import NodeBus, NodeUnreachable
from callmask.errors import CallmaskError
from callmask.store.database import Database
from callmask.store.models import OpenCall

log = logging.getLogger(__name__)

# Bounded waits for an answer from another node. Listing and hanging up are a lookup
# in memory there; a transfer waits for the new leg to be placed and answered.
ASK_TIMEOUT_S = 3.0
TRANSFER_TIMEOUT_S = 90.0


class OwnerUnreachable(CallmaskError):
    """The node that carries the call is gone or did not answer (503)."""


def _live_call_json(call: LiveCall) -> dict[str, Any]:
    values = dataclasses.asdict(call)
    values["started_at"] = call.started_at.isoformat()
    values["answered_at"] = call.answered_at.isoformat() if call.answered_at else None
    return values


def _live_call(values: dict[str, Any]) -> LiveCall:
    answered = values.get("answered_at")
    return LiveCall(
        **{
            **values,
            "started_at": dt.datetime.fromisoformat(values["started_at"]),
            "answered_at": dt.datetime.fromisoformat(answered) if answered else None,
        }
    )


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ClusterCalls:
    """``CallControl`` for the API: this node's engine, plus the other nodes'."""

    def __init__(
        self,
        local: CallControl,
        *,
        database: Database | None = None,
        node_id: str = "",
        bus: NodeBus | None = None,
    ) -> None:
        self.local = local
        self.database = database
        self.node_id = node_id
        self.bus = bus

    # -- CallControl: what the local engine does, unchanged ------------------------

    def live_calls(self, account_id: str) -> list[LiveCall]:
        return self.local.live_calls(account_id)

    def hangup(self, account_id: str, call_id: str) -> bool:
        return self.local.hangup(account_id, call_id)

    async def click_to_call(self, request: ClickToCall, *, wait_for_agent: bool) -> str | None:
        return await self.local.click_to_call(request, wait_for_agent=wait_for_agent)

    async def announce(self, request: Announcement) -> str:
        return await self.local.announce(request)

    async def transfer(self, account_id: str, call_id: str, number: str) -> bool:
        if await self._is_local(account_id, call_id):
            return await self.local.transfer(account_id, call_id, number)
        body = {"op": "transfer", "account_id": account_id, "call_id": call_id, "number": number}
        answer = await self._ask_owner(call_id, body, TRANSFER_TIMEOUT_S)
        return bool(answer and answer.get("ok"))

    # -- across the cluster -------------------------------------------------------

    async def all_live_calls(self, account_id: str) -> list[LiveCall]:
        """The account's live calls on every live node."""
        calls = self.local.live_calls(account_id)
        if self.bus is None:
            return calls
        body = {"op": "live_calls", "account_id": account_id}
        for answer in await self._ask_everyone(body, ASK_TIMEOUT_S):
            calls.extend(_live_call(values) for values in answer.get("calls", []))
        return calls

    async def find_live_call(self, account_id: str, call_id: str) -> LiveCall | None:
        local = next((c for c in self.local.live_calls(account_id) if c.call_id == call_id), None)
        if local is not None or self.bus is None:
            return local
        answer = await self._ask_owner(
            call_id, {"op": "find", "account_id": account_id, "call_id": call_id}, ASK_TIMEOUT_S
        )
        found = answer.get("call") if answer else None
        return _live_call(found) if isinstance(found, dict) else None

    async def hangup_anywhere(self, account_id: str, call_id: str) -> bool:
        if self.local.hangup(account_id, call_id):
            return True
        if self.bus is None:
            return False
        body = {"op": "hangup", "account_id": account_id, "call_id": call_id}
        answer = await self._ask_owner(call_id, body, ASK_TIMEOUT_S)
        return bool(answer and answer.get("ok"))

    async def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """What this node says when another node asks (the bus handler)."""
        account_id = str(body.get("account_id", ""))
        call_id = str(body.get("call_id", ""))
        match body.get("op"):
            case "live_calls":
                return {"calls": [_live_call_json(c) for c in self.local.live_calls(account_id)]}
            case "find":
                calls = self.local.live_calls(account_id)
                found = next((c for c in calls if c.call_id == call_id), None)
                return {"call": _live_call_json(found) if found else None}
            case "hangup":
                return {"ok": self.local.hangup(account_id, call_id)}
            case "transfer":
                if not await self._is_local(account_id, call_id):
                    return {"ok": False}
                number = str(body.get("number", ""))
                return {"ok": await self.local.transfer(account_id, call_id, number)}
            case other:
                return {"error": f"unknown operation {other!r}"}

    # -- inside -------------------------------------------------------------------

    async def _is_local(self, account_id: str, call_id: str) -> bool:
        return any(c.call_id == call_id for c in self.local.live_calls(account_id))

    async def _owner_of(self, call_id: str) -> str | None:
        assert self.database is not None
        # The snapshot is compact JSON written by recovery.snapshot; open_calls holds only
        # the calls up now, so this scan is over a small table.
        pattern = f'%"public_call_id":"{_like_literal(call_id)}"%'
        async with self.database.session() as session:
            owners = await session.scalars(
                select(OpenCall.node_id).where(OpenCall.snapshot.like(pattern, escape="\\"))
            )
            return owners.first()

    async def _ask_owner(
        self, call_id: str, body: dict[str, Any], timeout_s: float
    ) -> dict[str, Any] | None:
        assert self.bus is not None and self.database is not None
        owner = await self._owner_of(call_id)
        if owner is None:
            # Not written yet (routed a moment ago) or never opened: whoever has it says so.
            for answer in await self._ask_everyone(body, timeout_s):
                if answer.get("ok") or answer.get("call"):
                    return answer
            return None
        if owner == self.node_id:
            return None  # ours by the store, but ended here a moment ago
        if not await takeover.is_alive(self.database, owner):
            raise OwnerUnreachable(
                f"call {call_id} is on node {owner}, which stopped sending heartbeats; "
                "its calls are closed by the other nodes"
            )
        try:
            return self._checked(await self.bus.ask(owner, body, timeout_s), owner)
        except NodeUnreachable as exc:
            raise OwnerUnreachable(f"call {call_id} is on node {owner}: {exc}") from exc

    async def _ask_everyone(self, body: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        assert self.bus is not None and self.database is not None
        others = sorted(await takeover.fresh_nodes(self.database) - {self.node_id})
        answers = await asyncio.gather(
            *(self.bus.ask(node, body, timeout_s) for node in others), return_exceptions=True
        )
        results = []
        for node, answer in zip(others, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, NodeUnreachable):
                    raise answer
                raise OwnerUnreachable(str(answer)) from answer
            results.append(self._checked(answer, node))
        return results

    @staticmethod
    def _checked(answer: dict[str, Any], node: str) -> dict[str, Any]:
        if "error" in answer:
            raise OwnerUnreachable(f"node {node} could not do it: {answer['error']}")
        return answer


def as_cluster(control: CallControl) -> ClusterCalls:
    """The API's view: a ``ClusterCalls`` as is, anything else as a one-node cluster."""
    return control if isinstance(control, ClusterCalls) else ClusterCalls(control)


@contextlib.asynccontextmanager
async def joined(
    local: CallControl,
    database: Database,
    node_id: str,
    group: asyncio.TaskGroup,
    payload_for: takeover.PayloadFor,
    on_reports: Callable[[], None] | None = None,
) -> AsyncIterator[ClusterCalls]:
    """This node in the cluster while the context is open: answering other nodes, and
    closing the calls of dead ones. On SQLite, just the local engine."""
    if database.is_sqlite:
        yield ClusterCalls(local)
        return
    calls = ClusterCalls(local, database=database, node_id=node_id)
    bus = NodeBus(database.url, node_id, calls.answer)
    await bus.open()
    calls.bus = bus
    tasks = [
        group.create_task(bus.run(), name="cluster bus"),
        group.create_task(
            _take_over_forever(database, node_id, payload_for, on_reports), name="takeover"
        ),
    ]
    try:
        yield calls
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        await bus.close()


async def _take_over_forever(
    database: Database,
    node_id: str,
    payload_for: takeover.PayloadFor,
    on_reports: Callable[[], None] | None,
) -> None:
    while True:
        await asyncio.sleep(takeover.SCAN_INTERVAL_S)
        try:
            closed = await takeover.take_over_dead_nodes(database, node_id, payload_for)
            if closed and on_reports is not None:
                on_reports()  # their reports are in the outbox: deliver them now
        except Exception:
            log.exception("closing the calls of dead nodes failed; trying again")
