"""Two nodes' buses talking through a real PostgreSQL: a request and its answer, an
answer far over NOTIFY's 8000-byte payload limit, a node that is not there, a handler
that fails, and a bus whose connection the server cut."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from callmask.cluster.bus import MAX_PAYLOAD_BYTES, NodeBus, NodeUnreachable, answer_parts

pytestmark = pytest.mark.postgres


@contextlib.asynccontextmanager
async def running_bus(url: str, node_id: str, handler: Any) -> AsyncIterator[NodeBus]:
    bus = NodeBus(url, node_id, handler)
    await bus.open()
    task = asyncio.create_task(bus.run())
    try:
        yield bus
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await bus.close()


async def echo(body: dict[str, Any]) -> dict[str, Any]:
    return {"echo": body}


async def test_a_node_asks_another_and_gets_its_answer(pg_url: str) -> None:
    async with (
        running_bus(pg_url, "node-a", echo) as a,
        running_bus(pg_url, "node-b", echo) as b,
    ):
        assert await a.ask("node-b", {"op": "find", "call_id": "abc"}, 5) == {
            "echo": {"op": "find", "call_id": "abc"}
        }
        # And back, with several questions in flight at once.
        answers = await asyncio.gather(*(b.ask("node-a", {"n": n}, 5) for n in range(20)))
        assert answers == [{"echo": {"n": n}} for n in range(20)]


async def test_an_answer_far_over_the_payload_limit_arrives_whole(pg_url: str) -> None:
    # Quotes and backslashes double when a part carries them as a JSON string; non-ASCII
    # text becomes \u escapes. 300 calls' worth of that is about 60 KB of answer.
    calls = [
        {"call_id": f"call-{n}", "caller": '"quoted" \\ back\\slash', "name": "Zoë 東京"}
        for n in range(300)
    ]

    async def live_calls(_body: dict[str, Any]) -> dict[str, Any]:
        return {"calls": calls}

    parts = answer_parts("x" * 32, {"calls": calls})
    assert len(parts) > 5
    assert max(len(part.encode()) for part in parts) <= MAX_PAYLOAD_BYTES
    async with (
        running_bus(pg_url, "node-a", echo) as a,
        running_bus(pg_url, "node-b", live_calls),
    ):
        assert await a.ask("node-b", {"op": "live_calls"}, 10) == {"calls": calls}


async def test_asking_a_node_that_is_not_listening_ends_in_node_unreachable(
    pg_url: str,
) -> None:
    async with running_bus(pg_url, "node-a", echo) as a:
        with pytest.raises(NodeUnreachable, match=r"did not answer within 0\.5 s"):
            await a.ask("node-gone", {"op": "hangup"}, 0.5)
        async with running_bus(pg_url, "node-b", echo):
            pass  # up, then gone again: its channel has no listener any more
        with pytest.raises(NodeUnreachable):
            await a.ask("node-b", {"op": "hangup"}, 0.5)


async def test_a_failing_handler_answers_with_the_error(pg_url: str) -> None:
    async def broken(_body: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("engine stopped")

    async with running_bus(pg_url, "node-a", echo) as a, running_bus(pg_url, "node-b", broken):
        answer = await a.ask("node-b", {"op": "hangup"}, 5)
    assert answer == {"error": "RuntimeError: engine stopped"}


async def test_a_bus_whose_connection_was_cut_connects_again_and_answers(pg_url: str) -> None:
    async with running_bus(pg_url, "node-a", echo) as a, running_bus(pg_url, "node-b", echo) as b:
        assert b._connection is not None
        backend = b._connection.get_server_pid()
        admin = await asyncpg.connect(a.dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
        finally:
            await admin.close()
        # Bounded: the bus looks at its connection every second.
        for _ in range(100):
            if b.connected and b._connection.get_server_pid() != backend:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the bus did not connect again within 10 s")
        assert await a.ask("node-b", {"op": "again"}, 5) == {"echo": {"op": "again"}}
        # A request from the node that lost its connection works again too.
        assert await b.ask("node-a", {"op": "back"}, 5) == {"echo": {"op": "back"}}


def test_every_part_of_a_worst_case_answer_fits_a_notification() -> None:
    for text in ('"' * 20_000, "\\" * 20_000, "é" * 20_000, "a" * 20_000):
        parts = answer_parts("0" * 32, {"t": text})
        assert max(len(part.encode()) for part in parts) <= MAX_PAYLOAD_BYTES
        data = "".join(json.loads(part)["data"] for part in parts)
        assert json.loads(data) == {"t": text}
