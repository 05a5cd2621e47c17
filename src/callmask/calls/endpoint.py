"""The asyncio shell around the sans-IO SIP core: one UDP socket and one TCP listener on
``CALLMASK_SIP_HOST:PORT`` feeding a ``TransactionLayer``.

Everything SIP happens in the core; this module only moves bytes and time. Input is
parsed here (RFC 3261 18.3 framing for TCP); a message that does not parse is answered
400 when enough of it survived to address a reply and is otherwise dropped, and both
are counted: the process never dies on input. After each input, and when the core's
single timer fires, the core's outgoing datagrams are sent and its events handed to the
``on_event`` callback (the call engine), which must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from callmask.sip.message import (
    Request,
    Response,
    SipParseError,
    StreamFramer,
    make_bad_request_reply,
    parse_message,
)
from callmask.sip.transaction import Address, Event, Outgoing, Timers, TransactionLayer

log = logging.getLogger(__name__)

# RFC 3261 18.1.1 lets UDP messages reach 65,535 bytes, but a real INVITE with SDP is
# 1-4 kB; anything this large is an attack or a bug, and is refused before parsing.
MAX_MESSAGE_BYTES = 32 * 1024


@dataclass(slots=True)
class EndpointCounters:
    received: int = 0
    sent: int = 0
    parse_errors: int = 0
    dropped: int = 0
    send_errors: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.endpoint.receive_bytes(data, (str(addr[0]), int(addr[1])), reliable=False)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for a peer that went away: the transaction timers
        # report the failure; nothing to do here but count it.
        self.endpoint.counters.send_errors += 1


class SipEndpoint:
    def __init__(
        self,
        host: str,
        port: int,
        on_event: Callable[[Event], None],
        *,
        timers: Timers | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.on_event = on_event
        self.layer = TransactionLayer(timers or Timers())
        self.max_message_bytes = max_message_bytes
        self.counters = EndpointCounters()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_writers: dict[Address, asyncio.StreamWriter] = {}
        self._tcp_pending: dict[Address, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
        )
        self._udp = transport
        if self.port == 0:  # tests ask for any free port; TCP then takes the same one
            self.port = int(transport.get_extra_info("sockname")[1])
        self._tcp_server = await asyncio.start_server(
            self._serve_tcp, self.host, self.port, limit=self.max_message_bytes
        )
        log.info("SIP listening on %s:%d (UDP, TCP)", self.host, self.port)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._tcp_server is not None:
            self._tcp_server.close()
        for writer in list(self._tcp_writers.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._udp is not None:
            self._udp.close()

    @property
    def now(self) -> float:
        assert self._loop is not None, "endpoint not started"
        return self._loop.time()

    # -- input -------------------------------------------------------------------

    def receive_bytes(self, data: bytes, source: Address, *, reliable: bool) -> None:
        self.counters.received += 1
        if data.strip(b"\r\n") == b"":
            return  # RFC 5626 keep-alive (CRLF ping)
        if len(data) > self.max_message_bytes:
            self._count_drop("oversize")
            return
        try:
            message = parse_message(data, max_bytes=self.max_message_bytes)
        except SipParseError as exc:
            self.counters.parse_errors += 1
            reply = make_bad_request_reply(exc)
            if reply is None:
                self._count_drop("unparseable")
            else:
                self._count_drop("answered 400")
                self._send(Outgoing(reply, source, reliable))
            log.debug("unparseable SIP from %s:%d: %s", source[0], source[1], exc.reason)
            return
        self.layer.receive(message, source, reliable, self.now)
        self.pump()

    def _count_drop(self, reason: str) -> None:
        self.counters.dropped += 1
        self.counters.by_reason[reason] = self.counters.by_reason.get(reason, 0) + 1

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address: Address = (str(peer[0]), int(peer[1]))
        self._tcp_writers[address] = writer
        await self._read_tcp(address, reader, writer)

    async def _read_tcp(
        self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        framer = StreamFramer(max_bytes=self.max_message_bytes)
        try:
            while data := await reader.read(65536):
                try:
                    messages = framer.feed(data)
                except SipParseError as exc:
                    # A stream that lost its framing cannot be resynchronised: close it.
                    self.counters.parse_errors += 1
                    self._count_drop("tcp framing")
                    log.info("closing SIP/TCP from %s:%d: %s", *address, exc.reason)
                    break
                for raw in messages:
                    self.receive_bytes(raw, address, reliable=True)
        except (ConnectionError, OSError):
            pass
        finally:
            if self._tcp_writers.get(address) is writer:
                del self._tcp_writers[address]
            writer.close()

    # -- output ------------------------------------------------------------------

    def send_request(self, request: Request, destination: Address, reliable: bool) -> str:
        key = self.layer.send_request(request, destination, reliable, self.now)
        self.pump()
        return key

    def send_response(self, key: str, response: Response) -> None:
        self.layer.send_response(key, response, self.now)
        self.pump()

    def send_ack(self, key: str, ack: Request, destination: Address, reliable: bool) -> None:
        self.layer.send_ack(key, ack, destination, reliable)
        self.pump()

    def send_stateless(
        self, message: Request | Response, destination: Address, reliable: bool
    ) -> None:
        self.layer.send_stateless(message, destination, reliable)
        self.pump()

    def pump(self) -> None:
        """Send what the core wants sent, hand its events on, re-arm its timer."""
        layer = self.layer
        while True:
            for outgoing in layer.datagrams_to_send():
                self._send(outgoing)
            event = layer.next_event()
            if event is None:
                break
            try:
                self.on_event(event)
            except Exception:  # one bad event handler must not stop SIP for every call
                log.exception("SIP event handler failed on %s", type(event).__name__)
        self._arm_timer()

    def _send(self, outgoing: Outgoing) -> None:
        self.counters.sent += 1
        if not outgoing.reliable:
            assert self._udp is not None
            self._udp.sendto(outgoing.data, outgoing.destination)
            return
        writer = self._tcp_writers.get(outgoing.destination)
        if writer is not None and not writer.is_closing():
            writer.write(outgoing.data)
            return
        pending = self._tcp_pending.get(outgoing.destination)
        if pending is not None:
            pending.append(outgoing.data)
            return
        self._tcp_pending[outgoing.destination] = [outgoing.data]
        task = asyncio.get_running_loop().create_task(self._connect_tcp(outgoing.destination))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_tcp(self, destination: Address) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*destination, limit=self.max_message_bytes), timeout=5
            )
        except (OSError, TimeoutError) as exc:
            # The transaction's own timer turns the silence into a 408/503 for the call.
            self.counters.send_errors += 1
            self._tcp_pending.pop(destination, None)
            log.warning("SIP/TCP connect to %s:%d failed: %s", *destination, exc)
            return
        self._tcp_writers[destination] = writer
        for data in self._tcp_pending.pop(destination, []):
            writer.write(data)
        await self._read_tcp(destination, reader, writer)

    # -- time --------------------------------------------------------------------

    def _arm_timer(self) -> None:
        deadline = self.layer.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            assert self._loop is not None
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.layer.handle_timer(self.now)
        self.pump()
