"""SIP transactions, sans-IO (RFC 3261 section 17, with RFC 6026 for 2xx to INVITE, RFC 3581).

A :class:`TransactionLayer` owns every client and server transaction of one SIP endpoint. It never
touches a socket or a clock: the transport hands it parsed messages with ``receive(..., now)``,
collects what to send with :meth:`~TransactionLayer.datagrams_to_send`, re-arms one timer at
:meth:`~TransactionLayer.get_timer` and calls :meth:`~TransactionLayer.handle_timer`; the TU
(the B2BUA) reads :meth:`~TransactionLayer.next_event` and answers with ``send_*`` calls.

Each of the four transaction kinds is a table ``(state, input) -> (next state, actions)`` below its
state diagram; an input missing from a table is absorbed (a late retransmission, a timer that no
longer matters). Beyond the bare section 17 machines the layer also does the few jobs that RFC 3261
gives to the transport or the TU core but that every user of this layer needs done the same way:

* server transport (18.2.1, RFC 3581): the top Via of a received request is stamped with
  ``received``/``rport`` so responses built with ``make_response`` carry them, and responses go to
  :meth:`Via.response_address` (UDP) or back over the connection they came on (reliable);
* UAS core (13.3.1.4): a 2xx to INVITE is retransmitted (T1, 2*T1, ... capped at T2) until the ACK
  matched by Call-ID/From-tag/To-tag/CSeq arrives (``AckReceived``) or 64*T1 passes
  (``AckTimedOut``). 13.3.1.4 does this on any transport, because the hop after the next one may be
  UDP; so do we;
* UAC core (9.1): a CANCEL sent before any provisional response is held back until one arrives,
  and dropped silently if a final response comes first; once a CANCEL is out, an INVITE that never
  gets its final response gives up after 64*T1 (``TransactionTimedOut``) instead of living forever.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from callmask.sip._grammar import SipParseError, replace_param
from callmask.sip.message import (
    MAGIC_COOKIE,
    Headers,
    Request,
    Response,
    branch_of,
    make_response,
    tag_of,
)
from callmask.sip.uri import Via

__all__ = [
    "AckReceived",
    "AckTimedOut",
    "Address",
    "Event",
    "InviteClientState",
    "InviteServerState",
    "NonInviteClientState",
    "NonInviteServerState",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponse",
    "Timers",
    "TransactionLayer",
    "TransactionTimedOut",
]

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 timer base values (table 4), in seconds.

    Derived: B = F = H = J = L = M = 64*T1; D = ``timer_d_s`` over unreliable transports (the RFC
    asks for at least 32 s), else 0; I = K = T4 over unreliable transports, else 0.
    """

    t1_s: float = 0.5
    t2_s: float = 4.0
    t4_s: float = 5.0
    timer_d_s: float = 32.0

    def __post_init__(self) -> None:
        # A zero T1 would re-arm retransmission timers at "now" forever.
        if not (
            self.t1_s > 0 and self.t2_s >= self.t1_s and self.t4_s >= 0 and self.timer_d_s >= 0
        ):
            raise ValueError("SIP timers need T1 > 0, T2 >= T1, T4 >= 0, D >= 0")

    @property
    def timeout_s(self) -> float:
        """64*T1: timers B, F, H, J (unreliable), L and M."""
        return 64 * self.t1_s


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Bytes to send; ``reliable`` means over the TCP connection to ``destination``."""

    data: bytes
    destination: Address
    reliable: bool


# ----------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new server transaction (any method but ACK, CANCEL included); answer with ``key``."""

    key: str
    request: Request
    source: Address
    reliable: bool


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx (end to end). ``key``: the INVITE server transaction it confirms, or
    None when no such transaction is known any more (or never was)."""

    request: Request
    source: Address
    key: str | None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response on client transaction ``key``; ``retransmission`` marks a repeated 2xx."""

    key: str
    response: Response
    retransmission: bool


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B or F fired (or a cancelled INVITE never got its final response): treat as 408."""

    key: str


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """A 2xx to INVITE got no ACK within 64*T1: the TU should send BYE (13.3.1.4)."""

    key: str


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matched no client transaction (17.1.3); a stray 2xx may need ACK+BYE."""

    response: Response
    source: Address


Event = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | TransactionTimedOut
    | AckTimedOut
    | StrayResponse
)


# ------------------------------------------------------------------------ inputs and actions


class Input(enum.Enum):
    """What can happen to a transaction: received messages, TU sends, timers."""

    PROVISIONAL = "1xx received"
    SUCCESS = "2xx received"
    FAILURE = "3xx-6xx received"
    REQUEST = "request retransmission received"
    ACK = "ACK received"
    SEND_PROVISIONAL = "TU sends 1xx"
    SEND_SUCCESS = "TU sends 2xx"
    SEND_FAILURE = "TU sends 3xx-6xx"
    TIMER_A = "A"
    TIMER_B = "B"
    TIMER_D = "D"
    TIMER_E = "E"
    TIMER_F = "F"
    TIMER_G = "G"
    TIMER_H = "H"
    TIMER_I = "I"
    TIMER_J = "J"
    TIMER_K = "K"
    TIMER_L = "L"
    TIMER_M = "M"
    TIMER_2XX = "2xx retransmission (13.3.1.4)"
    TIMER_CANCEL = "cancelled INVITE gives up (9.1)"


class Action(enum.Enum):
    SEND_REQUEST = enum.auto()
    PASS_UP_RESPONSE = enum.auto()
    SEND_ACK = enum.auto()
    RESEND_ACK_2XX = enum.auto()
    REPORT_TIMEOUT = enum.auto()
    SEND_RESPONSE = enum.auto()
    RESEND_RESPONSE = enum.auto()
    REPORT_ACK = enum.auto()
    REPORT_ACK_TIMEOUT = enum.auto()
    STOP_TIMER_2XX = enum.auto()
    FLUSH_CANCEL = enum.auto()
    DROP_CANCEL = enum.auto()
    RESTART_TIMER_A = enum.auto()
    RESTART_TIMER_E = enum.auto()
    RESTART_TIMER_E_T2 = enum.auto()
    RESTART_TIMER_G = enum.auto()
    RESTART_TIMER_2XX = enum.auto()
    START_TIMER_D = enum.auto()
    START_TIMER_K = enum.auto()
    START_TIMER_M = enum.auto()
    START_TIMER_G = enum.auto()
    START_TIMER_H = enum.auto()
    START_TIMER_I = enum.auto()
    START_TIMER_J = enum.auto()
    START_TIMER_L = enum.auto()
    START_TIMER_2XX = enum.auto()


_Table = Mapping[tuple[enum.Enum, Input], tuple[enum.Enum, tuple[Action, ...]]]
A = Action


# ------------------------------------------------------------------ INVITE client (17.1.1)
#
#                      |INVITE from TU, Timer A fires: retransmit (UDP), Timer B: 408 to TU
#                      V
#                  +-----------+  Timer B / -
#        +---------|  Calling  |-------------------------------+
#        |  2xx    +-----------+   300-699: ACK, to TU          |
#        |  to TU       | 1xx to TU  (CANCEL held back is sent)  |
#        |              V                                       |
#        |         +-----------+ 1xx to TU                      |
#        |<--------| Proceeding|----------------------+         |
#        |   2xx   +-----------+   300-699: ACK, to TU |        |
#        |  to TU       | 9.1: 64*T1 after CANCEL: 408 V        |
#        V              |                       +-----------+   |
#  +-----------+        |                       | Completed |   |  300-699: ACK again
#  | Accepted  |        |                       +-----------+   |
#  +-----------+        |                  Timer D (32 s/0)|    |
#  2xx to TU (retransmission=True,                        V    V
#  TU's ACK resent), Timer M ---------------------> Terminated
#
# RFC 6026 replaced "2xx: Terminated" by the Accepted state so 2xx retransmissions reach the TU.
class InviteClientState(enum.Enum):
    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


_IC = InviteClientState
_INVITE_CLIENT: _Table = {
    (_IC.CALLING, Input.TIMER_A): (_IC.CALLING, (A.SEND_REQUEST, A.RESTART_TIMER_A)),
    (_IC.CALLING, Input.TIMER_B): (_IC.TERMINATED, (A.REPORT_TIMEOUT,)),
    (_IC.CALLING, Input.PROVISIONAL): (_IC.PROCEEDING, (A.PASS_UP_RESPONSE, A.FLUSH_CANCEL)),
    (_IC.CALLING, Input.SUCCESS): (
        _IC.ACCEPTED,
        (A.PASS_UP_RESPONSE, A.START_TIMER_M, A.DROP_CANCEL),
    ),
    (_IC.CALLING, Input.FAILURE): (
        _IC.COMPLETED,
        (A.SEND_ACK, A.PASS_UP_RESPONSE, A.START_TIMER_D, A.DROP_CANCEL),
    ),
    (_IC.PROCEEDING, Input.PROVISIONAL): (_IC.PROCEEDING, (A.PASS_UP_RESPONSE,)),
    (_IC.PROCEEDING, Input.SUCCESS): (_IC.ACCEPTED, (A.PASS_UP_RESPONSE, A.START_TIMER_M)),
    (_IC.PROCEEDING, Input.FAILURE): (
        _IC.COMPLETED,
        (A.SEND_ACK, A.PASS_UP_RESPONSE, A.START_TIMER_D),
    ),
    (_IC.PROCEEDING, Input.TIMER_CANCEL): (_IC.TERMINATED, (A.REPORT_TIMEOUT,)),
    (_IC.COMPLETED, Input.FAILURE): (_IC.COMPLETED, (A.SEND_ACK,)),
    (_IC.COMPLETED, Input.TIMER_D): (_IC.TERMINATED, ()),
    (_IC.ACCEPTED, Input.SUCCESS): (_IC.ACCEPTED, (A.PASS_UP_RESPONSE, A.RESEND_ACK_2XX)),
    (_IC.ACCEPTED, Input.TIMER_M): (_IC.TERMINATED, ()),
}


# -------------------------------------------------------------- non-INVITE client (17.1.2)
#
#                  |Request from TU: send; Timer E (UDP) retransmits, T1 doubling up to T2
#                  V
#            +-----------+ Timer F: timeout to TU
#            |  Trying   |-------------------------------+
#            +-----------+ 200-699 to TU                  |
#        1xx to TU |  +-------------------------+         |
#                  V                            V         |
#            +-----------+ 200-699 to TU  +-----------+    |
#            | Proceeding|--------------->| Completed |    |
#            +-----------+                +-----------+    |
#   Timer E: resend (T2) |    Timer F       |Timer K       |
#                        |   timeout to TU  |(T4 / 0)      |
#                        +-----------> Terminated <---------+
class NonInviteClientState(enum.Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


_NC = NonInviteClientState
_NON_INVITE_CLIENT: _Table = {
    (_NC.TRYING, Input.TIMER_E): (_NC.TRYING, (A.SEND_REQUEST, A.RESTART_TIMER_E)),
    (_NC.TRYING, Input.TIMER_F): (_NC.TERMINATED, (A.REPORT_TIMEOUT,)),
    (_NC.TRYING, Input.PROVISIONAL): (_NC.PROCEEDING, (A.PASS_UP_RESPONSE,)),
    (_NC.TRYING, Input.SUCCESS): (_NC.COMPLETED, (A.PASS_UP_RESPONSE, A.START_TIMER_K)),
    (_NC.TRYING, Input.FAILURE): (_NC.COMPLETED, (A.PASS_UP_RESPONSE, A.START_TIMER_K)),
    (_NC.PROCEEDING, Input.TIMER_E): (_NC.PROCEEDING, (A.SEND_REQUEST, A.RESTART_TIMER_E_T2)),
    (_NC.PROCEEDING, Input.TIMER_F): (_NC.TERMINATED, (A.REPORT_TIMEOUT,)),
    (_NC.PROCEEDING, Input.PROVISIONAL): (_NC.PROCEEDING, (A.PASS_UP_RESPONSE,)),
    (_NC.PROCEEDING, Input.SUCCESS): (_NC.COMPLETED, (A.PASS_UP_RESPONSE, A.START_TIMER_K)),
    (_NC.PROCEEDING, Input.FAILURE): (_NC.COMPLETED, (A.PASS_UP_RESPONSE, A.START_TIMER_K)),
    (_NC.COMPLETED, Input.TIMER_K): (_NC.TERMINATED, ()),
}


# ------------------------------------------------------------------ INVITE server (17.2.1)
#
#                     |INVITE: to TU (and 100 Trying if auto_trying)
#                     V
#                +-----------+ INVITE again: resend last 1xx
#                | Proceeding| 1xx from TU: send
#                +-----------+
#   2xx from TU:   |        | 300-699 from TU: send, Timer G (UDP) + Timer H
#   send, 2xx      |        V
#   retransmits,   |  +-----------+ INVITE again or Timer G: resend final
#   Timer L        |  | Completed |
#                  |  +-----------+
#                  |   ACK|      |Timer H: give up
#                  |      V      |
#                  |  +-----------+
#                  |  | Confirmed | ACK again: absorb
#                  |  +-----------+
#                  V      |Timer I (T4 / 0)
#        +-----------+    |
#        | Accepted  |    |       INVITE again: resend 2xx; 2xx timer: resend 2xx;
#        +-----------+    |       ACK for the 2xx: to TU once, stop 2xx retransmits
#    Timer L (no ACK yet: |
#    AckTimedOut to TU)   V
#        +---------> Terminated
#
# RFC 6026 adds Accepted: the transaction outlives the 2xx so it can absorb INVITE retransmits.
class InviteServerState(enum.Enum):
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


_IS = InviteServerState
_INVITE_SERVER: _Table = {
    (_IS.PROCEEDING, Input.REQUEST): (_IS.PROCEEDING, (A.RESEND_RESPONSE,)),
    (_IS.PROCEEDING, Input.SEND_PROVISIONAL): (_IS.PROCEEDING, (A.SEND_RESPONSE,)),
    (_IS.PROCEEDING, Input.SEND_SUCCESS): (
        _IS.ACCEPTED,
        (A.SEND_RESPONSE, A.START_TIMER_2XX, A.START_TIMER_L),
    ),
    (_IS.PROCEEDING, Input.SEND_FAILURE): (
        _IS.COMPLETED,
        (A.SEND_RESPONSE, A.START_TIMER_G, A.START_TIMER_H),
    ),
    (_IS.COMPLETED, Input.REQUEST): (_IS.COMPLETED, (A.RESEND_RESPONSE,)),
    (_IS.COMPLETED, Input.TIMER_G): (_IS.COMPLETED, (A.RESEND_RESPONSE, A.RESTART_TIMER_G)),
    (_IS.COMPLETED, Input.TIMER_H): (_IS.TERMINATED, ()),
    (_IS.COMPLETED, Input.ACK): (_IS.CONFIRMED, (A.START_TIMER_I,)),
    (_IS.CONFIRMED, Input.TIMER_I): (_IS.TERMINATED, ()),
    (_IS.ACCEPTED, Input.REQUEST): (_IS.ACCEPTED, (A.RESEND_RESPONSE,)),
    (_IS.ACCEPTED, Input.SEND_SUCCESS): (_IS.ACCEPTED, (A.SEND_RESPONSE,)),
    (_IS.ACCEPTED, Input.TIMER_2XX): (_IS.ACCEPTED, (A.RESEND_RESPONSE, A.RESTART_TIMER_2XX)),
    (_IS.ACCEPTED, Input.ACK): (_IS.ACCEPTED, (A.STOP_TIMER_2XX, A.REPORT_ACK)),
    (_IS.ACCEPTED, Input.TIMER_L): (_IS.TERMINATED, (A.REPORT_ACK_TIMEOUT,)),
}


# -------------------------------------------------------------- non-INVITE server (17.2.2)
#
#                  |Request: to TU
#                  V
#            +-----------+ request again: absorb
#            |  Trying   |-------------------------------+
#            +-----------+ 200-699 from TU: send          |
#        1xx from TU |                                    |
#                    V                                    V
#            +-----------+ 200-699 from TU: send   +-----------+
#            | Proceeding|------------------------>| Completed | request again: resend final
#            +-----------+                         +-----------+
#     request again: resend 1xx                          | Timer J (64*T1 / 0)
#                                                        V
#                                                   Terminated
class NonInviteServerState(enum.Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


_NS = NonInviteServerState
_NON_INVITE_SERVER: _Table = {
    (_NS.TRYING, Input.SEND_PROVISIONAL): (_NS.PROCEEDING, (A.SEND_RESPONSE,)),
    (_NS.TRYING, Input.SEND_SUCCESS): (_NS.COMPLETED, (A.SEND_RESPONSE, A.START_TIMER_J)),
    (_NS.TRYING, Input.SEND_FAILURE): (_NS.COMPLETED, (A.SEND_RESPONSE, A.START_TIMER_J)),
    (_NS.PROCEEDING, Input.REQUEST): (_NS.PROCEEDING, (A.RESEND_RESPONSE,)),
    (_NS.PROCEEDING, Input.SEND_PROVISIONAL): (_NS.PROCEEDING, (A.SEND_RESPONSE,)),
    (_NS.PROCEEDING, Input.SEND_SUCCESS): (_NS.COMPLETED, (A.SEND_RESPONSE, A.START_TIMER_J)),
    (_NS.PROCEEDING, Input.SEND_FAILURE): (_NS.COMPLETED, (A.SEND_RESPONSE, A.START_TIMER_J)),
    (_NS.COMPLETED, Input.REQUEST): (_NS.COMPLETED, (A.RESEND_RESPONSE,)),
    (_NS.COMPLETED, Input.TIMER_J): (_NS.TERMINATED, ()),
}

del A

_TERMINATED: frozenset[enum.Enum] = frozenset(
    {_IC.TERMINATED, _NC.TERMINATED, _IS.TERMINATED, _NS.TERMINATED}
)


class Kind(enum.Enum):
    INVITE_CLIENT = "INVITE client"
    NON_INVITE_CLIENT = "non-INVITE client"
    INVITE_SERVER = "INVITE server"
    NON_INVITE_SERVER = "non-INVITE server"


_TABLES: dict[Kind, _Table] = {
    Kind.INVITE_CLIENT: _INVITE_CLIENT,
    Kind.NON_INVITE_CLIENT: _NON_INVITE_CLIENT,
    Kind.INVITE_SERVER: _INVITE_SERVER,
    Kind.NON_INVITE_SERVER: _NON_INVITE_SERVER,
}
_INITIAL: dict[Kind, enum.Enum] = {
    Kind.INVITE_CLIENT: _IC.CALLING,
    Kind.NON_INVITE_CLIENT: _NC.TRYING,
    Kind.INVITE_SERVER: _IS.PROCEEDING,
    Kind.NON_INVITE_SERVER: _NS.TRYING,
}

# (Call-ID, From tag, To tag, CSeq number) of a 2xx we sent: how its ACK finds the transaction.
_AckKey = tuple[str, str, str, int]


class _Transaction:
    __slots__ = (
        "ack_identity",
        "ack_keys",
        "acked",
        "acks",
        "alive",
        "cancel_pending",
        "deadlines",
        "generated_ack",
        "interval_s",
        "key",
        "kind",
        "peer",
        "reliable",
        "request",
        "request_data",
        "response_data",
        "state",
        "success_tags",
        "table",
    )

    def __init__(
        self, key: str, kind: Kind, request: Request, peer: Address, reliable: bool
    ) -> None:
        self.key = key
        self.kind = kind
        self.table = _COMPILED[kind]
        self.state = _INITIAL[kind]
        # Dropped once the transaction only lingers (see TransactionLayer._shed).
        self.request: Request | None = request
        self.peer = peer  # client: destination of the request; server: where responses go
        self.reliable = reliable
        self.request_data = b""
        self.response_data: bytes | None = None  # server: last response sent
        self.generated_ack: bytes | None = None  # INVITE client: our ACK for a 3xx-6xx
        self.interval_s = 0.0  # current retransmission interval (A, E, G or 2xx)
        self.deadlines: dict[Input, float] = {}
        self.acked = False
        self.acks: dict[str, Outgoing] = {}  # INVITE client: TU's ACK per 2xx To-tag
        self.success_tags: set[str] = set()
        self.cancel_pending: _Transaction | None = None
        # INVITE server: (Call-ID, From tag, CSeq number) that an ACK for our 2xx repeats.
        self.ack_identity: tuple[str, str, int] = ("", "", 0)
        self.ack_keys: list[_AckKey] = []
        self.alive = True


# Lazy-deletion heap entry: a popped entry counts only if it is still the transaction's armed
# deadline for that timer.
_HeapEntry = tuple[float, int, _Transaction, Input]


def _ack_for_failure(request: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 3xx-6xx itself (RFC 3261 17.1.1.3)."""
    src = request.headers
    headers = Headers()
    top_via = src.get("Via")
    if top_via is not None:
        headers.add("Via", top_via)
    for route in src.lines("Route"):
        headers.add("Route", route)
    for name, value in (
        ("From", src.get("From")),
        ("To", response.headers.get("To")),
        ("Call-ID", src.get("Call-ID")),
    ):
        if value is not None:
            headers.add(name, value)
    headers.add("CSeq", f"{request.cseq[0]} ACK")
    headers.add("Max-Forwards", "70")
    return Request("ACK", request.uri, headers)


def _server_key(request: Request, top_via: str | None, method: str) -> str | None:
    """17.2.3 matching key of a request, or None when its top Via is unusable.

    A plain split of the top Via is enough to match (retransmissions repeat it byte for byte);
    the full Via.parse is only paid for requests that start a transaction.
    """
    if not top_via:
        return None
    head, _, _ = top_via.partition(";")
    fields = head.split()
    if len(fields) < 2:
        return None
    branch = branch_of(top_via)
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return f"{branch}|{fields[-1].lower()}|{method}"
    # RFC 2543 peers have no usable branch: 17.2.3 falls back to the identifying headers.
    try:
        sequence = request.cseq[0]
    except SipParseError:
        return None
    return f"2543|{request.call_id}|{request.from_tag}|{sequence}|{top_via}|{method}"


class TransactionLayer:
    """Every SIP transaction of one endpoint; bytes in, bytes out, time as an argument."""

    def __init__(self, timers: Timers = Timers(), *, auto_trying: bool = True) -> None:
        self._timers = timers
        self._auto_trying = auto_trying
        self._clients: dict[str, _Transaction] = {}
        self._servers: dict[str, _Transaction] = {}
        self._acks_2xx: dict[_AckKey, _Transaction] = {}
        self._heap: list[_HeapEntry] = []
        self._sequence = itertools.count()
        self._stale = 0
        self._events: deque[Event] = deque()
        self._outgoing: list[Outgoing] = []
        self.malformed_count = 0
        """Requests dropped because their top Via or CSeq could not be used."""

    # ------------------------------------------------------------------------------ input

    def receive(
        self, message: Request | Response, source: Address, reliable: bool, now: float
    ) -> None:
        """Feed one parsed message that arrived from ``source`` (``reliable``: over TCP).

        Requests are matched per 17.2.3 (branch + sent-by + method, ACK to its INVITE); a new one
        becomes ``RequestReceived``, a retransmission gets the last response again. ACKs for a
        3xx-6xx are absorbed; ACKs for a 2xx become ``AckReceived``. Responses are matched per
        17.1.3 (branch + CSeq method), else ``StrayResponse``. A new request's top Via is
        stamped with ``received``/``rport`` (18.2.1, RFC 3581). A request whose top Via cannot
        be parsed is dropped and counted in ``malformed_count`` (there is nowhere to answer).
        """
        if isinstance(message, Response):
            self._receive_response(message, source, now)
            return
        method = message.method
        top_via = message.headers.get("Via")
        key = _server_key(message, top_via, "INVITE" if method == "ACK" else method)
        if key is None or top_via is None:
            self.malformed_count += 1
            return
        if method == "ACK":
            self._receive_ack(message, key, source, now)
            return
        txn = self._servers.get(key)
        if txn is not None:
            self._step(txn, Input.REQUEST, now, now)
            return
        try:
            via = Via.parse(top_via)
            sequence = message.cseq[0]
        except SipParseError:
            self.malformed_count += 1
            return
        via = self._stamp_via(message, via, source)
        peer = source if reliable else via.response_address(source)
        kind = Kind.INVITE_SERVER if method == "INVITE" else Kind.NON_INVITE_SERVER
        txn = _Transaction(key, kind, message, peer, reliable)
        self._servers[key] = txn
        self._events.append(RequestReceived(key, message, source, reliable))
        if kind is Kind.INVITE_SERVER:
            txn.ack_identity = (message.call_id, message.from_tag or "", sequence)
            if self._auto_trying:
                # 17.2.1: answer at once so the client stops retransmitting while the TU
                # thinks (our TU may wait seconds for a routing callback).
                trying = make_response(message, 100)
                self._step(txn, Input.SEND_PROVISIONAL, now, now, response=trying)

    @staticmethod
    def _stamp_via(request: Request, via: Via, source: Address) -> Via:
        """18.2.1 ``received`` and RFC 3581 ``rport`` on the top Via of a new request."""
        ip, port = source
        params = via.params
        if via.has_rport and via.rport is None:
            # RFC 3581 4: fill rport, and add received even when it equals sent-by.
            params = replace_param(replace_param(params, "rport", str(port)), "received", ip)
        elif via.host.lower() != ip.lower():
            params = replace_param(params, "received", ip)
        else:
            return via
        stamped = Via(via.transport, via.host, via.port, params)
        request.headers.set_first("Via", str(stamped))
        return stamped

    def _receive_ack(self, ack: Request, key: str, source: Address, now: float) -> None:
        txn = self._servers.get(key)
        if txn is not None and txn.kind is Kind.INVITE_SERVER:
            # Same branch: the ACK for our 3xx-6xx (17.2.3), or an RFC 2543-style ACK for a 2xx
            # while Accepted; either way the table decides.
            self._step(txn, Input.ACK, now, now, request=ack, source=source)
            return
        try:
            sequence = ack.cseq[0]
        except SipParseError:
            self.malformed_count += 1
            return
        txn = self._acks_2xx.get((ack.call_id, ack.from_tag or "", ack.to_tag or "", sequence))
        if txn is not None:
            self._step(txn, Input.ACK, now, now, request=ack, source=source)
            return
        self._events.append(AckReceived(ack, source, None))

    def _receive_response(self, response: Response, source: Address, now: float) -> None:
        branch = response.via_branch
        try:
            method = response.cseq[1]
        except SipParseError:
            method = ""
        txn = self._clients.get(f"{branch}|{method}") if branch else None
        if txn is None:
            self._events.append(StrayResponse(response, source))
            return
        status = response.status
        if status < 200:
            event = Input.PROVISIONAL
        elif status < 300:
            event = Input.SUCCESS
        else:
            event = Input.FAILURE
        self._step(txn, event, now, now, response=response)

    # ------------------------------------------------------------------------ TU commands

    def send_request(
        self, request: Request, destination: Address, reliable: bool, now: float
    ) -> str:
        """Start a client transaction for ``request`` and return its key.

        The caller puts a Via with ``new_branch()`` on top; the key is derived from that branch
        and the method. ACK is not a transaction: use :meth:`send_ack` or
        :meth:`send_stateless`. A CANCEL sent while its INVITE has had no provisional response
        yet is held back until one arrives (9.1).
        """
        method = request.method
        if method == "ACK":
            raise ValueError("ACK does not create a transaction: use send_ack or send_stateless")
        branch = request.via_branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise ValueError("the top Via needs a branch starting with z9hG4bK (new_branch())")
        key = f"{branch}|{method}"
        if key in self._clients:
            raise ValueError(f"client transaction {key} already exists")
        kind = Kind.INVITE_CLIENT if method == "INVITE" else Kind.NON_INVITE_CLIENT
        txn = _Transaction(key, kind, request, destination, reliable)
        txn.request_data = request.serialize()
        self._clients[key] = txn
        if method == "CANCEL":
            invite = self._clients.get(f"{branch}|INVITE")
            if invite is not None:
                if invite.state is _IC.CALLING:
                    invite.cancel_pending = txn
                    return key
                if invite.state is _IC.PROCEEDING:
                    self._arm_cancel_timeout(invite, now)
        self._start_client(txn, now)
        return key

    def _start_client(self, txn: _Transaction, now: float) -> None:
        self._outgoing.append(Outgoing(txn.request_data, txn.peer, txn.reliable))
        invite = txn.kind is Kind.INVITE_CLIENT
        if not txn.reliable:
            txn.interval_s = self._timers.t1_s
            self._arm(txn, Input.TIMER_A if invite else Input.TIMER_E, txn.interval_s, now, now)
        self._arm(txn, Input.TIMER_B if invite else Input.TIMER_F, self._timers.timeout_s, now, now)

    def _arm_cancel_timeout(self, invite: _Transaction, now: float) -> None:
        if Input.TIMER_CANCEL not in invite.deadlines:
            self._arm(invite, Input.TIMER_CANCEL, self._timers.timeout_s, now, now)

    def send_ack(self, key: str, ack: Request, destination: Address, reliable: bool) -> None:
        """Send the TU's ACK for a 2xx of client INVITE transaction ``key``.

        It is sent now and re-sent for every retransmission of the 2xx with the same To-tag.
        """
        outgoing = Outgoing(ack.serialize(), destination, reliable)
        self._outgoing.append(outgoing)
        txn = self._clients.get(key)
        if txn is not None and txn.kind is Kind.INVITE_CLIENT:
            txn.acks[ack.to_tag or ""] = outgoing

    def send_response(self, key: str, response: Response, now: float) -> None:
        """Send ``response`` on server transaction ``key``.

        For INVITE: 1xx may repeat; a 2xx is retransmitted until its ACK (``AckReceived``) or
        64*T1 (``AckTimedOut``); a 3xx-6xx is retransmitted by Timer G until the ACK, Timer H
        gives up. A response the transaction can no longer send (after a final response, or
        once the transaction is gone) is dropped.
        """
        txn = self._servers.get(key)
        if txn is None:
            return
        status = response.status
        if status < 200:
            event = Input.SEND_PROVISIONAL
        elif status < 300:
            event = Input.SEND_SUCCESS
        else:
            event = Input.SEND_FAILURE
        self._step(txn, event, now, now, response=response)

    def send_stateless(
        self, message: Request | Response, destination: Address, reliable: bool
    ) -> None:
        """Send ``message`` once, outside any transaction (ACK for a stray 2xx, for example)."""
        self._outgoing.append(Outgoing(message.serialize(), destination, reliable))

    def matching_invite(self, cancel: Request) -> str | None:
        """Key of the INVITE server transaction that ``cancel`` refers to (9.2), or None."""
        key = _server_key(cancel, cancel.headers.get("Via"), "INVITE")
        txn = None if key is None else self._servers.get(key)
        return key if txn is not None and txn.kind is Kind.INVITE_SERVER else None

    # ----------------------------------------------------------------------------- output

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[Outgoing]:
        """Everything queued for sending, in order; the queue is emptied."""
        outgoing = self._outgoing
        self._outgoing = []
        return outgoing

    def get_timer(self) -> float | None:
        """The earliest pending deadline (monotonic seconds), or None."""
        heap = self._heap
        while heap:
            deadline, _, txn, timer = heap[0]
            if txn.alive and txn.deadlines.get(timer) == deadline:
                return deadline
            heapq.heappop(heap)
            self._stale = max(0, self._stale - 1)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is <= ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, txn, timer = heapq.heappop(heap)
            if not txn.alive or txn.deadlines.get(timer) != deadline:
                self._stale = max(0, self._stale - 1)
                continue
            del txn.deadlines[timer]
            # Re-armed timers count from the deadline, not from a late ``now``, so the
            # retransmission schedule stays 0.5, 1.5, 3.5 ... however coarse the caller's clock.
            self._step(txn, timer, deadline, now)

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def state(self, key: str) -> enum.Enum | None:
        """Current state of transaction ``key`` (client or server), or None once it is gone."""
        txn = self._clients.get(key) or self._servers.get(key)
        return None if txn is None else txn.state

    # ---------------------------------------------------------------------------- engine

    def _step(
        self,
        txn: _Transaction,
        event: Input,
        base: float,
        now: float,
        *,
        response: Response | None = None,
        request: Request | None = None,
        source: Address | None = None,
    ) -> None:
        """Apply ``event`` per the transaction's table; ``base`` is when it happened (a timer's
        deadline), ``now`` the caller's clock."""
        entry = txn.table.get((txn.state, event))
        if entry is None:
            return
        next_state, handlers = entry
        txn.state = next_state
        for handler in handlers:
            handler(self, txn, base, now, response, request, source)
        if next_state in _TERMINATED:
            self._terminate(txn)

    # One method per Action, all with the same signature; _HANDLERS below maps them. A dict
    # instead of one big ``match``: CPython tries ``case`` arms one by one, which cost ~2 us
    # for the last of 26 on every step.

    def _do_send_request(self, txn: _Transaction, *_: object) -> None:
        self._outgoing.append(Outgoing(txn.request_data, txn.peer, txn.reliable))

    def _do_pass_up_response(
        self, txn: _Transaction, base: float, now: float, response: Response | None, *_: object
    ) -> None:
        assert response is not None
        retransmission = False
        if 200 <= response.status < 300:
            to_tag = response.to_tag or ""
            retransmission = to_tag in txn.success_tags
            txn.success_tags.add(to_tag)
        self._events.append(ResponseReceived(txn.key, response, retransmission))

    def _do_send_ack(
        self, txn: _Transaction, base: float, now: float, response: Response | None, *_: object
    ) -> None:
        assert response is not None
        if txn.generated_ack is None:
            assert txn.request is not None, "SEND_ACK comes before START_TIMER_D"
            txn.generated_ack = _ack_for_failure(txn.request, response).serialize()
        self._outgoing.append(Outgoing(txn.generated_ack, txn.peer, txn.reliable))

    def _do_resend_ack_2xx(
        self, txn: _Transaction, base: float, now: float, response: Response | None, *_: object
    ) -> None:
        assert response is not None
        ack = txn.acks.get(response.to_tag or "")
        if ack is not None:
            self._outgoing.append(ack)

    def _do_report_timeout(self, txn: _Transaction, *_: object) -> None:
        self._events.append(TransactionTimedOut(txn.key))

    def _do_send_response(
        self, txn: _Transaction, base: float, now: float, response: Response | None, *_: object
    ) -> None:
        assert response is not None
        txn.response_data = response.serialize()
        self._outgoing.append(Outgoing(txn.response_data, txn.peer, txn.reliable))
        if txn.kind is Kind.INVITE_SERVER and 200 <= response.status < 300:
            call_id, from_tag, sequence = txn.ack_identity
            to_tag = tag_of(response.headers.get("To")) or ""
            ack_key = (call_id, from_tag, to_tag, sequence)
            if ack_key not in self._acks_2xx:
                self._acks_2xx[ack_key] = txn
                txn.ack_keys.append(ack_key)

    def _do_resend_response(self, txn: _Transaction, *_: object) -> None:
        if txn.response_data is not None:
            self._outgoing.append(Outgoing(txn.response_data, txn.peer, txn.reliable))

    def _do_report_ack(
        self,
        txn: _Transaction,
        base: float,
        now: float,
        response: Response | None,
        request: Request | None,
        source: Address | None,
    ) -> None:
        assert request is not None and source is not None
        if not txn.acked:
            # Only the first ACK goes up; repeats answer our 2xx retransmissions.
            txn.acked = True
            self._events.append(AckReceived(request, source, txn.key))

    def _do_report_ack_timeout(self, txn: _Transaction, *_: object) -> None:
        if not txn.acked:
            self._events.append(AckTimedOut(txn.key))

    def _do_stop_timer_2xx(self, txn: _Transaction, *_: object) -> None:
        if txn.deadlines.pop(Input.TIMER_2XX, None) is not None:
            self._stale += 1

    def _do_flush_cancel(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        cancel = txn.cancel_pending
        if cancel is not None:
            txn.cancel_pending = None
            self._start_client(cancel, now)
            self._arm_cancel_timeout(txn, now)

    def _do_drop_cancel(self, txn: _Transaction, *_: object) -> None:
        cancel = txn.cancel_pending
        if cancel is not None:
            txn.cancel_pending = None
            self._terminate(cancel)

    def _do_restart_timer_a(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        txn.interval_s *= 2  # Timer A doubles without a cap (17.1.1.2)
        self._arm(txn, Input.TIMER_A, txn.interval_s, base, now)

    def _do_restart_timer_e(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        txn.interval_s = min(txn.interval_s * 2, self._timers.t2_s)
        self._arm(txn, Input.TIMER_E, txn.interval_s, base, now)

    def _do_restart_timer_e_t2(
        self, txn: _Transaction, base: float, now: float, *_: object
    ) -> None:
        txn.interval_s = self._timers.t2_s  # 17.1.2.2: in Proceeding, E is always T2
        self._arm(txn, Input.TIMER_E, txn.interval_s, base, now)

    def _do_restart_timer_g(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        txn.interval_s = min(txn.interval_s * 2, self._timers.t2_s)
        self._arm(txn, Input.TIMER_G, txn.interval_s, base, now)

    def _do_restart_timer_2xx(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        txn.interval_s = min(txn.interval_s * 2, self._timers.t2_s)
        self._arm(txn, Input.TIMER_2XX, txn.interval_s, base, now)

    def _do_start_timer_d(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        self._shed(txn)
        delay_s = 0.0 if txn.reliable else self._timers.timer_d_s
        self._arm(txn, Input.TIMER_D, delay_s, base, now)

    def _do_start_timer_k(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        self._shed(txn)
        self._arm(txn, Input.TIMER_K, 0.0 if txn.reliable else self._timers.t4_s, base, now)

    def _do_start_timer_m(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        self._shed(txn)
        self._arm(txn, Input.TIMER_M, self._timers.timeout_s, base, now)

    def _do_start_timer_g(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        if not txn.reliable:
            txn.interval_s = self._timers.t1_s
            self._arm(txn, Input.TIMER_G, txn.interval_s, base, now)

    def _do_start_timer_h(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        self._arm(txn, Input.TIMER_H, self._timers.timeout_s, base, now)

    def _do_start_timer_i(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        self._shed(txn)
        self._clear_timers(txn)  # Confirmed: G and H are over
        self._arm(txn, Input.TIMER_I, 0.0 if txn.reliable else self._timers.t4_s, base, now)

    def _do_start_timer_j(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        self._shed(txn)
        delay_s = 0.0 if txn.reliable else self._timers.timeout_s
        self._arm(txn, Input.TIMER_J, delay_s, base, now)

    def _do_start_timer_l(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        self._shed(txn)
        self._arm(txn, Input.TIMER_L, self._timers.timeout_s, base, now)

    def _do_start_timer_2xx(self, txn: _Transaction, base: float, now: float, *_: object) -> None:
        # 13.3.1.4: T1, 2*T1, ... capped at T2, on any transport (the 2xx is end to end).
        txn.interval_s = self._timers.t1_s
        self._arm(txn, Input.TIMER_2XX, txn.interval_s, base, now)

    # ------------------------------------------------------------------------ timers, memory

    @staticmethod
    def _shed(txn: _Transaction) -> None:
        """From here on the transaction only lingers, to absorb retransmissions (Timers
        D, I, J, K, L, M): it keeps the bytes it answers them with, not the request.
        Three transactions per call linger up to 32 s, and their parsed requests were
        most of a busy node's heap."""
        txn.request = None
        if txn.kind is Kind.INVITE_CLIENT or txn.kind is Kind.NON_INVITE_CLIENT:
            txn.request_data = b""  # a client never sends its request again once answered

    def _arm(
        self, txn: _Transaction, timer: Input, delay_s: float, base: float, now: float
    ) -> None:
        if delay_s <= 0:
            # A zero timer (D, I, J, K over reliable transports) means "terminate now".
            self._terminate(txn)
            return
        deadline = base + delay_s
        if deadline <= now:
            # The caller was late by more than an interval: do not burst retransmissions.
            deadline = now + delay_s
        if timer in txn.deadlines:
            self._stale += 1
        txn.deadlines[timer] = deadline
        heapq.heappush(self._heap, (deadline, next(self._sequence), txn, timer))

    def _clear_timers(self, txn: _Transaction) -> None:
        self._stale += len(txn.deadlines)
        txn.deadlines.clear()

    def _terminate(self, txn: _Transaction) -> None:
        if not txn.alive:
            return
        txn.alive = False
        txn.state = next(s for s in type(txn.state) if s in _TERMINATED)
        self._clear_timers(txn)
        client = txn.kind in (Kind.INVITE_CLIENT, Kind.NON_INVITE_CLIENT)
        table = self._clients if client else self._servers
        if table.get(txn.key) is txn:
            del table[txn.key]
        for ack_key in txn.ack_keys:
            if self._acks_2xx.get(ack_key) is txn:
                del self._acks_2xx[ack_key]
        if txn.cancel_pending is not None:
            cancel, txn.cancel_pending = txn.cancel_pending, None
            self._terminate(cancel)
        # Release what a terminated transaction would otherwise keep alive from the heap.
        txn.acks.clear()
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        # Lazy deletion leaves cancelled timers in the heap until their deadline; rebuild it
        # when they outnumber the live ones so memory follows the live transaction count.
        heap = self._heap
        if self._stale > 4096 and self._stale * 2 > len(heap):
            self._heap = [
                entry
                for entry in heap
                if entry[2].alive and entry[2].deadlines.get(entry[3]) == entry[0]
            ]
            heapq.heapify(self._heap)
            self._stale = 0


_Handler = Callable[
    [
        TransactionLayer,
        _Transaction,
        float,
        float,
        Response | None,
        Request | None,
        Address | None,
    ],
    None,
]

_HANDLERS: dict[Action, _Handler] = {
    Action.SEND_REQUEST: TransactionLayer._do_send_request,
    Action.PASS_UP_RESPONSE: TransactionLayer._do_pass_up_response,
    Action.SEND_ACK: TransactionLayer._do_send_ack,
    Action.RESEND_ACK_2XX: TransactionLayer._do_resend_ack_2xx,
    Action.REPORT_TIMEOUT: TransactionLayer._do_report_timeout,
    Action.SEND_RESPONSE: TransactionLayer._do_send_response,
    Action.RESEND_RESPONSE: TransactionLayer._do_resend_response,
    Action.REPORT_ACK: TransactionLayer._do_report_ack,
    Action.REPORT_ACK_TIMEOUT: TransactionLayer._do_report_ack_timeout,
    Action.STOP_TIMER_2XX: TransactionLayer._do_stop_timer_2xx,
    Action.FLUSH_CANCEL: TransactionLayer._do_flush_cancel,
    Action.DROP_CANCEL: TransactionLayer._do_drop_cancel,
    Action.RESTART_TIMER_A: TransactionLayer._do_restart_timer_a,
    Action.RESTART_TIMER_E: TransactionLayer._do_restart_timer_e,
    Action.RESTART_TIMER_E_T2: TransactionLayer._do_restart_timer_e_t2,
    Action.RESTART_TIMER_G: TransactionLayer._do_restart_timer_g,
    Action.RESTART_TIMER_2XX: TransactionLayer._do_restart_timer_2xx,
    Action.START_TIMER_D: TransactionLayer._do_start_timer_d,
    Action.START_TIMER_K: TransactionLayer._do_start_timer_k,
    Action.START_TIMER_M: TransactionLayer._do_start_timer_m,
    Action.START_TIMER_G: TransactionLayer._do_start_timer_g,
    Action.START_TIMER_H: TransactionLayer._do_start_timer_h,
    Action.START_TIMER_I: TransactionLayer._do_start_timer_i,
    Action.START_TIMER_J: TransactionLayer._do_start_timer_j,
    Action.START_TIMER_L: TransactionLayer._do_start_timer_l,
    Action.START_TIMER_2XX: TransactionLayer._do_start_timer_2xx,
}
# The exhaustiveness a ``match`` with assert_never would give, checked once at import.
if _HANDLERS.keys() != set(Action):
    raise RuntimeError(f"actions without a handler: {set(Action) - _HANDLERS.keys()}")

_CompiledTable = Mapping[tuple[enum.Enum, Input], tuple[enum.Enum, tuple[_Handler, ...]]]


def _compile(table: _Table) -> _CompiledTable:
    return {
        key: (next_state, tuple(_HANDLERS[action] for action in actions))
        for key, (next_state, actions) in table.items()
    }


_COMPILED: dict[Kind, _CompiledTable] = {kind: _compile(table) for kind, table in _TABLES.items()}
