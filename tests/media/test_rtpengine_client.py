"""The ng client's protocol logic (cookies, retransmission, timeouts, reply matching,
error mapping) against a scripted ng server on a loopback UDP socket."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import pytest

from callmask.media.bencode import BencodeValue, decode, encode
from callmask.media.rtpengine import (
    RtpengineClient,
    RtpengineError,
    RtpengineUnavailable,
    packet_counts,
)


@dataclass(frozen=True, slots=True)
class Arrival:
    cookie: bytes
    body: bytes
    datagram: bytes
    at: float


# Given the request and how many times its cookie has been seen (1 = first), return the
# datagrams to answer with (raw, so tests can send unsorted keys, junk, or other cookies).
Script = Callable[[Arrival, int], list[bytes]]


class FakeNgServer(asyncio.DatagramProtocol):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.arrivals: list[Arrival] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        cookie, _, body = data.partition(b" ")
        arrival = Arrival(cookie, body, data, asyncio.get_running_loop().time())
        self.arrivals.append(arrival)
        seen = sum(1 for a in self.arrivals if a.cookie == cookie)
        assert self.transport is not None
        for reply in self.script(arrival, seen):
            self.transport.sendto(reply, addr)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)


def request_of(arrival: Arrival) -> dict[str, BencodeValue]:
    request = decode(arrival.body)
    assert isinstance(request, dict)
    return request


def reply_to(arrival: Arrival, body: dict[str, object] | bytes) -> bytes:
    raw = body if isinstance(body, bytes) else encode(body)
    return arrival.cookie + b" " + raw


def answer_ok(arrival: Arrival, seen: int) -> list[bytes]:
    return [reply_to(arrival, {"result": "ok"})]


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[[Script], Awaitable[FakeNgServer]]]:
    """Start scripted ng servers on 127.0.0.1:0; close them after the test."""
    servers: list[FakeNgServer] = []

    async def serve(script: Script) -> FakeNgServer:
        server = FakeNgServer(script)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
        servers.append(server)
        return server

    yield serve
    for server in servers:
        if server.transport is not None:
            server.transport.close()


Serve = Callable[[Script], Awaitable[FakeNgServer]]


async def test_rtpengine_loses_two_requests_and_the_same_datagram_is_resent_until_answered(
    fake_server: Serve,
) -> None:
    server = await fake_server(lambda arrival, seen: answer_ok(arrival, seen) if seen == 3 else [])
    async with RtpengineClient(
        server.address, timeout_s=2.0, retransmit_s=0.05, wire="bencode"
    ) as client:
        reply = await client.request({"command": "query", "call-id": "c1"})

    assert reply == {"result": "ok"}
    assert len(server.arrivals) == 3
    assert len({a.datagram for a in server.arrivals}) == 1, "retransmissions must be identical"
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(server.arrivals)]
    assert all(0.04 <= gap <= 0.5 for gap in gaps), gaps
    assert client.retransmissions == 2
    assert decode(server.arrivals[0].body) == {"command": "query", "call-id": "c1"}


async def test_rtpengine_never_answers_and_the_request_times_out_after_timeout_s(
    fake_server: Serve,
) -> None:
    server = await fake_server(lambda arrival, seen: [])
    loop = asyncio.get_running_loop()
    async with RtpengineClient(
        server.address, timeout_s=0.3, retransmit_s=0.1, wire="bencode"
    ) as client:
        started = loop.time()
        with pytest.raises(RtpengineUnavailable) as raised:
            await client.request({"command": "ping"})
        elapsed_s = loop.time() - started

    assert 0.3 <= elapsed_s < 0.8
    assert raised.value.command == "ping"
    # Sent at 0, 0.1 and 0.2 s, none at the deadline. The bounds allow for a loaded machine
    # (a late wake-up skips a retransmission) and sub-millisecond timer slack (one extra).
    assert 2 <= len(server.arrivals) <= 4
    assert len({a.datagram for a in server.arrivals}) == 1
    assert client.timeouts == 1


async def test_nothing_listens_on_the_ng_port_and_the_request_times_out_cleanly(
    fake_server: Serve,
) -> None:
    server = await fake_server(lambda arrival, seen: [])
    address = server.address
    assert server.transport is not None
    server.transport.close()  # the port is now closed: the kernel answers ICMP unreachable
    await asyncio.sleep(0)
    async with RtpengineClient(address, timeout_s=0.3, retransmit_s=0.05, wire="bencode") as client:
        with pytest.raises(RtpengineUnavailable):
            await client.ping()


async def test_concurrent_requests_get_their_own_replies_in_any_order(
    fake_server: Serve,
) -> None:
    held: list[Arrival] = []

    def reverse_after_three(arrival: Arrival, seen: int) -> list[bytes]:
        if seen > 1:
            return []
        held.append(arrival)
        if len(held) < 3:
            return []
        return [
            reply_to(a, {"result": "ok", "echo": request_of(a)["call-id"]}) for a in reversed(held)
        ]

    server = await fake_server(reverse_after_three)
    async with RtpengineClient(
        server.address, timeout_s=2.0, retransmit_s=1.0, wire="bencode"
    ) as client:
        replies = await asyncio.gather(
            *(client.request({"command": "query", "call-id": f"call-{n}"}) for n in range(3))
        )

    assert [reply["echo"] for reply in replies] == ["call-0", "call-1", "call-2"]
    cookies = {a.cookie for a in held}
    assert len(cookies) == 3, "every request needs its own cookie"


async def test_duplicate_and_late_replies_are_dropped(
    fake_server: Serve,
) -> None:
    late: list[Arrival] = []

    def script(arrival: Arrival, seen: int) -> list[bytes]:
        call_id = request_of(arrival)["call-id"]
        if call_id == "slow":
            late.append(arrival)
            return []
        if call_id == "fast" and late:
            # First deliver the reply the timed-out request never got, then this one twice.
            stale = reply_to(late[0], {"result": "ok", "echo": "slow"})
            fresh = reply_to(arrival, {"result": "ok", "echo": "fast"})
            return [stale, fresh, fresh]
        return []

    server = await fake_server(script)
    async with RtpengineClient(
        server.address, timeout_s=0.2, retransmit_s=0.5, wire="bencode"
    ) as client:
        with pytest.raises(RtpengineUnavailable):
            await client.request({"command": "query", "call-id": "slow"})
        reply = await client.request({"command": "query", "call-id": "fast"})
        await asyncio.sleep(0.05)  # let the duplicate arrive

    assert reply == {"result": "ok", "echo": "fast"}
    assert client.unmatched_replies == 2


async def test_a_reply_with_unsorted_keys_is_accepted(
    fake_server: Serve,
) -> None:
    unsorted = b"d6:result2:ok3:sdp10:v=0\r\ns=-\r\n7:warning4:oopse"
    server = await fake_server(lambda arrival, seen: [reply_to(arrival, unsorted)])
    async with RtpengineClient(
        server.address, timeout_s=1.0, retransmit_s=0.5, wire="bencode"
    ) as client:
        sdp = await client.offer("c1", "from-1", "v=0\r\n")
    assert sdp == "v=0\r\ns=-\r\n"


async def test_rtpengine_error_replies_raise_with_the_error_reason(
    fake_server: Serve,
) -> None:
    server = await fake_server(
        lambda arrival, seen: [
            reply_to(arrival, {"result": "error", "error-reason": "Unknown call-id"})
        ]
    )
    async with RtpengineClient(
        server.address, timeout_s=1.0, retransmit_s=0.5, wire="bencode"
    ) as client:
        with pytest.raises(RtpengineError) as raised:
            await client.answer("c1", "from-1", "to-1", "v=0\r\n")
    assert raised.value.reason == "Unknown call-id"
    assert raised.value.result == "error"
    assert raised.value.command == "answer"
    assert not isinstance(raised.value, RtpengineUnavailable)


async def test_a_load_limit_reply_raises_rtpengine_error(
    fake_server: Serve,
) -> None:
    server = await fake_server(
        lambda arrival, seen: [
            reply_to(arrival, {"result": "load limit", "message": "session limit reached"})
        ]
    )
    async with RtpengineClient(
        server.address, timeout_s=1.0, retransmit_s=0.5, wire="bencode"
    ) as client:
        with pytest.raises(RtpengineError) as raised:
            await client.offer("c1", "from-1", "v=0\r\n")
    assert raised.value.result == "load limit"
    assert raised.value.reason == "session limit reached"


@pytest.mark.parametrize(
    "body", [b"not bencode", b"l2:oke", b"d6:result2:ok"], ids=["junk", "list", "truncated"]
)
async def test_a_malformed_reply_raises_rtpengine_error(fake_server: Serve, body: bytes) -> None:
    server = await fake_server(lambda arrival, seen: [reply_to(arrival, body)])
    async with RtpengineClient(
        server.address, timeout_s=1.0, retransmit_s=0.5, wire="bencode"
    ) as client:
        with pytest.raises(RtpengineError) as raised:
            await client.request({"command": "query", "call-id": "c1"})
    assert raised.value.result == "malformed"


async def test_an_offer_anchors_media_with_the_b2bua_defaults_and_caller_overrides(
    fake_server: Serve,
) -> None:
    server = await fake_server(
        lambda arrival, seen: [reply_to(arrival, {"result": "ok", "sdp": "v=0\r\n"})]
    )
    async with RtpengineClient(
        server.address, timeout_s=1.0, retransmit_s=0.5, wire="bencode"
    ) as client:
        await client.offer("c1", "from-1", "v=0\r\nA\r\n")
        await client.answer(
            "c1",
            "from-1",
            "to-1",
            "v=0\r\nB\r\n",
            flags=["strict source"],
            extra={"ICE": "force", "label": "callee"},
        )

    offer, answer = (decode(a.body) for a in server.arrivals)
    assert offer == {
        "command": "offer",
        "call-id": "c1",
        "from-tag": "from-1",
        "sdp": "v=0\r\nA\r\n",
        "replace": ["origin", "session-connection"],
        "ICE": "remove",
    }
    assert answer == {
        "command": "answer",
        "call-id": "c1",
        "from-tag": "from-1",
        "to-tag": "to-1",
        "sdp": "v=0\r\nB\r\n",
        "replace": ["origin", "session-connection"],
        "ICE": "force",
        "flags": ["strict source"],
        "label": "callee",
    }


async def test_an_offer_reply_without_sdp_is_an_error(
    fake_server: Serve,
) -> None:
    server = await fake_server(answer_ok)
    async with RtpengineClient(
        server.address, timeout_s=1.0, retransmit_s=0.5, wire="bencode"
    ) as client:
        with pytest.raises(RtpengineError, match="no SDP"):
            await client.offer("c1", "from-1", "v=0\r\n")


async def test_play_media_returns_the_duration_and_refuses_a_reply_without_one(
    fake_server: Serve,
) -> None:
    def script(arrival: Arrival, seen: int) -> list[bytes]:
        request = decode(arrival.body)
        assert isinstance(request, dict)
        if request["file"] == "/audio/known.mp3":
            return [reply_to(arrival, {"duration": 3239, "result": "ok"})]
        return [reply_to(arrival, {"result": "ok"})]

    server = await fake_server(script)
    async with RtpengineClient(
        server.address, timeout_s=1.0, retransmit_s=0.5, wire="bencode"
    ) as client:
        assert await client.play_media("c1", "from-1", "/audio/known.mp3") == 3239
        with pytest.raises(RtpengineError, match="duration"):
            await client.play_media("c1", "from-1", "/audio/unknown.mp3")
    first = decode(server.arrivals[0].body)
    assert first == {
        "command": "play media",
        "call-id": "c1",
        "from-tag": "from-1",
        "file": "/audio/known.mp3",
    }


async def test_a_ping_answered_with_something_other_than_pong_fails(
    fake_server: Serve,
) -> None:
    server = await fake_server(answer_ok)
    async with RtpengineClient(
        server.address, timeout_s=1.0, retransmit_s=0.5, wire="bencode"
    ) as client:
        with pytest.raises(RtpengineError):
            await client.ping()


async def test_closing_the_client_fails_requests_in_flight(
    fake_server: Serve,
) -> None:
    server = await fake_server(lambda arrival, seen: [])
    client = RtpengineClient(server.address, timeout_s=5.0, retransmit_s=0.1, wire="bencode")
    await client.open()
    pending = asyncio.create_task(client.ping())
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(RtpengineUnavailable):
        await asyncio.wait_for(pending, 1.0)
    with pytest.raises(RuntimeError):
        await client.ping()


async def test_two_clients_never_share_a_cookie(
    fake_server: Serve,
) -> None:
    # rtpengine caches replies by cookie; a restarted client reusing "1" would get a stale one.
    server = await fake_server(lambda arrival, seen: [reply_to(arrival, {"result": "pong"})])
    for _ in range(2):
        async with RtpengineClient(
            server.address, timeout_s=1.0, retransmit_s=0.5, wire="bencode"
        ) as client:
            await client.ping()
            await client.ping()
    cookies = [a.cookie for a in server.arrivals]
    assert len(cookies) == 4
    assert len(set(cookies)) == 4


def test_packet_counts_sum_rtp_streams_per_tag_and_skip_rtcp() -> None:
    def stream(flags: list[str], packets: int) -> dict[str, object]:
        return {"flags": flags, "stats": {"packets": packets, "bytes": packets * 172}}

    reply: dict[str, object] = {
        "result": "ok",
        "tags": {
            "caller": {
                "tag": "caller",
                "medias": [
                    {"streams": [stream(["RTP", "filled"], 50), stream(["RTCP", "filled"], 3)]},
                    {"streams": [stream(["RTP"], 7)]},
                ],
            },
            "callee": {"medias": [{"streams": [stream(["RTP"], 0)]}]},
            "odd": {"medias": "not a list"},
            "odder": {"medias": [{"streams": [{"stats": {"packets": "many"}}, 5]}]},
        },
    }
    assert packet_counts(reply) == {"caller": 57, "callee": 0, "odd": 0, "odder": 0}
    assert packet_counts({"result": "ok", "warning": "Call-ID not found"}) == {}


def json_reply(arrival: Arrival, body: dict[str, object]) -> bytes:
    return arrival.cookie + b" " + json.dumps(body).encode()


async def test_an_rtpengine_that_answers_json_is_spoken_to_in_json(fake_server: Serve) -> None:
    def script(arrival: Arrival, seen: int) -> list[bytes]:
        if not arrival.body.startswith(b"{"):
            return [reply_to(arrival, {"result": "error", "error-reason": "want JSON"})]
        request = json.loads(arrival.body)
        if request["command"] == "ping":
            return [json_reply(arrival, {"result": "pong"})]
        # Keys in any order, and an SDP with line breaks, as rtpengine sends them.
        return [arrival.cookie + b' {"sdp":"v=0\\r\\ns=-\\r\\n","result":"ok","warning":"none"}']

    server = await fake_server(script)
    async with RtpengineClient(server.address, timeout_s=1.0, retransmit_s=0.5) as client:
        assert client.wire is None
        sdp = await client.offer("c1", "caller", "v=0\r\n")
        assert client.wire == "json"
    assert sdp == "v=0\r\ns=-\r\n"
    first, second = (json.loads(a.body) for a in server.arrivals)
    assert first == {"command": "ping"}
    assert second["command"] == "offer" and second["sdp"] == "v=0\r\n"
    assert second["replace"] == ["origin", "session-connection"]


async def test_an_rtpengine_that_answers_only_bencode_is_spoken_to_in_bencode(
    fake_server: Serve,
) -> None:
    """An rtpengine without the JSON form answers in bencode (or not at all): the client
    asks again in bencode and stays with it."""

    def script(arrival: Arrival, seen: int) -> list[bytes]:
        if arrival.body.startswith(b"{"):
            return [reply_to(arrival, {"result": "error", "error-reason": "not bencode"})]
        if request_of(arrival)["command"] == "ping":
            return [reply_to(arrival, {"result": "pong"})]
        return [reply_to(arrival, {"result": "ok", "tags": {}})]

    server = await fake_server(script)
    async with RtpengineClient(server.address, timeout_s=1.0, retransmit_s=0.5) as client:
        assert await client.negotiate() == "bencode"
        assert await client.delete("c1", "caller") == {"result": "ok", "tags": {}}
    assert [a.body[:1] for a in server.arrivals] == [b"{", b"d", b"d"]


async def test_requests_made_before_the_form_is_known_wait_for_one_negotiation(
    fake_server: Serve,
) -> None:
    def script(arrival: Arrival, seen: int) -> list[bytes]:
        return [json_reply(arrival, {"result": "pong" if b"ping" in arrival.body else "ok"})]

    server = await fake_server(script)
    async with RtpengineClient(server.address, timeout_s=1.0, retransmit_s=0.5) as client:
        replies = await asyncio.gather(
            *(client.request({"command": "query", "call-id": f"c{i}"}) for i in range(5))
        )
    assert replies == [{"result": "ok"}] * 5
    pings = [a for a in server.arrivals if b'"ping"' in a.body]
    assert len(pings) == 1


async def test_a_reply_in_the_other_form_fails_the_request(fake_server: Serve) -> None:
    server = await fake_server(lambda arrival, seen: [reply_to(arrival, {"result": "ok"})])
    async with RtpengineClient(
        server.address, timeout_s=1.0, retransmit_s=0.5, wire="json"
    ) as client:
        with pytest.raises(RtpengineError, match="not in json"):
            await client.request({"command": "query", "call-id": "c1"})


async def test_an_rtpengine_that_answers_neither_form_is_unavailable_and_asked_again(
    fake_server: Serve,
) -> None:
    server = await fake_server(lambda arrival, seen: [])
    async with RtpengineClient(server.address, timeout_s=0.2, retransmit_s=0.1) as client:
        with pytest.raises(RtpengineUnavailable):
            await client.negotiate()
        assert client.wire is None
        with pytest.raises(RtpengineUnavailable):
            await client.ping()
    assert sum(1 for a in server.arrivals if a.body.startswith(b"{")) >= 2
