"""callmask's outbound HTTP: the ``aiohttp.ClientSession`` through which every request
to a customer's server goes (routing callbacks, webhook deliveries, audio downloads),
with the SSRF guard in its resolver. aiohttp rather than httpx for CPU: on the 2-core
development machine a POST to a loopback JSON endpoint plus reading the small answer
took about 80 µs of CPU through aiohttp and 640 µs through httpx, and callmask makes
one routing callback (while the caller waits) and one webhook delivery per call, on the
loop that also runs SIP; at 300 calls/s httpx was a third of a call's CPU. Sessions
ignore proxies from the environment, keep no cookies, and every request passes
``allow_redirects=False`` (a redirect could lead past the guard). The guard is
``netguard.check_url`` before each request, which judges IP literals from the URL
(aiohttp never resolves them), and ``PublicResolver`` at connect time, which refuses a
name that resolves to a non-public address: the answer it checks is the one connected
to, so a DNS server cannot give the check one answer and the connection another.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from callmask.netguard import BlockedAddress, check_resolved

USER_AGENT = "callmask"  # routing callbacks and audio downloads
WEBHOOK_USER_AGENT = "callmask-webhooks"


class RefusedAddress(OSError):
    """The resolver's refusal. aiohttp expects a resolver to fail with an ``OSError`` and
    hands it on as ``ClientConnectorDNSError.os_error``; ``refusal`` finds it there."""

    def __init__(self, blocked: BlockedAddress) -> None:
        super().__init__(str(blocked))
        self.blocked = blocked


class PublicResolver(AbstractResolver):
    """Resolves through ``upstream`` and refuses a name if any address it resolves to
    is not public. The connector connects only to addresses this returned (kept in its
    DNS cache for a few seconds), so every address connected to has been checked."""

    def __init__(self, upstream: AbstractResolver) -> None:
        self._upstream = upstream

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._upstream.resolve(host, port, family)
        try:
            check_resolved(host, (result["host"] for result in results))
        except BlockedAddress as exc:
            raise RefusedAddress(exc) from exc
        return results

    async def close(self) -> None:
        await self._upstream.close()


def refusal(exc: aiohttp.ClientError) -> BlockedAddress | None:
    """Why the guard refused the host, if that is what ``exc`` is; else None."""
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, RefusedAddress):
        return exc.os_error.blocked
    return None


class OutboundFailure(Exception):
    """A request to a customer's server that ended without a usable exchange, in words
    that read after "callback ..." or "could not fetch ...: ": ``timed out after N s``,
    ``url refused: <why>`` (``blocked`` set: the guard refused the address, which is
    final), or ``unreachable: <aiohttp's error>``."""

    def __init__(self, detail: str, *, blocked: BlockedAddress | None = None) -> None:
        super().__init__(detail)
        self.blocked = blocked


@contextlib.contextmanager
def outbound_failures(timeout_s: float) -> Iterator[None]:
    """Turn aiohttp's ways of failing inside the block into one ``OutboundFailure``;
    ``timeout_s`` is the request's whole timeout, for the message. Every request to a
    customer's server goes through this, so they all fail the same way."""
    try:
        yield
    except TimeoutError as exc:
        # Before ClientError: aiohttp's own timeouts are both.
        raise OutboundFailure(f"timed out after {timeout_s:g} s") from exc
    except aiohttp.ClientError as exc:
        blocked = refusal(exc)
        if blocked is not None:
            raise OutboundFailure(f"url refused: {blocked}", blocked=blocked) from exc
        raise OutboundFailure(f"unreachable: {type(exc).__name__}: {exc}") from exc


@contextlib.asynccontextmanager
async def client_session(
    *,
    allow_private: bool,
    max_connections: int,
    user_agent: str = USER_AGENT,
    upstream: AbstractResolver | None = None,
) -> AsyncIterator[aiohttp.ClientSession]:
    """A session for requests to customers' servers; must be entered inside the running
    loop. ``allow_private`` is ``CALLMASK_WEBHOOK_ALLOW_PRIVATE`` (without it, names
    that resolve to non-public addresses are refused); ``max_connections`` caps the
    connections open at once (0: no cap); ``upstream`` resolves names (default: the
    system resolver in a thread, as ``getaddrinfo`` always did here)."""
    resolver: AbstractResolver = upstream if upstream is not None else aiohttp.ThreadedResolver()
    if not allow_private:
        resolver = PublicResolver(resolver)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, resolver=resolver),
            headers={"User-Agent": user_agent},
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as session:
            yield session
    finally:
        # The connector closes only resolvers it made itself.
        await resolver.close()


async def read_at_most(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` of the body. The rest is never read: releasing a response
    whose body was not read to the end closes its connection rather than reusing it."""
    content = response.content
    chunks: list[bytes] = []
    remaining = max_bytes
    while remaining > 0 and not content.at_eof():
        chunk = await content.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
