"""The delivery client's lanes: requests spread over separate pools, and a lane is
busy exactly while its response is open."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from callmask.webhooks.transport import LaneTransport, delivery_client
from tests.support.receiver import Receiver, Reply, free_port


async def test_concurrent_requests_take_separate_lanes_and_free_them(receiver: Receiver) -> None:
    receiver.always("/slow", Reply(200, "ok", delay_s=0.3))
    transport = LaneTransport(4)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as http:

        async def post() -> int:
            async with http.stream("POST", receiver.url("/slow"), content=b"{}") as response:
                await response.aread()
                return response.status_code

        tasks = [asyncio.create_task(post()) for _ in range(3)]
        await receiver.wait_for("/slow", count=3)
        assert sorted(transport.busy) == [0, 1, 1, 1]
        assert await asyncio.gather(*tasks) == [200, 200, 200]
    assert transport.busy == (0, 0, 0, 0)


async def test_one_origin_keeps_its_home_lane_when_traffic_is_light(receiver: Receiver) -> None:
    transport = LaneTransport(8)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
        lanes = set()
        for _ in range(5):
            request = http.build_request("POST", receiver.url("/x"), content=b"{}")
            lanes.add(transport._pick(request))
            (await http.send(request)).raise_for_status()
    assert len(lanes) == 1


async def test_a_failed_connection_frees_its_lane() -> None:
    transport = LaneTransport(2)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{free_port()}/", content=b"{}")
    assert transport.busy == (0, 0)


async def test_the_delivery_client_does_not_follow_redirects(receiver: Receiver) -> None:
    receiver.always("/moved", Reply(307, headers={"location": receiver.url("/there")}))
    async with delivery_client(2) as http:
        response = await http.post(receiver.url("/moved"), content=b"{}")
    assert response.status_code == 307
    assert receiver.on("/there") == []
    assert receiver.on("/moved")[0].headers["user-agent"] == "callmask-webhooks"


def test_a_transport_needs_a_lane() -> None:
    with pytest.raises(ValueError):
        LaneTransport(0)
