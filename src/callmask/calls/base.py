"""What every call has, whoever started it: an event queue the engine feeds, a summary
that becomes the CDR, the transaction keys it listens on, and the helpers the flows
share (waiting for the next event with a deadline, ending with a status, the view the
live-calls API shows).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from callmask.calls.control import LiveCall
from callmask.calls.ledger import Kept
from callmask.calls.outcome import CallStatus, CallSummary
from callmask.calls.phase import Phase, next_phase
from callmask.routing.route import Report
from callmask.sip.transaction import (
    AckReceived,
    AckTimedOut,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)

if TYPE_CHECKING:
    from callmask.calls.ports import CallPorts

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HangupRequested:
    """An operator or API asked to end the call."""

    reason: str


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """The caller CANCELled its INVITE (the engine already answered the CANCEL 200)."""


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """Move the caller of an answered call to ``number``; ``done`` gets the result."""

    number: str
    done: asyncio.Future[bool]


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """A digit one side pressed: ``side`` is caller or callee, ``via`` rfc4733 (decoded
    by rtpengine) or info (a SIP INFO)."""

    digit: str
    side: str
    via: str


CallEvent = (
    RequestReceived
    | ResponseReceived
    | AckReceived
    | TransactionTimedOut
    | AckTimedOut
    | HangupRequested
    | CancelReceived
    | TransferRequested
    | DigitReceived
)


class CallEnded(Exception):
    """Raised inside a flow when the call is over; ``run`` writes the outcome."""


def sdp_text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


class CallBase:
    def __init__(self, ports: CallPorts, summary: CallSummary) -> None:
        self.ports = ports
        self.summary = summary
        self.id = summary.record_id
        self.queue: asyncio.Queue[CallEvent] = asyncio.Queue()
        self.keys: set[str] = set()
        self.sip_call_ids: set[str] = set()
        self.media_started = False
        # The tag of the first media offer: deleting by it ends the whole call in
        # rtpengine with its statistics in the reply, in one exchange (see delete_media).
        self.media_tag: str | None = None
        self.ended = False
        self.opened = False  # noted in open_calls (see calls/recovery.py)
        self.phase = Phase.ADMITTED

    # -- the life of every call ------------------------------------------------------

    async def run(self) -> None:
        """The whole life of the call: its flow, then, however the flow ended, the
        teardown of legs and media and ``ports.book.finish`` (CDR and report)."""
        self.started()
        try:
            await self.flow()
        except CallEnded:
            pass
        except asyncio.CancelledError:
            self.end(CallStatus.FAILED, "callmask shutting down", by="system")
            await self._close()
            raise
        except Exception as exc:
            log.exception("call %s failed", self.summary.public_call_id)
            self.end(CallStatus.FAILED, f"internal error: {type(exc).__name__}", by="system")
            self.failed_internally()
        await self._close()

    async def _close(self) -> None:
        self.enter(Phase.ENDING)
        await self.teardown()
        self.ports.book.finish(self)
        self.enter(Phase.ENDED)

    def started(self) -> None:
        """Before the flow: what the kind of call notes first."""

    async def flow(self) -> None:
        """The kind of call: which legs, in which order, what is played. Ends by
        raising ``CallEnded`` (through ``end``) or by returning."""
        raise NotImplementedError

    def failed_internally(self) -> None:
        """The flow raised something unexpected: answer whoever still waits."""

    async def teardown(self) -> None:
        """End every leg still up and the media session."""
        raise NotImplementedError

    def digit_received(self, event: DigitReceived) -> None:
        """Count it in the CDR's details, per side and path; the digit itself is not
        logged nor stored (it may be a PIN)."""
        counts: dict[str, int] = self.summary.details.setdefault("dtmf", {})
        name = f"{event.side}_{event.via}"
        counts[name] = counts.get(name, 0) + 1
        log.info("digit from the %s via %s", event.side, event.via)

    def kept(self) -> Kept | None:
        """After teardown, with the CDR: what the call's routing keeps of it."""
        return None

    def enter(self, phase: Phase) -> None:
        self.phase = next_phase(self.phase, phase)

    def post(self, event: CallEvent) -> None:
        self.queue.put_nowait(event)

    @property
    def loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def track(self, key: str) -> None:
        """Have this transaction's responses and timeouts here."""
        self.keys.add(key)
        self.ports.registry.track(key, self)

    def own_sip_call_id(self, sip_call_id: str) -> None:
        """Have in-dialog requests and ACKs of this Call-ID here."""
        self.sip_call_ids.add(sip_call_id)
        self.ports.registry.register_sip_call_id(sip_call_id, self)

    async def next_event(self, timeout_s: float | None = None) -> CallEvent | None:
        if timeout_s is not None and timeout_s <= 0:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                return await self.queue.get()
        except TimeoutError:
            return None

    def end(
        self, status: CallStatus, cause: str, *, code: int | None = None, by: str | None = None
    ) -> CallEnded:
        self.summary.status = status
        self.summary.hangup_cause = cause
        self.summary.sip_code = code
        self.summary.hangup_by = by
        return CallEnded(cause)

    def live_view(self) -> LiveCall:
        summary = self.summary
        return LiveCall(
            call_id=summary.public_call_id,
            account_id=summary.account_id or "",
            direction=summary.direction,
            service=summary.service,
            did=summary.did,
            caller=summary.caller,
            callee=summary.callee,
            started_at=summary.invited_utc,
            answered_at=summary.utc(summary.times.answered),
            state="answered" if summary.times.answered is not None else "ringing",
        )

    def report(self) -> Report | None:
        """The webhook this call's end causes, if any."""
        return None

    async def delete_media(self) -> None:
        if not self.media_started:
            return
        try:
            stats = await asyncio.wait_for(
                self.ports.media.delete(self.id, self.media_tag), timeout=3
            )
            self.summary.details["media"] = self.ports.media_counts(stats)
        except Exception as exc:
            self.summary.details["media_error"] = str(exc)
