"""A stretch of carrier network for fault tests: a UDP relay on loopback between two fixed
peers that delivers every datagram more than once, the way ``tc qdisc ... netem duplicate
100%`` would (netem is not available in every kernel the tests run on).

The relay owns two sockets. Peer ``a`` sends to ``address_for_a`` and peer ``b`` to
``address_for_b``; each datagram one peer sends reaches the other ``copies`` times, back to
back, from the relay's other socket. Neither peer ever sees the other's address: to peer
``b`` the relay *is* peer ``a`` and the other way round, like a NAT that duplicates. So SIP
only crosses it both ways when each side answers and sends in-dialog requests to the
address the relay gave it (RFC 3581 ``rport`` for responses, a Contact naming the relay for
requests); anything a peer sends straight to the other bypasses the relay and is not
counted.

Datagrams from any address other than the expected peer are dropped and counted
(``strays``). The relay stops forwarding after ``lifetime_s`` even if the test never closes
it, so a hung test cannot leave it running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Self

from tests.support.sipp import LOOPBACK

Address = tuple[str, int]


@dataclass
class RelayCounts:
    """What crossed the relay, per direction ("a->b", "b->a")."""

    received: dict[str, int] = field(default_factory=lambda: {"a->b": 0, "b->a": 0})
    """Datagrams a peer sent into the relay."""
    delivered: dict[str, int] = field(default_factory=lambda: {"a->b": 0, "b->a": 0})
    """Copies the relay sent on to the other peer."""
    strays: int = 0
    """Datagrams from an address that is neither peer (dropped)."""

    @property
    def duplicated(self) -> int:
        """Copies delivered beyond the first of each datagram."""
        return sum(self.delivered.values()) - sum(self.received.values())


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that has gone: a lossy network shrugs.
        pass


class DuplicatingRelay:
    """``async with DuplicatingRelay(a, b) as relay:`` then point peer ``a`` at
    ``relay.address_for_a`` and peer ``b`` at ``relay.address_for_b``.

    ``port_for_a`` / ``port_for_b`` bind those sides to chosen loopback ports (free ones when
    None), e.g. the trunk port a callmask node was configured with. ``copies`` is how many
    times each datagram is delivered (2: every packet twice).
    """

    def __init__(
        self,
        a: Address,
        b: Address,
        *,
        copies: int = 2,
        port_for_a: int = 0,
        port_for_b: int = 0,
        lifetime_s: float = 120.0,
    ) -> None:
        if copies < 1:
            raise ValueError("a relay delivers each datagram at least once")
        self.a = a
        self.b = b
        self.copies = copies
        self.lifetime_s = lifetime_s
        self.counts = RelayCounts()
        self._ports = (port_for_a, port_for_b)
        self._side_a = _Side(partial(self._forward, "a->b"))
        self._side_b = _Side(partial(self._forward, "b->a"))
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def address_for_a(self) -> Address:
        """Where peer ``a`` sends to reach ``b`` (and where ``a`` hears ``b`` from)."""
        return self._local(self._side_a)

    @property
    def address_for_b(self) -> Address:
        """Where peer ``b`` sends to reach ``a`` (and where ``b`` hears ``a`` from)."""
        return self._local(self._side_b)

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        try:
            for side, port in zip((self._side_a, self._side_b), self._ports, strict=True):
                side.transport, _ = await loop.create_datagram_endpoint(
                    lambda s=side: s, local_addr=(LOOPBACK, port)
                )
        except BaseException:
            self.close()
            raise
        self._expiry = loop.call_later(self.lifetime_s, self.close)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for side in (self._side_a, self._side_b):
            if side.transport is not None:
                side.transport.close()

    def _forward(self, direction: str, data: bytes, source: Address) -> None:
        if direction == "a->b":
            sender, expected, destination = self._side_b, self.a, self.b
        else:
            sender, expected, destination = self._side_a, self.b, self.a
        if source != expected:
            self.counts.strays += 1
            return
        self.counts.received[direction] += 1
        transport = sender.transport
        if transport is None or transport.is_closing():
            return
        for _ in range(self.copies):
            # Send errors (a peer that has gone) reach error_received, not here.
            transport.sendto(data, destination)
            self.counts.delivered[direction] += 1

    @staticmethod
    def _local(side: _Side) -> Address:
        if side.transport is None:
            raise RuntimeError("the relay is not running (use it with 'async with')")
        host, port = side.transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))
