"""Client for rtpengine's ng control protocol over UDP.

Follows rtpengine's "ng Control Protocol" document (docs/ng_control_protocol.md in
sipwise/rtpengine): every request is ``<cookie> <bencoded dictionary>`` in one datagram and
the reply carries the same cookie. UDP may lose either datagram, so a request is sent
again, byte for byte with the same cookie, every ``retransmit_s`` until ``timeout_s`` has
passed. That is safe for every command, ``offer`` included: rtpengine caches its reply per
cookie and answers a retransmission from the cache instead of executing it twice. The same
cache is why cookies must never repeat, not even across restarts of this process (a reused
cookie gets a stale reply to some earlier request): each cookie is a random per-client
prefix plus a counter. Replies are matched to requests by cookie only; a reply whose cookie
is not pending (a duplicate, or a late answer to a request that already timed out) is
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
        self, address: tuple[str, int], *, timeout_s: float = 2.0, retransmit_s: float = 0.5
    ) -> None:
        if timeout_s <= 0 or retransmit_s <= 0:
            raise ValueError("timeout_s and retransmit_s must be positive")
        self.address = address
        self.timeout_s = timeout_s
        self.retransmit_s = retransmit_s
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[bytes, asyncio.Future[dict[str, object]]] = {}
        self._cookie_prefix = secrets.token_hex(6)
        self._cookie_counter = itertools.count(1)
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
        transport = self._transport
        if transport is None:
            raise RuntimeError("RtpengineClient.open() must be awaited before requests")
        name = str(command.get("command", ""))
        cookie = f"{self._cookie_prefix}_{next(self._cookie_counter)}".encode("ascii")
        datagram = cookie + b" " + encode(command)
        if len(datagram) > _MAX_DATAGRAM_BYTES:
            raise RtpengineError(
                f"request of {len(datagram)} bytes does not fit in one UDP datagram",
                command=name,
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, object]] = loop.create_future()
        self._pending[cookie] = future
        deadline = loop.time() + self.timeout_s
        try:
            transport.sendto(datagram)
            self.requests_sent += 1
            while True:
                remaining_s = deadline - loop.time()
                if remaining_s > 0:
                    # asyncio.wait, unlike wait_for, leaves the future alone on timeout.
                    await asyncio.wait((future,), timeout=min(self.retransmit_s, remaining_s))
                if future.done():
                    break
                if loop.time() >= deadline:
                    self.timeouts += 1
                    raise RtpengineUnavailable(
                        f"no reply from rtpengine at {self.address[0]}:{self.address[1]} "
                        f"within {self.timeout_s:g} s",
                        command=name,
                    )
                if self._transport is not transport:
                    raise RtpengineUnavailable("client closed", command=name)
                transport.sendto(datagram)
                self.retransmissions += 1
        finally:
            self._pending.pop(cookie, None)
        return _checked(name, future.result())

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

    async def stop_media(self, call_id: str, from_tag: str) -> None:
        await self.request({"command": "stop media", "call-id": call_id, "from-tag": from_tag})

    def _reply_received(self, data: bytes) -> None:
        cookie, separator, body = data.partition(b" ")
        future = self._pending.get(cookie) if separator else None
        if future is None or future.done():
            # Duplicate reply to a retransmission, a reply after the timeout, or junk.
            self.unmatched_replies += 1
            logger.debug("dropped unmatched ng datagram (%d bytes)", len(data))
            return
        try:
            reply = decode(body)
        except BencodeError as exc:
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
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RtpengineUnavailable(reason))


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
