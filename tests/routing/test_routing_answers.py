"""What callmask makes of the customer's routing answers (Infobip callback and Tata
user's API), asked over a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from contextlib import AbstractAsyncContextManager

import aiohttp
import pytest

from callmask.calls.outcome import CallStatus, status_for_code
from callmask.outbound import client_session
from callmask.routing import infobip, tata
from callmask.routing.decisions import DialNumbers, PlayAudio, RoutingFailed
from tests.support.dns import StaticResolver
from tests.support.receiver import Receiver, Reply


def routing_session() -> AbstractAsyncContextManager[aiohttp.ClientSession]:
    """The call engine's kind of session."""
    return client_session(allow_private=True, max_connections=0)


async def ask_infobip(receiver: Receiver, timeout_s: float = 2.0) -> object:
    async with routing_session() as http:
        return await infobip.ask(
            http,
            receiver.url("/callback"),
            caller="+41793026727",
            did="+41793026731",
            timeout_s=timeout_s,
            allow_private=True,
            default_region=None,
        )


async def test_the_callback_gets_from_and_to_as_international_digits(receiver: Receiver) -> None:
    receiver.always(
        "/callback",
        Reply(body={"command": "dial", "phoneNumber": "41793026785", "callerId": "41793026700"}),
    )
    decision = await ask_infobip(receiver)
    assert decision == DialNumbers(numbers=("+41793026785",), caller_id="+41793026700")
    assert receiver.on("/callback")[0].json() == {"from": "41793026727", "to": "41793026731"}


async def test_an_audio_answer_names_the_file(receiver: Receiver) -> None:
    receiver.always("/callback", Reply(body={"command": "audio", "fileId": "f-1"}))
    assert await ask_infobip(receiver) == PlayAudio(file_id="f-1")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(status=500, body=b"oops"), "HTTP 500"),
        (Reply(body=b"<html>not json</html>"), "not JSON"),
        (Reply(body=[1, 2]), "not a JSON object"),
        (Reply(body={"command": "transfer"}), "unknown command"),
        (Reply(body={"phoneNumber": "41793026785"}), "no command"),
        (Reply(body={"command": "dial", "callerId": "41793026700"}), "no phoneNumber"),
        (Reply(body={"command": "dial", "phoneNumber": "41793026785"}), "no callerId"),
        (
            Reply(body={"command": "dial", "phoneNumber": "12", "callerId": "41793026700"}),
            "phoneNumber",
        ),
        (Reply(body={"command": "audio"}), "no fileId"),
        (Reply(status=302, headers={"location": "http://127.0.0.1:1/"}), "HTTP 302"),
        (Reply(body=b"[" + b"1," * 40_000 + b"1]"), "larger than 65536 bytes"),
    ],
)
async def test_a_bad_callback_answer_is_a_routing_failure_that_says_why(
    receiver: Receiver, reply: Reply, reason: str
) -> None:
    receiver.always("/callback", reply)
    with pytest.raises(RoutingFailed, match=reason):
        await ask_infobip(receiver)


async def test_a_slow_callback_fails_after_the_timeout(receiver: Receiver) -> None:
    receiver.always("/callback", Reply(body={"command": "audio", "fileId": "x"}, delay_s=1.0))
    with pytest.raises(RoutingFailed, match="timed out"):
        await ask_infobip(receiver, timeout_s=0.2)


async def test_a_callback_that_drips_its_answer_fails_after_the_timeout() -> None:
    """Headers at once, then a byte every 50 ms: every read is quick, the answer never
    complete. The timeout is the whole exchange, not each read."""

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(100):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with routing_session() as http:
            started = time.monotonic()
            with pytest.raises(RoutingFailed, match=r"timed out after 0\.3 s"):
                await infobip.post_json(
                    http,
                    f"http://127.0.0.1:{port}/callback",
                    {},
                    timeout_s=0.3,
                    allow_private=True,
                )
            assert time.monotonic() - started < 1.5
    finally:
        server.close()
        await server.wait_closed()


async def test_an_unreachable_callback_fails() -> None:
    async with routing_session() as http:
        with pytest.raises(RoutingFailed, match="unreachable"):
            await infobip.ask(
                http,
                "http://127.0.0.1:1/callback",
                caller="+41793026727",
                did="+41793026731",
                timeout_s=1,
                allow_private=True,
                default_region=None,
            )


# 127.1 is 127.0.0.1 to the C resolver: literals are judged before each request.
@pytest.mark.parametrize("url", ["http://10.1.2.3/callback", "http://127.1:9/callback"])
async def test_a_callback_on_a_private_address_is_refused_without_the_allow_flag(url: str) -> None:
    async with routing_session() as http:
        with pytest.raises(RoutingFailed, match="callback url refused"):
            await infobip.ask(
                http,
                url,
                caller="+41793026727",
                did="+41793026731",
                timeout_s=1,
                allow_private=False,
                default_region=None,
            )


async def test_a_callback_name_that_resolves_to_a_private_address_is_refused_when_connecting(
    receiver: Receiver,
) -> None:
    # The URL passes check_url (a name); the session's resolver finds 127.0.0.1.
    dns = StaticResolver({"callback.test": ["127.0.0.1"]})
    async with client_session(allow_private=False, max_connections=0, upstream=dns) as http:
        with pytest.raises(RoutingFailed) as caught:
            await infobip.ask(
                http,
                f"http://callback.test:{receiver.port}/callback",
                caller="+41793026727",
                did="+41793026731",
                timeout_s=1,
                allow_private=False,
                default_region=None,
            )
    assert str(caught.value) == (
        "callback url refused: callback.test resolves to a non-public address (127.0.0.1)"
    )
    assert receiver.requests == []


async def test_the_users_api_gets_the_documented_body_and_numbers_in_any_indian_form(
    receiver: Receiver,
) -> None:
    receiver.always(
        "/users-api",
        Reply(
            body=[
                {
                    "transfer": {
                        "type": "number",
                        "data": ["9876543210", "+919876543211", "09876543212"],
                    }
                }
            ]
        ),
    )
    async with routing_session() as http:
        decision = await tata.ask(
            http,
            receiver.url("/users-api"),
            uuid="u-1",
            call_id="1700000000.000001",
            did="+919999900000",
            caller="+919888800000",
            start_stamp=dt.datetime(2026, 11, 25, 10, 0, 0, tzinfo=dt.UTC),
            timeout_s=2,
            allow_private=True,
            default_region="IN",
        )
    assert decision == DialNumbers(
        numbers=("+919876543210", "+919876543211", "+919876543212"), caller_id="+919999900000"
    )
    assert receiver.on("/users-api")[0].json() == {
        "uuid": "u-1",
        "call_id": "1700000000.000001",
        "call_to_number": "+919999900000",
        "caller_id_number": "+919888800000",
        "start_stamp": "2026-11-25 10:00:00",
    }


@pytest.mark.parametrize(
    "answer",
    [
        [],
        [{"transfer": {"type": "agent", "data": ["1"]}}],
        [{"transfer": {"type": "number", "data": []}}],
        [{"transfer": {"type": "number", "data": ["12"]}}],
        [{"nothing": 1}],
        "9876543210",
    ],
)
def test_a_bad_users_api_answer_is_refused(answer: object) -> None:
    with pytest.raises(RoutingFailed):
        tata.parse_answer(answer, did="+919999900000", default_region="IN")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (486, CallStatus.BUSY),
        (600, CallStatus.BUSY),
        (408, CallStatus.NO_ANSWER),
        (480, CallStatus.NO_ANSWER),
        (487, CallStatus.NO_ANSWER),
        (503, CallStatus.CONGESTION),
        (500, CallStatus.CONGESTION),
        (None, CallStatus.CONGESTION),
        (404, CallStatus.FAILED),
    ],
)
def test_the_status_of_an_unanswered_call_follows_the_documented_mapping(
    code: int | None, status: CallStatus
) -> None:
    assert status_for_code(code) is status
