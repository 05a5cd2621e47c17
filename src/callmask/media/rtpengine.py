"""Client for rtpengine's ng control protocol over UDP.

Follows rtpengine's "ng Control Protocol" document (docs/ng_control_protocol.md in
sipwise/rtpengine): every request is ``<cookie> <dictionary>`` in one datagram and the
reply carries the same cookie. The dictionary is bencoded, or JSON once ``negotiate``
has found that the rtpengine answers JSON (the document allows either, and rtpengine
replies in the form it was asked in). JSON because of where the time goes: the
statistics in a delete reply are 1.8 KB and 150 values, which took our pure-Python
bencode decoder ~160 us and the C-accelerated ``json`` module ~15 us, on the event loop,
for every call. Replies are decoded by their first byte (``{`` JSON, ``d`` bencode),
and the bencode decoder accepts rtpengine's unsorted keys.

UDP may lose either datagram, so a request is sent again, byte for byte with the same
cookie, every ``retransmit_s`` until ``timeout_s`` has passed. That is safe for every
command, ``offer`` included: rtpengine caches its reply per cookie and answers a
retransmission from the cache instead of executing it twice. The same cache is why
cookies must never repeat, not even across restarts of this process (a reused cookie
gets a stale reply to some earlier request): each cookie is a random per-client prefix
plus a counter. Replies are matched to requests by cookie only; a reply whose cookie is
not pending (a duplicate, or a late answer to a request that already timed out) is
dropped and counted.

Defaults for a B2BUA that anchors every call (``offer``/``answer``), and why:

- ``"replace": ["origin", "session-connection"]``: the ``o=`` and session ``c=`` addresses
  become rtpengine's, so neither party learns the other's IP address from the SDP, which is
  the point of number masking. rtpengine 10.5 leaves the ``o=`` user name and the ``s=``
  line as the offerer sent them (its ``username``/``session-name`` replace flags keep them
  stable rather than hide them), so the B2BUA scrubs those itself.
- ``"ICE": "remove"``: SIP trunks do not do ICE, and ICE candidates list the far party's
  addresses, which would defeat the masking and let media bypass the anchor.
- no ``direction``: there is one interface (loopback or the one the managed rtpengine is
  given); ``direction`` only selects between several named interfaces.
- ``delete`` sends ``"delete delay": 0``: once the B2BUA deletes a call it is over, and
  rtpengine's default 30 s grace period would keep its ports allocated for nothing.

Errors: a reply with ``result`` other than ``ok`` (or ``pong`` for ``ping``) raises
``RtpengineError`` with rtpengine's ``error-reason`` (``load limit`` replies, which carry an
optional ``message`` instead, too); no reply within ``timeout_s`` raises
``RtpengineUnavailable``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from callmask.media.bencode import BencodeError, decode, encode

__all__ = [
    "DEFAULT_ICE",
    "DEFAULT_REPLACE",
    "RtpengineClient",
    "RtpengineError",
    "RtpengineUnavailable",
    "packet_counts",
]

logger = logging.getLogger(__name__)

DEFAULT_REPLACE: tuple[str, ...] = ("origin", "session-connection")
DEFAULT_ICE = "remove"

WIRES = ("json", "bencode")

# Largest UDP payload over IPv4 (65,535 minus the 20-byte IP and 8-byte UDP headers).
_MAX_DATAGRAM_BYTES = 65_507


class RtpengineError(Exception):
    """rtpengine answered, but not with success: ``result`` was ``error`` (or ``load limit``)."""

    def __init__(self, reason: str, *, result: str = "error", command: str | None = None) -> None:
        super().__init__(reason if command is None else f"{command}: {reason}")
        self.reason = reason
        self.result = result
        self.command = command


class RtpengineUnavailable(RtpengineError):
    """No reply from rtpengine within the timeout, or the client's socket is closed."""

    def __init__(self, reason: str, *, command: str | None = None) -> None:
        super().__init__(reason, result="unavailable", command=command)


class _NgProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: RtpengineClient) -> None:
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._client._reply_received(data)

    def error_received(self, exc: Exception) -> None:
        # The socket is connected, so an ICMP port-unreachable (rtpengine not running or
        # restarting) surfaces here. Retransmission continues until the request times out,
        # which covers a restart by the supervisor.
        logger.debug("ng socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._transport_lost(exc)


class RtpengineClient:
    """One UDP socket to one rtpengine ng listener; any number of requests in flight."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        timeout_s: float = 2.0,
        retransmit_s: float = 0.5,
        wire: str | None = None,
    ) -> None:
        """``wire`` fixes the form of requests (``json`` or ``bencode``); ``None`` finds
        it out with ``negotiate`` before the first request."""
        if timeout_s <= 0 or retransmit_s <= 0:
            raise ValueError("timeout_s and retransmit_s must be positive")
        if wire not in (None, *WIRES):
            raise ValueError(f"wire must be one of {WIRES} or None, not {wire!r}")
        self.address = address
        self.timeout_s = timeout_s
        self.retransmit_s = retransmit_s
        self._transport: asyncio.DatagramTransport | None = None
        # Requests in flight by cookie, with the form their reply must come in.
        self._pending: dict[bytes, tuple[asyncio.Future[dict[str, object]], str]] = {}
        self._cookie_prefix = secrets.token_hex(6)
        self._cookie_counter = itertools.count(1)
        self.wire = wire  # "json" or "bencode", once known
        self._negotiating: asyncio.Future[str] | None = None
        # Counters for metrics and tests.
        self.requests_sent = 0
        self.retransmissions = 0
        self.timeouts = 0
        self.unmatched_replies = 0

    async def open(self) -> None:
        """Open the socket, connected to ``address`` so only its replies are received.

        The kernel picks the source address: 127.0.0.1 for a loopback rtpengine.
        """
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _NgProtocol(self), remote_addr=self.address
        )
        self._transport = transport

    async def close(self) -> None:
        """Close the socket; requests still waiting fail with ``RtpengineUnavailable``."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._fail_pending("client closed")

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def request(self, command: dict[str, object]) -> dict[str, object]:
        """Send one ng command and return rtpengine's reply dictionary.

        Raises ``RtpengineError`` if the reply's ``result`` is not ``ok``/``pong`` and
        ``RtpengineUnavailable`` if no reply arrives within ``timeout_s``.
        """
        wire = self.wire or await self.negotiate()
        return await self._send(command, wire)

    async def negotiate(self) -> str:
        """Ask rtpengine, with a JSON ``ping``, whether it takes JSON; every request uses
        the form found from then on. Returns ``json`` or ``bencode``. Raises
        ``RtpengineUnavailable`` if rtpengine answers neither (the next request asks
        again). Requests made before it is known wait for one negotiation."""
        if self.wire is not None:
            return self.wire
        if self._negotiating is not None:
            return await asyncio.shield(self._negotiating)
        self._negotiating = asyncio.get_running_loop().create_future()
        try:
            self.wire = await self._probe()
        except BaseException as exc:
            self._negotiating.set_exception(exc)
            self._negotiating.exception()  # retrieved here: waiters, if any, re-raise it
            raise
        else:
            self._negotiating.set_result(self.wire)
        finally:
            self._negotiating = None
        return self.wire

    async def _probe(self) -> str:
        ping: dict[str, object] = {"command": "ping"}
        try:
            await self._send(ping, "json")
        except RtpengineError as exc:
            await self._send(ping, "bencode")
            logger.info("rtpengine at %s:%d speaks bencode only (%s)", *self.address, exc)
            return "bencode"
        return "json"

    async def _send(self, command: dict[str, object], wire: str) -> dict[str, object]:
        transport = self._transport
        if transport is None:
            raise RuntimeError("RtpengineClient.open() must be awaited before requests")
        name = str(command.get("command", ""))
        cookie = f"{self._cookie_prefix}_{next(self._cookie_counter)}".encode("ascii")
        datagram = cookie + b" " + (_json(command) if wire == "json" else encode(command))
        if len(datagram) > _MAX_DATAGRAM_BYTES:
            raise RtpengineError(
                f"request of {len(datagram)} bytes does not fit in one UDP datagram",
                command=name,
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, object]] = loop.create_future()
        self._pending[cookie] = (future, wire)
        transport.sendto(datagram)
        self.requests_sent += 1
        # One timer per request re-sends the datagram every retransmit_s and fails the
        # future at timeout_s; awaiting the future alone costs a fraction of what
        # asyncio.wait with a timeout did on every request.
        retry = _Retransmission(self, transport, datagram, future, name, loop.time())
        try:
            reply = await future
        finally:
            retry.cancel()
            self._pending.pop(cookie, None)
        return _checked(name, reply)

    async def ping(self) -> None:
        reply = await self.request({"command": "ping"})
        if reply.get("result") != "pong":
            raise RtpengineError(f"ping answered {reply.get('result')!r}", command="ping")

    async def offer(
        self,
        call_id: str,
        from_tag: str,
        sdp: str,
        *,
        flags: Sequence[str] = (),
        extra: Mapping[str, object] | None = None,
    ) -> str:
        """Anchor the offerer's media; return the SDP to forward to the answerer."""
        command: dict[str, object] = {
            "command": "offer",
            "call-id": call_id,
            "from-tag": from_tag,
            "sdp": sdp,
        }
        return _sdp_of("offer", await self.request(_with_defaults(command, flags, extra)))

    async def answer(
        self,
        call_id: str,
        from_tag: str,
        to_tag: str,
        sdp: str,
        *,
        flags: Sequence[str] = (),
        extra: Mapping[str, object] | None = None,
    ) -> str:
        """Anchor the answerer's media; return the SDP to forward to the offerer."""
        command: dict[str, object] = {
            "command": "answer",
            "call-id": call_id,
            "from-tag": from_tag,
            "to-tag": to_tag,
            "sdp": sdp,
        }
        return _sdp_of("answer", await self.request(_with_defaults(command, flags, extra)))

    async def delete(self, call_id: str, from_tag: str | None = None) -> dict[str, object]:
        """Tear the call down at once and return its statistics (see ``packet_counts``).

        rtpengine 10.5 includes statistics in the delete reply only when a ``from-tag`` is
        given; without one, the call is queried first so the caller still gets them. An
        unknown call is not an error: the reply is ``ok`` with a ``warning``.
        """
        command: dict[str, object] = {"command": "delete", "call-id": call_id, "delete delay": 0}
        if from_tag is not None:
            command["from-tag"] = from_tag
            return await self.request(command)
        try:
            stats = await self.query(call_id)
        except RtpengineUnavailable:
            raise
        except RtpengineError:
            # Unknown call: let the delete itself say so (ok with a warning).
            return await self.request(command)
        reply = await self.request(command)
        return {**stats, **reply}

    async def query(self, call_id: str) -> dict[str, object]:
        return await self.request({"command": "query", "call-id": call_id})

    async def play_media(self, call_id: str, from_tag: str, file: str) -> int:
        """Play ``file`` (a path rtpengine can read) to the participant ``from_tag``.

        Returns the file's duration in milliseconds as rtpengine reports it. A reply
        without ``duration`` raises ``RtpengineError``: callers schedule the end of an
        announcement from it, and guessing would cut it short or leave dead air.
        """
        reply = await self.request(
            {"command": "play media", "call-id": call_id, "from-tag": from_tag, "file": file}
        )
        duration_ms = reply.get("duration")
        if not isinstance(duration_ms, int) or duration_ms < 0:
            raise RtpengineError(
                f"reply has no usable duration: {duration_ms!r}",
                result=str(reply.get("result")),
                command="play media",
            )
        return duration_ms

    async def start_recording(self, call_id: str) -> None:
        """Record every stream of the call from now on (rtpengine's pcap recording,
        ``--recording-method=pcap``: one file per call under its ``--recording-dir``,
        closed when the call is deleted). An rtpengine started without a recording
        directory answers an error, which raises ``RtpengineError``."""
        await self.request({"command": "start recording", "call-id": call_id})

    async def block_media(self, call_id: str) -> None:
        """Stop forwarding every participant's media (call-wide: also the media of a
        participant not answered yet). DTMF events and ``play media`` still go out."""
        await self.request({"command": "block media", "call-id": call_id})

    async def unblock_media(self, call_id: str) -> None:
        await self.request({"command": "unblock media", "call-id": call_id})

    async def stop_media(self, call_id: str, from_tag: str) -> None:
        await self.request({"command": "stop media", "call-id": call_id, "from-tag": from_tag})

    def _reply_received(self, data: bytes) -> None:
        cookie, separator, body = data.partition(b" ")
        pending = self._pending.get(cookie) if separator else None
        if pending is None or pending[0].done():
            # Duplicate reply to a retransmission, a reply after the timeout, or junk.
            self.unmatched_replies += 1
            logger.debug("dropped unmatched ng datagram (%d bytes)", len(data))
            return
        future, wire = pending
        if (body[:1] == b"{") != (wire == "json"):
            # rtpengine answers in the form it was asked in; one that does not, does
            # not understand that form (negotiate() relies on this).
            future.set_exception(
                RtpengineError(f"reply is not in {wire}: {body[:40]!r}", result="malformed")
            )
            return
        try:
            reply = json.loads(body) if wire == "json" else decode(body)
        except (BencodeError, ValueError) as exc:
            future.set_exception(RtpengineError(f"malformed reply: {exc}", result="malformed"))
            return
        if not isinstance(reply, dict):
            future.set_exception(RtpengineError("reply is not a dictionary", result="malformed"))
            return
        # A fresh dict typed for callers, who read it as plain ``dict[str, object]``.
        result: dict[str, object] = dict(reply)
        future.set_result(result)

    def _transport_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            logger.warning("ng socket lost: %s", exc)
        self._transport = None
        self._fail_pending("ng socket closed")

    def _fail_pending(self, reason: str) -> None:
        for future, _wire in self._pending.values():
            if not future.done():
                future.set_exception(RtpengineUnavailable(reason))


class _Retransmission:
    """The timer of one request in flight (see ``RtpengineClient.request``)."""

    __slots__ = ("client", "datagram", "deadline", "future", "handle", "name", "transport")

    def __init__(
        self,
        client: RtpengineClient,
        transport: asyncio.DatagramTransport,
        datagram: bytes,
        future: asyncio.Future[dict[str, object]],
        name: str,
        now: float,
    ) -> None:
        self.client = client
        self.transport = transport
        self.datagram = datagram
        self.future = future
        self.name = name
        self.deadline = now + client.timeout_s
        self.handle = future.get_loop().call_at(
            min(now + client.retransmit_s, self.deadline), self._fire
        )

    def cancel(self) -> None:
        self.handle.cancel()

    def _fire(self) -> None:
        if self.future.done():
            return
        client = self.client
        loop = self.future.get_loop()
        now = loop.time()
        if now >= self.deadline:
            client.timeouts += 1
            address = client.address
            self.future.set_exception(
                RtpengineUnavailable(
                    f"no reply from rtpengine at {address[0]}:{address[1]} "
                    f"within {client.timeout_s:g} s",
                    command=self.name,
                )
            )
            return
        if client._transport is not self.transport:
            self.future.set_exception(RtpengineUnavailable("client closed", command=self.name))
            return
        self.transport.sendto(self.datagram)
        client.retransmissions += 1
        self.handle = loop.call_at(min(now + client.retransmit_s, self.deadline), self._fire)


def _json(command: Mapping[str, object]) -> bytes:
    """The JSON form of a request, compact. Unlike ``encode`` it does not refuse
    booleans, floats or nulls; the commands this client builds hold none (strings,
    integers, lists and dictionaries only, what bencode carries too)."""
    try:
        return json.dumps(command, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise RtpengineError(f"request cannot be sent as JSON: {exc}") from exc


def _with_defaults(
    command: dict[str, object], flags: Sequence[str], extra: Mapping[str, object] | None
) -> dict[str, object]:
    command["replace"] = list(DEFAULT_REPLACE)
    command["ICE"] = DEFAULT_ICE
    if flags:
        command["flags"] = list(flags)
    if extra:
        # The caller's keys win, so any default above can be overridden per call.
        command.update(extra)
    return command


def _checked(name: str, reply: dict[str, object]) -> dict[str, object]:
    result = reply.get("result")
    if result == "ok" or (result == "pong" and name == "ping"):
        warning = reply.get("warning")
        if warning is not None:
            logger.info("rtpengine %s warning: %s", name, warning)
        return reply
    if result == "error":
        reason = reply.get("error-reason")
        raise RtpengineError(
            str(reason) if reason is not None else "error without error-reason", command=name
        )
    # "load limit" (the ng extension a client opts into with "supports") or anything new.
    message = reply.get("message") or reply.get("error-reason") or f"result {result!r}"
    raise RtpengineError(str(message), result=str(result), command=name)


def _sdp_of(name: str, reply: dict[str, object]) -> str:
    sdp = reply.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise RtpengineError("reply carries no SDP", result="malformed", command=name)
    return sdp


def packet_counts(reply: Mapping[str, object]) -> dict[str, int]:
    """Packets rtpengine received from each participant (by SIP tag), from a query or
    delete reply.

    Counts the RTP streams of every media of a tag (``tags -> medias -> streams -> stats
    -> packets``) and skips RTCP-only streams, so the number is how much media that
    party sent. Parts of the reply that do not have the documented shape are ignored,
    never an error: this feeds CDRs and must not fail a hangup.
    """
    counts: dict[str, int] = {}
    tags = reply.get("tags")
    if not isinstance(tags, Mapping):
        return counts
    for tag, monologue in tags.items():
        if not isinstance(tag, str) or not isinstance(monologue, Mapping):
            continue
        total = 0
        for media in _mappings(monologue.get("medias")):
            for stream in _mappings(media.get("streams")):
                flags = stream.get("flags")
                if isinstance(flags, list) and "RTCP" in flags and "RTP" not in flags:
                    continue
                stats = stream.get("stats")
                packets = stats.get("packets") if isinstance(stats, Mapping) else None
                if isinstance(packets, int) and not isinstance(packets, bool):
                    total += packets
        counts[tag] = total
    return counts


def _mappings(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]
