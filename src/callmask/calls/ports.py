"""The seam between the call engine and a call: everything a call may use, as small
typed protocols, handed to it at construction.

A call never sees the engine. It places legs and sends ACKs through ``LegFactory``,
has its SIP events routed to it through ``CallRegistry``, anchors media through
``MediaRelay``, records its life through ``CallBook`` (open, answered, finished: the
ledger), asks its dialect through ``Admission`` and finds its audio through
``Prompts``. The engine implements them on a live node; the in-memory call-flow tests
implement them with an in-memory SIP network, a fake media relay and a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from callmask.routing.decisions import Decision
from callmask.routing.route import CallRouting
from callmask.sip.message import Request
from callmask.sip.transaction import Address

if TYPE_CHECKING:
    from callmask.calls.base import CallBase
    from callmask.calls.call import InboundCall
    from callmask.calls.legs import LocalAddress, OutboundLeg


class MediaRelay(Protocol):
    """What a call needs from the media anchor (rtpengine's ng commands)."""

    async def offer(self, call_id: str, from_tag: str, sdp: str) -> str: ...
    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str: ...
    async def delete(self, call_id: str, from_tag: str | None = None) -> dict[str, object]: ...
    async def play_media(self, call_id: str, from_tag: str, file: str) -> int: ...
    async def start_recording(self, call_id: str) -> None: ...
    async def block_media(self, call_id: str) -> None: ...
    async def unblock_media(self, call_id: str) -> None: ...


class LegFactory(Protocol):
    @property
    def local(self) -> LocalAddress: ...

    def outbound(self, number: str, caller_id: str, sdp: bytes) -> OutboundLeg:
        """A new leg to the trunk (not yet started)."""
        ...

    def send_ack(self, key: str, ack: Request, destination: Address, reliable: bool) -> None: ...


class CallRegistry(Protocol):
    def track(self, key: str, call: CallBase) -> None:
        """Send this transaction's responses and timeouts to ``call``."""
        ...

    def register_sip_call_id(self, sip_call_id: str, call: CallBase) -> None:
        """Send in-dialog requests and ACKs of this Call-ID to ``call``."""
        ...


class CallBook(Protocol):
    def opened(self, call: CallBase) -> None:
        """Note the call as in progress (closed by another run if this node dies)."""
        ...

    def answered(self, call: CallBase) -> None: ...

    def finish(self, call: CallBase) -> None:
        """The call is over: forget it, write its CDR and the report it causes."""
        ...

    def observe_post_dial_delay(self, delay_s: float) -> None: ...


class Admission(Protocol):
    async def admit(self, call: InboundCall) -> CallRouting:
        """The call's routing, chosen once. Raises ``UnknownNumber``."""
        ...

    async def decide(self, call: InboundCall, routing: CallRouting) -> Decision:
        """What the customer wants done with the call. Raises ``RoutingFailed``."""
        ...


class Prompts(Protocol):
    async def render(self, text: str) -> Path:
        """``text`` spoken into an audio file rtpengine can play."""
        ...

    async def audio_path(self, account_id: str | None, file_id: str) -> Path | None:
        """The account's uploaded file, or None when it has no such file."""
        ...


@dataclass(frozen=True, slots=True)
class CallPorts:
    legs: LegFactory
    registry: CallRegistry
    media: MediaRelay
    book: CallBook
    admission: Admission
    prompts: Prompts
    ring_timeout_s: float
    media_counts: Callable[[dict[str, object]], dict[str, int]]
    node_id: str = ""  # names the node whose rtpengine records this node's calls
