"""The session every request to a customer's server goes through: who it says it is,
what it keeps to itself (no cookies, no proxies from the environment), how much of an
answer it reads, and its resolver, which refuses at connect time a name that resolves
to a non-public address (the SSRF guard for names; ``check_url`` judges literals)."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest

from callmask.netguard import BlockedAddress
from callmask.outbound import (
    WEBHOOK_USER_AGENT,
    PublicResolver,
    RefusedAddress,
    client_session,
    read_at_most,
    refusal,
)
from tests.support.dns import StaticResolver
from tests.support.receiver import Receiver, Reply, free_port


async def test_each_session_says_who_it_is(receiver: Receiver) -> None:
    for path, agent in (("/default", None), ("/webhooks", WEBHOOK_USER_AGENT)):
        options = {} if agent is None else {"user_agent": agent}
        async with (
            client_session(allow_private=True, max_connections=2, **options) as http,
            http.post(receiver.url(path), data=b"{}") as response,
        ):
            assert response.status == 200
    assert receiver.on("/default")[0].headers["user-agent"] == "callmask"
    assert receiver.on("/webhooks")[0].headers["user-agent"] == "callmask-webhooks"


async def test_a_cookie_one_customer_sets_is_never_sent_again(receiver: Receiver) -> None:
    receiver.always("/set", Reply(200, headers={"set-cookie": "session=secret; Path=/"}))
    async with client_session(allow_private=True, max_connections=2) as http:
        for path in ("/set", "/after"):
            async with http.post(receiver.url(path), data=b"{}") as response:
                assert response.status == 200
    assert "cookie" not in receiver.on("/after")[0].headers


async def test_proxy_settings_of_the_environment_are_ignored(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # a proxy that would refuse the connection
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, nowhere)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with (
        client_session(allow_private=True, max_connections=2) as http,
        http.post(receiver.url("/direct"), data=b"{}") as response,
    ):
        assert response.status == 200
    assert len(receiver.on("/direct")) == 1


async def test_no_more_of_an_answer_is_read_than_asked_for(receiver: Receiver) -> None:
    receiver.always("/big", Reply(200, b"x" * 300_000))
    receiver.always("/small", Reply(200, b"ok"))
    async with client_session(allow_private=True, max_connections=2) as http:
        async with http.get(receiver.url("/big")) as response:
            assert await read_at_most(response, 1000) == b"x" * 1000
            assert not response.content.at_eof()
        async with http.get(receiver.url("/small")) as response:
            assert await read_at_most(response, 1000) == b"ok"


# -- the resolver ------------------------------------------------------------------------

NON_PUBLIC_ANSWERS = [
    ["10.0.0.1"],
    ["127.0.0.1"],
    ["169.254.169.254"],
    ["::1"],
    ["fd00::1"],
    ["64:ff9b::a00:1"],  # NAT64 of 10.0.0.1
    ["93.184.216.34", "192.168.1.10"],  # one private address among public ones is enough
]


@pytest.mark.parametrize("addresses", NON_PUBLIC_ANSWERS)
async def test_the_resolver_refuses_a_name_with_a_non_public_address(addresses: list[str]) -> None:
    resolver = PublicResolver(StaticResolver({"callback.test": addresses}))
    with pytest.raises(RefusedAddress) as caught:
        await resolver.resolve("callback.test", 80)
    # An OSError, which is what aiohttp expects a failing resolver to raise.
    assert isinstance(caught.value, OSError)
    assert isinstance(caught.value.blocked, BlockedAddress)
    assert "callback.test resolves to a non-public address" in str(caught.value.blocked)


async def test_the_resolver_passes_public_answers_on_unchanged() -> None:
    addresses = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    upstream = StaticResolver({"client.example": addresses})
    answers = await PublicResolver(upstream).resolve("client.example", 443)
    assert [a["host"] for a in answers] == addresses
    assert {a["port"] for a in answers} == {443}


async def test_the_resolver_refuses_this_machines_own_name() -> None:
    # The system resolver, as in production. This machine's host name resolves to
    # loopback or a private address on any CI box; a name in public DNS would need the
    # network.
    host = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    if all(ipaddress.ip_address(a).is_global for a in addresses):
        pytest.skip(f"host name {host} resolves to public addresses only: {addresses}")
    with pytest.raises(RefusedAddress, match="resolves to a non-public address"):
        await PublicResolver(aiohttp.ThreadedResolver()).resolve(host, 80)


async def test_a_name_resolving_to_a_private_address_is_refused_at_connect_time(
    receiver: Receiver,
) -> None:
    """check_url passes "callback.test" (a name); the session's resolver then finds it
    leads to 127.0.0.1, where a real server listens, and no connection is made."""
    dns = StaticResolver({"callback.test": ["127.0.0.1"]})
    url = f"http://callback.test:{receiver.port}/callback"
    async with client_session(allow_private=False, max_connections=2, upstream=dns) as http:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await http.post(url, data=b"{}")
    blocked = refusal(caught.value)
    assert blocked is not None
    assert str(blocked) == "callback.test resolves to a non-public address (127.0.0.1)"
    assert dns.asked == ["callback.test"]
    assert receiver.requests == []


async def test_with_private_addresses_allowed_the_same_name_reaches_the_server(
    receiver: Receiver,
) -> None:
    dns = StaticResolver({"callback.test": ["127.0.0.1"]})
    url = f"http://callback.test:{receiver.port}/callback"
    async with (
        client_session(allow_private=True, max_connections=2, upstream=dns) as http,
        http.post(url, data=b"{}") as response,
    ):
        assert response.status == 200
    assert receiver.on("/callback")[0].headers["host"] == f"callback.test:{receiver.port}"


async def test_an_unresolvable_name_is_a_failure_to_connect_not_a_refusal() -> None:
    # A name that does not resolve (yet) is the receiver's problem, tried again later;
    # only a resolved non-public address is final.
    async with client_session(allow_private=False, max_connections=2) as http:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
            await http.post("http://no-such-host.invalid/x", data=b"{}")
    assert refusal(caught.value) is None
