"""An in-memory SIP network for call-flow tests: the node's real SIP core and call
engine, with carriers on both sides that are plain ``TransactionLayer``s too, and
messages carried between them as bytes on the event loop instead of UDP.

Every message is serialised and parsed again on delivery, as on a wire, so what the
tests see is what a carrier would see. Delivery is ``call_soon``: a message is never
handled inside the call that sent it. With looptime's fake clock (the ``looptime``
marker) the SIP timers, ring timeouts and callback deadlines run in no real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from callmask.calls.endpoint import SipEndpoint
from callmask.calls.engine import CallEngine
from callmask.config import Settings
from callmask.errors import InvalidInput
from callmask.phone import normalise
from callmask.routing.decisions import Decision
from callmask.routing.route import Report
from callmask.sip.message import (
    Headers,
    Request,
    Response,
    make_response,
    new_branch,
    new_tag,
    parse_message,
)
from callmask.sip.transaction import (
    Address,
    Event,
    Outgoing,
    RequestReceived,
    ResponseReceived,
)
from callmask.store.database import Database

NODE: Address = ("127.0.0.1", 5060)
TRUNK: Address = ("127.0.0.1", 5080)  # the carrier's side that takes outbound legs
CARRIER: Address = ("127.0.0.3", 5060)  # the carrier's side that delivers inbound calls

SDP_OFFER = (
    "v=0\r\no=carrier 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


class MemoryNetwork:
    def __init__(self) -> None:
        self.hosts: dict[Address, MemoryEndpoint] = {}
        self.carried: list[tuple[Address, Address, Request | Response]] = []

    def deliver(self, data: bytes, source: Address, destination: Address) -> None:
        peer = self.hosts.get(destination)
        self.carried.append((source, destination, parse_message(data)))
        if peer is not None:
            asyncio.get_running_loop().call_soon(peer.receive_datagram, data, source)

    def requests(self, method: str, to: Address) -> list[Request]:
        return [
            message
            for _source, destination, message in self.carried
            if isinstance(message, Request) and message.method == method and destination == to
        ]


class MemoryEndpoint(SipEndpoint):
    """The node's ``SipEndpoint`` with its sockets replaced by the in-memory network."""

    def __init__(
        self, network: MemoryNetwork, address: Address, on_event: Callable[[Event], None]
    ) -> None:
        super().__init__(address[0], address[1], on_event)
        self.network = network

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.network.hosts[(self.host, self.port)] = self

    def receive_datagram(self, data: bytes, source: Address) -> None:
        self.receive_bytes(data, source, reliable=False)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.network.hosts.pop((self.host, self.port), None)

    def _send(self, outgoing: Outgoing) -> None:
        self.counters.sent += 1
        self.network.deliver(outgoing.data, (self.host, self.port), outgoing.destination)


class Peer:
    """A carrier-side user agent: its own transaction layer on the network, every event
    it gets kept in a queue for the test (or its script) to take."""

    def __init__(self, network: MemoryNetwork, address: Address) -> None:
        self.address = address
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.endpoint = MemoryEndpoint(network, address, self.on_event)

    def on_event(self, event: Event) -> None:
        self.events.put_nowait(event)

    async def next(self, kind: type[Event], timeout_s: float = 120) -> Event:
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.events.get()
                if isinstance(event, kind):
                    return event


@dataclass
class FarEndScript:
    """What the called party does with an INVITE: provisional codes first, then a final
    code (None: never answers; it then takes a CANCEL with 487)."""

    provisional: tuple[int, ...] = (180,)
    final: int | None = 200
    answer_after_s: float = 0.5
    hang_up_after_s: float | None = None  # BYE from the called party once answered


@dataclass
class FarEnd(Peer):
    """The trunk's side that takes callmask's outbound legs and plays a script."""

    def __init__(self, network: MemoryNetwork, script: FarEndScript | None = None) -> None:
        super().__init__(network, TRUNK)
        self.script = script or FarEndScript()
        self.invites: list[Request] = []
        self.byes: list[Request] = []
        self.cancels: list[Request] = []
        self._pending: dict[str, Request] = {}  # INVITE transaction key -> request
        self._tasks: set[asyncio.Task[None]] = set()

    def on_event(self, event: Event) -> None:
        super().on_event(event)
        if not isinstance(event, RequestReceived):
            return
        request = event.request
        match request.method:
            case "INVITE" if not request.to_tag:
                self.invites.append(request)
                self._pending[event.key] = request
                task = asyncio.get_running_loop().create_task(self._play(event.key, request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            case "CANCEL":
                self.cancels.append(request)
                invite_key = self.endpoint.layer.matching_invite(request)
                self.endpoint.send_response(event.key, make_response(request, 200))
                invite = self._pending.pop(invite_key or "", None)
                if invite_key is not None and invite is not None:
                    self.endpoint.send_response(
                        invite_key, make_response(invite, 487, to_tag="far")
                    )
            case "BYE":
                self.byes.append(request)
                self.endpoint.send_response(event.key, make_response(request, 200))
            case _:
                self.endpoint.send_response(event.key, make_response(request, 200))

    async def _play(self, key: str, invite: Request) -> None:
        script = self.script
        for code in script.provisional:
            self.endpoint.send_response(key, make_response(invite, code, to_tag="far"))
        await asyncio.sleep(script.answer_after_s)
        if script.final is None or key not in self._pending:
            return
        del self._pending[key]
        body = SDP_OFFER.format(host=TRUNK[0], port=40000).encode() if script.final < 300 else b""
        headers = [("Contact", f"<sip:far@{TRUNK[0]}:{TRUNK[1]}>")] if body else []
        if body:
            headers.append(("Content-Type", "application/sdp"))
        self.endpoint.send_response(
            key, make_response(invite, script.final, to_tag="far", headers=headers, body=body)
        )
        if script.final < 300 and script.hang_up_after_s is not None:
            await asyncio.sleep(script.hang_up_after_s)
            bye = in_dialog(
                invite.call_id,
                "BYE",
                TRUNK,
                from_=(invite.headers.get("To") or "") + ";tag=far",
                to=invite.headers.get("From") or "",
                uri=target_of(invite.headers.get("Contact"), NODE),
            )
            self.endpoint.send_request(bye, NODE, False)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.endpoint.close()


_cseq = itertools.count(2)


def target_of(contact: str | None, default: Address) -> str:
    """The URI inside a Contact header value."""
    value = (contact or "").strip()
    if "<" in value:
        return value[value.index("<") + 1 : value.index(">")]
    return value or f"sip:{default[0]}:{default[1]}"


def in_dialog(
    call_id: str,
    method: str,
    via: Address,
    *,
    from_: str,
    to: str,
    uri: str,
    cseq: int | None = None,
) -> Request:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP {via[0]}:{via[1]};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", from_),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq if cseq is not None else next(_cseq)} {method}"),
        ]
    )
    return Request(method, uri, headers)


class Caller(Peer):
    """The carrier delivering a call from ``caller`` to one of the customer's DIDs."""

    def __init__(self, network: MemoryNetwork) -> None:
        super().__init__(network, CARRIER)
        self.invite: Request | None = None
        self.key: str | None = None
        self.answer: Response | None = None
        self.responses: list[int] = []

    def on_event(self, event: Event) -> None:
        super().on_event(event)
        match event:
            case ResponseReceived(response=response) if response.cseq[1] == "INVITE":
                self.responses.append(response.status)
                if 200 <= response.status < 300 and self.key is not None:
                    self.answer = response
                    self.endpoint.send_ack(self.key, self._ack(response), NODE, False)
            case RequestReceived(key=key, request=request):
                self.endpoint.send_response(key, make_response(request, 200))
            case _:
                pass

    def call(self, did: str, caller: str) -> None:
        tag = new_tag()
        headers = Headers(
            [
                ("Via", f"SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{caller}@{CARRIER[0]}>;tag={tag}"),
                ("To", f"<sip:{did}@{NODE[0]}>"),
                ("Call-ID", new_tag() + new_tag()),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<sip:{caller}@{CARRIER[0]}:{CARRIER[1]}>"),
                ("Content-Type", "application/sdp"),
            ]
        )
        body = SDP_OFFER.format(host=CARRIER[0], port=30000).encode()
        self.invite = Request("INVITE", f"sip:{did}@{NODE[0]}:{NODE[1]}", headers, body)
        self.key = self.endpoint.send_request(self.invite, NODE, False)

    def _in_dialog(self, method: str, cseq: int | None = None) -> Request:
        assert self.invite is not None and self.answer is not None
        return in_dialog(
            self.invite.call_id,
            method,
            CARRIER,
            from_=self.invite.headers.get("From") or "",
            to=self.answer.headers.get("To") or "",
            uri=target_of(self.answer.headers.get("Contact"), NODE),
            cseq=cseq,
        )

    def _ack(self, response: Response) -> Request:
        self.answer = response
        return self._in_dialog("ACK", cseq=1)

    def cancel(self) -> None:
        assert self.invite is not None
        headers = Headers(
            [
                ("Via", self.invite.headers.get("Via") or ""),
                ("Max-Forwards", "70"),
                ("From", self.invite.headers.get("From") or ""),
                ("To", self.invite.headers.get("To") or ""),
                ("Call-ID", self.invite.call_id),
                ("CSeq", "1 CANCEL"),
            ]
        )
        self.endpoint.send_request(Request("CANCEL", self.invite.uri, headers), NODE, False)

    def hang_up(self) -> None:
        self.endpoint.send_request(self._in_dialog("BYE"), NODE, False)

    def press(self, digits: str) -> None:
        """Each digit as a SIP INFO (application/dtmf-relay), as gateways send them."""
        for digit in digits:
            request = self._in_dialog("INFO")
            request.headers.set("Content-Type", "application/dtmf-relay")
            body = f"Signal={digit}\r\nDuration=160\r\n".encode()
            self.endpoint.send_request(
                Request("INFO", request.uri, request.headers, body), NODE, False
            )

    async def final(self, timeout_s: float = 300) -> int:
        async with asyncio.timeout(timeout_s):
            while not self.responses or self.responses[-1] < 200:
                await self.events.get()
        return self.responses[-1]


@dataclass
class ScriptedRouting:
    """A routing object (``CallRouting``) that answers from the test."""

    answer: Callable[[], Decision]
    delay_s: float = 0.0
    account_id: str = "account"
    did: str = ""
    action_key: str | None = "action"
    service: str = "number_masking"
    asked: int = 0

    async def decide(self, summary: object) -> Decision:
        self.asked += 1
        await asyncio.sleep(self.delay_s)
        return self.answer()

    def report(self, summary: object) -> Report | None:
        return None

    def ended(self, summary: object) -> None:
        return None


@dataclass
class ScriptedTable:
    """The routing table: every DID routes through ``routing``."""

    routing: ScriptedRouting

    def did_of(self, user: str | None) -> str | None:
        try:
            return normalise(user or "", None)
        except InvalidInput:
            return None

    async def find(self, caller: str, did: str) -> ScriptedRouting | None:
        self.routing.did = did
        return self.routing

    def close(self) -> None:
        pass


@dataclass
class FakeMedia:
    """rtpengine's ng commands, answered at once with an anchor of its own."""

    commands: list[tuple[str, str]] = field(default_factory=list)

    async def offer(self, call_id: str, from_tag: str, sdp: str) -> str:
        self.commands.append(("offer", from_tag))
        return SDP_OFFER.format(host="127.0.0.1", port=20000)

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        self.commands.append(("answer", to_tag))
        return SDP_OFFER.format(host="127.0.0.1", port=20002)

    async def delete(self, call_id: str, from_tag: str | None = None) -> dict[str, object]:
        self.commands.append(("delete", from_tag or ""))
        return {}

    async def play_media(self, call_id: str, from_tag: str, file: str) -> int:
        self.commands.append(("play media", file))
        return 2000

    async def start_recording(self, call_id: str) -> None:
        self.commands.append(("start recording", call_id))

    async def block_media(self, call_id: str) -> None:
        self.commands.append(("block media", call_id))

    async def unblock_media(self, call_id: str) -> None:
        self.commands.append(("unblock media", call_id))


@contextlib.asynccontextmanager
async def running_engine(
    settings: Settings,
    database: Database,
    network: MemoryNetwork,
    table: ScriptedTable,
    *,
    seed: int = 3261,
) -> AsyncIterator[tuple[CallEngine, FakeMedia]]:
    """The engine on the in-memory network. Its branches, tags and Call-IDs come from
    ``random.Random(seed)``, so a failing run's messages are the same when run again."""
    media = FakeMedia()
    identities = random.Random(seed)
    engine = CallEngine(
        settings,
        database,
        http=None,  # type: ignore[arg-type]  # routing is scripted: no HTTP
        media=media,
        audio_dir=Path(settings.data_dir) / "files",
        endpoint=lambda on_event: MemoryEndpoint(network, NODE, on_event),
        routing=table,  # type: ignore[arg-type]
        random_hex=lambda n: identities.randbytes(n).hex(),
    )
    task = asyncio.get_running_loop().create_task(engine.serve())
    await engine.ready.wait()
    try:
        yield engine, media
    finally:
        engine.stop()
        await task
