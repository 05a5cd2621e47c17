"""The seam between a call and the dialect that routes it.

A ``CallRouting`` is chosen once per inbound call, at admission (``routing.table``),
and is the only thing the call consults about its dialect: what to do (``decide``),
which webhook its end causes (``report``), and what the dialect keeps of the call
afterwards (``ended``: a session's interaction, written with the CDR). Each dialect is
one implementation:
Infobip's callback (``routing.infobip``), Tata's user's API (``routing.tata``), a
session over a number pool and the out-of-session path (``routing.sessions``). The
call flow itself never asks which one it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp

from callmask.calls.ledger import Kept
from callmask.calls.outcome import CallSummary
from callmask.routing.decisions import Decision


@dataclass(frozen=True, slots=True)
class Report:
    """A webhook the end of a call causes: where, what kind, what body."""

    url: str
    event_type: str
    payload: dict[str, object]


@dataclass(frozen=True, slots=True)
class Exchange:
    """How callmask asks a customer's endpoint while a caller waits: the node's one
    client session and the limits every routing request shares."""

    http: aiohttp.ClientSession
    timeout_s: float
    allow_private: bool
    default_region: str | None


class CallRouting(Protocol):
    # Filled into the call's summary at admission.
    @property
    def account_id(self) -> str: ...
    @property
    def did(self) -> str: ...
    @property
    def action_key(self) -> str | None: ...
    @property
    def service(self) -> str:
        """The CDR's service: number_masking, anonymize, session, out_of_session."""
        ...

    async def decide(self, summary: CallSummary) -> Decision:
        """Ask the customer what this call does. Raises ``RoutingFailed``."""
        ...

    def report(self, summary: CallSummary) -> Report | None:
        """The webhook the call's end causes, if the dialect sends one per call."""
        ...

    def ended(self, summary: CallSummary) -> Kept | None:
        """The call is over (its summary is final): what the dialect keeps of it, written
        in the CDR's transaction (``calls.ledger``)."""
        ...
