"""One inbound masked call: the caller's leg (A), the legs callmask places (B), the
media anchored in rtpengine, and the outcome.

A call is a coroutine fed by a queue: the engine posts every SIP event that belongs to
the call (responses on its transactions, in-dialog requests, CANCEL, ACK, timeouts) and
operator commands (hang up). Writing the flow top to bottom — route, dial, ring, talk,
end — keeps RFC ordering rules (CANCEL only after a provisional, ACK before media, BYE
both ways) visible in one place. Whatever ends the call, ``run`` always tears down both
legs and the media session and writes the CDR with its status report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from callmask.calls.base import (
    CallBase,
    CallEnded,
    CallEvent,
    CancelReceived,
    DigitReceived,
    HangupRequested,
    TransferRequested,
    sdp_text,
)
from callmask.calls.ledger import Kept
from callmask.calls.legs import InboundLeg, OutboundLeg
from callmask.calls.outcome import CallStatus, CallSummary, status_for_code
from callmask.calls.phase import Phase
from callmask.media.dtmf import digit_of_info
from callmask.recordings.calls import RecordingStarted, recording_kept
from callmask.routing.decisions import (
    Decision,
    DialNumbers,
    PinGate,
    PlayAudio,
    PlayPrompt,
    RecordCall,
    RoutingFailed,
    RoutingRefused,
    UnknownNumber,
)
from callmask.routing.route import CallRouting, Report
from callmask.sip.message import Request, Response
from callmask.sip.transaction import (
    AckReceived,
    AckTimedOut,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from callmask.store.models import utcnow

if TYPE_CHECKING:
    from callmask.calls.ports import CallPorts

log = logging.getLogger(__name__)
T = TypeVar("T")

# The B side of an announcement-only call: rtpengine needs an answer to set up the
# caller's stream; port 9 (discard) sendonly means "nothing comes back from here".
ANNOUNCEMENT_TAG = "announcement"
ANNOUNCEMENT_SDP = (
    "v=0\r\no=callmask 1 1 IN IP4 127.0.0.1\r\ns=announcement\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"
)
# How long the end of a call waits for the called party to confirm a CANCEL/BYE
# before the media is torn down anyway.
TEARDOWN_GRACE_S = 2.0
# A PIN that is looked up (a shared number) has no one length: digits are taken until
# "#" or this many (Plivo's longest PIN).
MAX_PIN_DIGITS = 15


class InboundCall(CallBase):
    def __init__(self, ports: CallPorts, a: InboundLeg, summary: CallSummary) -> None:
        super().__init__(ports, summary)
        self.a = a
        self.received_at = time.perf_counter()
        self.b: OutboundLeg | None = None
        self.a_acked = False
        self.routing: CallRouting | None = None  # chosen at admission
        # Relayed in-dialog offers: our transaction key -> (origin leg, its txn key, request)
        self._relays: dict[str, tuple[str, str, Request]] = {}
        self._interruptible: asyncio.Task[None] | None = None  # see _while_ringing
        self._interrupted = False
        self._end_pending = False  # a CANCEL or hangup waits in the queue
        self.recording: RecordingStarted | None = None
        # A recorded call's parties are held apart from the answer until the consent
        # announcement has played (rtpengine's call-wide media block).
        self._consent_first = False
        self._held_apart: str | None = None  # why they could not be, when that failed
        self._blocked = False
        self._unblock: asyncio.Task[None] | None = None

    def _refuse(
        self, code: int, status: CallStatus, cause: str, reason: str | None = None
    ) -> CallEnded:
        if self.a.final_sent:
            # callmask answered the caller itself (a PIN prompt): hang up instead.
            self._bye_a()
            return self.end(status, cause, code=code, by="system")
        self.a.respond(code, reason)
        return self.end(status, cause, code=code, by="system")

    async def _while_ringing(self, work: Awaitable[T]) -> T:
        """Run ``work`` (a callback, a media command) while still watching the caller:
        a CANCEL or an operator hangup ends the call at once instead of after the work.

        The work runs in the call's own task, and ``post`` cancels that task when such an
        event arrives (racing the work against the event queue with a second task and
        ``asyncio.wait`` cost tens of microseconds per step, three steps per call). Other
        events wait in the queue for the step that follows.
        """
        task = asyncio.current_task()
        assert task is not None
        if self._end_pending:  # a CANCEL came before this step
            self._end_pending = False
            try:
                self._drain_before_answer()
            except BaseException:
                if isinstance(work, Coroutine):
                    work.close()  # never started
                raise
        self._interruptible = task
        try:
            return await work
        except asyncio.CancelledError:
            if not self._interrupted:
                raise  # cancelled from outside (shutdown): not ours to swallow
            self._drain_before_answer()
            raise AssertionError("interrupted without an event that ends the call") from None
        finally:
            self._interruptible = None
            if self._interrupted:
                # Our cancel, whether the work let it through or swallowed it.
                self._interrupted = False
                task.uncancel()

    def _drain_before_answer(self) -> None:
        while not self.queue.empty():
            self._before_answer(self.queue.get_nowait())

    def post(self, event: CallEvent) -> None:
        super().post(event)
        if not isinstance(event, CancelReceived | HangupRequested):
            return
        if self._interruptible is None:
            self._end_pending = True
        elif not self._interrupted:
            self._interrupted = True
            self._interruptible.cancel()

    def _before_answer(self, event: CallEvent) -> None:
        """Events that can reach a call before any B leg exists."""
        match event:
            case CancelReceived():
                raise self._refuse(
                    487, CallStatus.NO_ANSWER, "caller cancelled", "Request Terminated"
                )
            case HangupRequested(reason=reason):
                raise self._refuse(480, CallStatus.FAILED, reason)
            case RequestReceived(key=key, request=request):
                # Nothing in-dialog is possible before we answer; refuse politely.
                self.a.answer_request(key, request, 481 if request.method == "BYE" else 491)
            case _:
                pass

    def report(self) -> Report | None:
        return None if self.routing is None else self.routing.report(self.summary)

    # -- the flow ----------------------------------------------------------------

    def started(self) -> None:
        log.info(
            "call started from=%s to=%s source=%s:%d sip_call_id=%s",
            self.summary.caller,
            self.a.invite.uri,
            *self.a.source,
            self.a.call_id,
        )

    def failed_internally(self) -> None:
        if not self.a.final_sent:
            self.a.respond(500, "Server Internal Error")

    def kept(self) -> Kept | None:
        """The dialect's view of the finished call (a session's interaction); a failure
        there is logged, never keeps the CDR from being written."""
        kept: Kept | None = None
        if self.routing is not None:
            try:
                kept = self.routing.ended(self.summary)
            except Exception:
                log.exception("call %s: routing end not kept", self.summary.public_call_id)
        if self.recording is None or self.summary.account_id is None:
            return kept
        row = recording_kept(
            self.recording,
            account_id=self.summary.account_id,
            call_id=self.summary.public_call_id,
            media_call_id=self.id,
            node_id=self.ports.node_id,
            ended_at=utcnow(),
        )
        if kept is None:
            return Kept(rows=(row,))
        return Kept(rows=(*kept.rows, row), events=kept.events)

    async def flow(self) -> None:
        routing = await self._admit()
        self.enter(Phase.ROUTING)
        # perf_counter, not the loop clock: uvloop's loop.time() has millisecond steps,
        # too coarse for a delay measured in fractions of a millisecond.
        asked_at = time.perf_counter()
        decision = await self._decide(routing)
        callback_s = time.perf_counter() - asked_at
        self.summary.details["callback_ms"] = round(callback_s * 1000, 1)
        log.info("routed decision=%s callback_ms=%.1f", decision, callback_s * 1000)
        match decision:
            case DialNumbers():
                await self._dial(decision, callback_s)
            case PlayAudio():
                await self._announce(decision)
            case PlayPrompt():
                await self._prompt_and_refuse(decision)
            case PinGate():
                await self._dial(await self._ask_pin(decision), callback_s)

    async def _admit(self) -> CallRouting:
        # Not raced against the caller's CANCEL as the slower steps are: the lookup is a
        # local read (see store.routes), and a CANCEL that comes meanwhile is taken
        # up by the very next step.
        try:
            self.routing = await self.ports.admission.admit(self)
        except UnknownNumber as exc:
            raise self._refuse(404, CallStatus.FAILED, f"no action for number {exc}") from exc
        return self.routing

    async def _decide(self, routing: CallRouting) -> Decision:
        try:
            return await self._while_ringing(self.ports.admission.decide(self, routing))
        except RoutingRefused as exc:
            raise self._refuse(exc.code, CallStatus.FAILED, str(exc), exc.reason) from exc
        except RoutingFailed as exc:
            # 480: "the callee's end system was contacted but is unavailable right now":
            # the carrier plays its unavailable announcement instead of silence and
            # does not fail over its whole trunk as it might on a 503.
            raise self._refuse(480, CallStatus.FAILED, str(exc), "Temporarily Unavailable") from exc

    async def _anchor_caller(self) -> str:
        """Offer the caller's SDP to rtpengine; returns the offer for the far end."""
        # Set before the request, not after: a call the caller cancels while the offer
        # is in flight must still delete whatever rtpengine created (deleting a call
        # rtpengine does not know is harmless).
        self.media_started = True
        self.media_tag = self.a.media_tag
        caller_sdp = sdp_text(self.a.invite.body)
        return await self.ports.media.offer(self.id, self.a.media_tag, caller_sdp)

    async def _media(self, work: Awaitable[T]) -> T:
        try:
            return await self._while_ringing(work)
        except CallEnded:
            raise
        except Exception as exc:
            log.warning("call %s: media anchor failed: %s", self.summary.public_call_id, exc)
            raise self._refuse(503, CallStatus.FAILED, f"media anchor failed: {exc}") from exc

    # -- dial ----------------------------------------------------------------------

    async def _dial(self, decision: DialNumbers, callback_s: float) -> None:
        self.summary.command = self.summary.command or "dial"
        self.summary.caller_id_shown = decision.caller_id
        last_code: int | None = None
        tried: list[dict[str, object]] = []
        self.summary.details["tried"] = tried
        for number in decision.numbers:
            self.enter(Phase.DIALLING)
            offer = await self._media(self._anchor_caller())
            self._consent_first = decision.record is not None
            if self._consent_first:
                # From the offer on: the called party's phone sends audio right after
                # its 200, which can reach rtpengine before the 200 reaches callmask.
                await self._hold_apart()
            b = self.ports.legs.outbound(number, decision.caller_id, offer.encode())
            self.b = b
            self.own_sip_call_id(b.call_id)
            self.summary.callee = number
            self.summary.b_sip_call_id = b.call_id
            self.track(b.start())
            if "post_dial_delay_ms" not in self.summary.details:
                delay_s = time.perf_counter() - self.received_at - callback_s
                self.summary.details["post_dial_delay_ms"] = round(delay_s * 1000, 3)
                self.ports.book.observe_post_dial_delay(delay_s)
            self.ports.book.opened(self)
            answered, last_code = await self._ring(b)
            tried.append({"number": number, "code": last_code})
            if answered:
                if decision.record is not None:
                    await self._record_with_consent(b, decision.record)
                await self._talk(b, decision.time_limit_s)
                return
        status = status_for_code(last_code)
        cause = f"called party answered {last_code}" if last_code else "trunk did not answer"
        if self.summary.details.get("ring_timeout"):
            status, cause = CallStatus.NO_ANSWER, "ring timeout"
        raise self._refuse(self._code_for_caller(last_code), status, cause)

    @staticmethod
    def _code_for_caller(code: int | None) -> int:
        """What the caller hears when no B leg answered. Busy and no-answer are passed
        on; a failure of the far network becomes 502 (a 503 would tell the carrier that
        callmask itself is overloaded, RFC 3261 16.7 item 6)."""
        if code is None:
            return 502
        if code in (486, 600, 603, 404, 480, 484, 487, 408):
            return 480 if code in (408, 487) else code
        if 500 <= code < 600:
            return 502
        return 480

    async def _ring(self, b: OutboundLeg) -> tuple[bool, int | None]:
        """Wait for B's final answer; relay its ringing and early media to the caller."""
        deadline = self.loop_time + self.ports.ring_timeout_s
        assert b.key is not None
        while True:
            event = await self.next_event(deadline - self.loop_time)
            if event is None:
                self.summary.details["ring_timeout"] = True
                b.cancel()
                return False, 408
            match event:
                case CancelReceived():
                    b.cancel()
                    raise self._refuse(
                        487, CallStatus.NO_ANSWER, "caller cancelled", "Request Terminated"
                    )
                case HangupRequested(reason=reason):
                    b.cancel()
                    raise self._refuse(480, CallStatus.FAILED, reason)
                case ResponseReceived(key=key, response=response) if key == b.key:
                    outcome = await self._on_b_invite_response(b, response)
                    if outcome is not None:
                        return outcome
                case TransactionTimedOut(key=key) if key == b.key:
                    return False, (408 if b.provisional_seen else None)
                case RequestReceived(key=key, request=request) if (
                    self.a.final_sent and request.call_id == self.a.call_id
                ):
                    # Answered by callmask (a PIN prompt) while B rings: the caller may
                    # press keys (the # after the PIN) or hang up.
                    if request.method == "BYE":
                        self.a.answer_request(key, request, 200)
                        b.cancel()
                        raise self.end(
                            CallStatus.NO_ANSWER, "caller hung up", code=200, by="caller"
                        )
                    self._digit_while_prompting(event)
                case RequestReceived(key=key, request=request):
                    self._answer_stray(key, request)
                case _:
                    pass

    async def _on_b_invite_response(
        self, b: OutboundLeg, response: Response
    ) -> tuple[bool, int | None] | None:
        status = response.status
        if status in (401, 407) and not b.auth_attempted:
            key = b.retry_with_credentials(response)
            if key is not None:
                self.track(key)
                return None
        b.on_response(response)
        if status < 200:
            if status == 100:
                return None
            self.enter(Phase.RINGING)
            if self.summary.times.ringing is None:
                self.summary.times.ringing = self.loop_time
            if self.a.final_sent:
                return None  # answered by callmask (a PIN prompt): nothing to relay
            if status == 183 and response.body:
                if self._blocked:
                    # Early media is the far network's ringback or announcement: the
                    # caller hears it; the block comes back with the answer.
                    await self._let_through()
                sdp = await self._media(
                    self.ports.media.answer(
                        self.id, self.a.media_tag, response.to_tag or "", sdp_text(response.body)
                    )
                )
                self.a.respond(183, "Session Progress", sdp=sdp.encode())
            else:
                self.a.respond(180, "Ringing")
            return None
        if status < 300:
            if b.cancel_wanted:
                # CANCEL crossed the 200: the call is up on B's side; end it there.
                b.request("BYE")
                return False, 487
            if self._consent_first and not self._blocked:
                await self._hold_apart()
            sdp = await self._media(
                self.ports.media.answer(
                    self.id, self.a.media_tag, response.to_tag or "", b.last_answer_sdp
                )
            )
            if not self.a.final_sent:
                self.a.respond(200, "OK", sdp=sdp.encode())
            self.enter(Phase.BRIDGED)
            self.summary.times.answered = self.loop_time
            self.summary.status = CallStatus.ANSWERED
            log.info("answered by=%s b_call_id=%s", b.number, b.call_id)
            self.ports.book.answered(self)
            return True, status
        return False, status

    # -- recording -----------------------------------------------------------------

    async def _hold_apart(self) -> None:
        """Block the call's media (call-wide, so also the called party's, whose stream
        rtpengine opened with the offer): no packet of either party reaches the other
        before the consent announcement has played."""
        try:
            await self.ports.media.block_media(self.id)
        except Exception as exc:
            self._held_apart = f"the parties could not be held apart for the consent: {exc}"
        else:
            self._held_apart = None
            self._blocked = True

    async def _let_through(self) -> None:
        try:
            await self.ports.media.unblock_media(self.id)
        except Exception as exc:
            log.warning("call %s: media not unblocked: %s", self.summary.public_call_id, exc)
        else:
            self._blocked = False

    async def _record_with_consent(self, b: OutboundLeg, record: RecordCall) -> None:
        """Start rtpengine's recording of the answered call and play the consent
        announcement to both parties, whose media rtpengine does not forward until it
        has played (``_hold_apart``); what they say meanwhile is recorded. The talk
        that follows handles the events of that time.

        No step failing ends the call; the failure is kept as the recording's, and a
        call whose consent was not played is not recorded (its rtpengine file is
        dropped by the recording worker)."""
        started = RecordingStarted(record=record, started_at=utcnow())
        self.recording = started
        answered_at = time.perf_counter()
        details: dict[str, object] = {"recording_id": started.id}
        self.summary.details["recording"] = details
        media = self.ports.media
        if self._held_apart is not None:
            started.failure = self._held_apart
            log.warning("call %s: %s", self.summary.public_call_id, started.failure)
            return
        played_ms = 0
        try:
            await media.start_recording(self.id)
            audio = str(await self.ports.prompts.render(record.consent))
            for tag in (self.a.media_tag, b.dialog.remote_tag if b.dialog else ""):
                played_ms = max(played_ms, await media.play_media(self.id, tag, audio))
        except Exception as exc:
            started.failure = f"recording or consent announcement failed: {exc}"
            log.warning("call %s: %s", self.summary.public_call_id, started.failure)
            played_ms = 0
        else:
            details["consent_start_ms"] = round((time.perf_counter() - answered_at) * 1000, 1)
            details["consent_ms"] = played_ms
        self._unblock = asyncio.get_running_loop().create_task(
            self._unblock_after(played_ms / 1000), name=f"consent {self.id}"
        )

    async def _unblock_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not self._blocked:
            return
        try:
            await self.ports.media.unblock_media(self.id)
            self._blocked = False
        except Exception as exc:
            # The parties would not hear each other: end the call rather than leave
            # them in silence.
            log.warning("call %s: media not unblocked: %s", self.summary.public_call_id, exc)
            self.post(HangupRequested(f"media not unblocked after the consent: {exc}"))

    # -- talk ----------------------------------------------------------------------

    async def _talk(self, b: OutboundLeg, time_limit_s: int | None = None) -> None:
        ends_at = None if time_limit_s is None else self.loop_time + time_limit_s
        if time_limit_s is not None:
            self.summary.details["time_limit_s"] = time_limit_s
        while True:
            event = await self.next_event(None if ends_at is None else ends_at - self.loop_time)
            match event:
                case None:
                    # A transfer restarts nothing: the limit counts from the first answer.
                    b.request("BYE")
                    self._bye_a()
                    self.summary.details["time_limit_reached"] = True
                    raise self.end(
                        CallStatus.ANSWERED, "call time limit reached", code=200, by="system"
                    )
                case TransferRequested(number=number, done=done):
                    moved_to = await self._transfer(b, number)
                    if not done.done():
                        done.set_result(moved_to is not None)
                    if moved_to is not None:
                        b = moved_to
                case AckReceived():
                    self.a_acked = True
                case AckTimedOut():
                    b.request("BYE")
                    self._bye_a()
                    raise self.end(
                        CallStatus.ANSWERED, "no ACK from the caller", code=200, by="system"
                    )
                case HangupRequested(reason=reason):
                    b.request("BYE")
                    self._bye_a()
                    raise self.end(CallStatus.ANSWERED, reason, code=200, by="system")
                case RequestReceived(key=key, request=request):
                    await self._in_dialog_request(key, request, b)
                case ResponseReceived(key=key, response=response):
                    await self._relayed_response(key, response, b)
                case DigitReceived():
                    self.digit_received(event)
                case CancelReceived():
                    pass  # too late: the call was answered (the engine answered 200 anyway)
                case _:
                    pass

    async def _transfer(self, b: OutboundLeg, number: str) -> OutboundLeg | None:
        """Bridge the caller to ``number`` instead of ``b`` (Tata "call options" type 4).

        The new leg is offered the caller's media afresh; only when it answers is the
        caller's side pointed at it and the old leg sent BYE. If it does not answer,
        the media is pointed back at the old leg and the call goes on as it was."""
        media = self.ports.media
        a_tag = self.a.media_tag
        a_sdp = sdp_text(self.a.invite.body)
        b_tag = b.dialog.remote_tag if b.dialog else ""
        b_answer = b.last_answer_sdp
        try:
            offer = await media.offer(self.id, a_tag, a_sdp)
        except Exception as exc:
            log.warning("call %s: transfer offer failed: %s", self.summary.public_call_id, exc)
            return None
        c = self.ports.legs.outbound(
            number, self.summary.caller_id_shown or self.summary.did or number, offer.encode()
        )
        self.own_sip_call_id(c.call_id)
        self.track(c.start())
        legs: list[dict[str, object]] = self.summary.details.setdefault("legs", [])
        answered, code = await self._ring_transfer(b, c)
        legs.append({"number": number, "code": code, "call_id": c.call_id, "transfer": True})
        if not answered:
            with contextlib.suppress(Exception):
                await media.offer(self.id, a_tag, a_sdp)
                await media.answer(self.id, a_tag, b_tag, b_answer)
            return None
        c_tag = c.dialog.remote_tag if c.dialog else ""
        await media.answer(self.id, a_tag, c_tag, c.last_answer_sdp)
        legs.insert(0, {"number": self.summary.callee, "call_id": b.call_id, "transferred": True})
        b.request("BYE")
        self.b = c
        self.summary.callee = number
        self.summary.b_sip_call_id = c.call_id
        self.summary.command = "transfer"
        return c

    async def _ring_transfer(self, b: OutboundLeg, c: OutboundLeg) -> tuple[bool, int | None]:
        deadline = self.loop_time + self.ports.ring_timeout_s
        while True:
            event = await self.next_event(deadline - self.loop_time)
            match event:
                case None:
                    c.cancel()
                    return False, 408
                case ResponseReceived(key=key, response=response) if key == c.key:
                    if response.status in (401, 407) and not c.auth_attempted:
                        retry_key = c.retry_with_credentials(response)
                        if retry_key is not None:
                            self.track(retry_key)
                            continue
                    c.on_response(response)
                    if response.status < 200:
                        continue
                    return 200 <= response.status < 300, response.status
                case TransactionTimedOut(key=key) if key == c.key:
                    return False, None
                case RequestReceived(key=key, request=request) if request.method == "BYE":
                    c.cancel()
                    await self._in_dialog_request(key, request, b)
                case RequestReceived(key=key, request=request):
                    self._answer(request.call_id == self.a.call_id, b, key, request, 491)
                case HangupRequested(reason=reason):
                    c.cancel()
                    b.request("BYE")
                    self._bye_a()
                    raise self.end(CallStatus.ANSWERED, reason, code=200, by="system")
                case _:
                    pass

    def _bye_a(self) -> None:
        if self.a.dialog is not None:
            self.a.request("BYE")

    async def _in_dialog_request(self, key: str, request: Request, b: OutboundLeg) -> None:
        from_a = request.call_id == self.a.call_id
        match request.method:
            case "BYE":
                if from_a:
                    self.a.answer_request(key, request, 200)
                    b.request("BYE")
                    raise self.end(CallStatus.ANSWERED, "caller hung up", code=200, by="caller")
                b.answer_request(key, request, 200)
                self._bye_a()
                raise self.end(CallStatus.ANSWERED, "called party hung up", code=200, by="callee")
            case "INVITE" | "UPDATE" if request.body:
                await self._relay_offer(key, request, from_a, b)
            case "INVITE" | "UPDATE":
                # An offerless re-INVITE (session refresh): answer with the SDP we last gave.
                self._answer(from_a, b, key, request, 200)
            case "INFO" if digit := digit_of_info(
                request.headers.get("Content-Type"), request.body
            ):
                self._answer(from_a, b, key, request, 200)
                self.digit_received(DigitReceived(digit, "caller" if from_a else "callee", "info"))
            case _:
                self._answer(from_a, b, key, request, 200)

    def _answer(
        self,
        from_a: bool,
        b: OutboundLeg,
        key: str,
        request: Request,
        status: int,
        sdp: bytes = b"",
    ) -> None:
        if from_a:
            self.a.answer_request(key, request, status, sdp=sdp)
        else:
            b.answer_request(key, request, status, sdp=sdp)

    async def _relay_offer(self, key: str, request: Request, from_a: bool, b: OutboundLeg) -> None:
        """Hold/resume and codec changes: a re-INVITE or UPDATE with SDP from one side
        is re-offered through rtpengine and sent to the other side."""
        if self._relays:
            self._answer(from_a, b, key, request, 491)  # RFC 3261 14.2: one offer at a time
            return
        from_tag = self.a.media_tag if from_a else (b.dialog.remote_tag if b.dialog else "")
        try:
            sdp = await self.ports.media.offer(self.id, from_tag, sdp_text(request.body))
        except Exception as exc:
            log.warning("call %s: re-offer failed: %s", self.summary.public_call_id, exc)
            self._answer(from_a, b, key, request, 500)
            return
        target_key = (
            b.request(request.method, sdp=sdp.encode())
            if from_a
            else self.a.request(request.method, sdp=sdp.encode())
        )
        self.track(target_key)
        self._relays[target_key] = ("a" if from_a else "b", key, request)

    async def _relayed_response(self, key: str, response: Response, b: OutboundLeg) -> None:
        relay = self._relays.get(key)
        if relay is None:
            if key == b.key and 200 <= response.status < 300:
                b.on_response(response)  # a retransmitted 200: re-ACK
            return
        if response.status < 200:
            return
        del self._relays[key]
        origin, origin_key, original = relay
        from_a = origin == "a"
        if response.status >= 300:
            self._answer(from_a, b, origin_key, original, response.status)
            return
        a_tag = self.a.media_tag
        b_tag = b.dialog.remote_tag if b.dialog else ""
        offer_tag, answer_tag = (a_tag, b_tag) if from_a else (b_tag, a_tag)
        try:
            sdp = await self.ports.media.answer(
                self.id, offer_tag, answer_tag, sdp_text(response.body)
            )
        except Exception as exc:
            log.warning("call %s: re-answer failed: %s", self.summary.public_call_id, exc)
            sdp = ""
        if original.method == "INVITE":
            self._ack_relayed(from_a, b, key, response)
        self._answer(from_a, b, origin_key, original, 200, sdp.encode())

    def _ack_relayed(self, from_a: bool, b: OutboundLeg, key: str, response: Response) -> None:
        """ACK the 2xx of a re-INVITE we sent (RFC 3261 13.2.2.4)."""
        if from_a:
            assert b.dialog is not None
            cseq = response.cseq[0]
            ack = b.dialog.create_request("ACK", via=b.local.via(b.trunk.reliable), cseq=cseq)
            self.ports.legs.send_ack(key, ack, b.destination, b.trunk.reliable)
        else:
            assert self.a.dialog is not None
            cseq = response.cseq[0]
            ack = self.a.dialog.create_request(
                "ACK", via=self.a.local.via(self.a.reliable), cseq=cseq
            )
            self.ports.legs.send_ack(key, ack, self.a.source, self.a.reliable)

    def _answer_stray(self, key: str, request: Request) -> None:
        if request.call_id == self.a.call_id:
            self.a.answer_request(key, request, 481 if request.method == "BYE" else 491)
        elif self.b is not None:
            self.b.answer_request(key, request, 481 if request.method == "BYE" else 491)

    # -- announcement ------------------------------------------------------------

    async def _announce(self, decision: PlayAudio) -> None:
        self.summary.command = "audio"
        self.summary.file_id = decision.file_id
        path = await self._while_ringing(
            self.ports.prompts.audio_path(self.summary.account_id, decision.file_id)
        )
        if path is None:
            raise self._refuse(
                480,
                CallStatus.FAILED,
                f"unknown fileId {decision.file_id}",
                "Temporarily Unavailable",
            )
        await self._media(self._anchor_caller())
        sdp = await self._media(
            self.ports.media.answer(self.id, self.a.media_tag, ANNOUNCEMENT_TAG, ANNOUNCEMENT_SDP)
        )
        self.a.respond(200, "OK", sdp=sdp.encode())
        self.enter(Phase.PLAYING)
        self.summary.times.answered = self.loop_time
        self.summary.status = CallStatus.ANSWERED
        self.ports.book.opened(self)
        self.ports.book.answered(self)
        try:
            duration_ms = await self.ports.media.play_media(self.id, self.a.media_tag, str(path))
        except Exception as exc:
            self._bye_a()
            raise self.end(
                CallStatus.FAILED, f"playback failed: {exc}", code=200, by="system"
            ) from exc
        self.summary.details["audio_ms"] = duration_ms
        ends_at = self.loop_time + duration_ms / 1000
        while True:
            event = await self.next_event(ends_at - self.loop_time)
            match event:
                case None:
                    self._bye_a()
                    raise self.end(
                        CallStatus.ANSWERED, "announcement finished", code=200, by="system"
                    )
                case RequestReceived(key=key, request=request) if request.method == "BYE":
                    self.a.answer_request(key, request, 200)
                    raise self.end(CallStatus.ANSWERED, "caller hung up", code=200, by="caller")
                case RequestReceived(key=key, request=request):
                    self.a.answer_request(key, request, 488 if request.body else 200)
                case HangupRequested(reason=reason):
                    self._bye_a()
                    raise self.end(CallStatus.ANSWERED, reason, code=200, by="system")
                case AckTimedOut():
                    self._bye_a()
                    raise self.end(
                        CallStatus.ANSWERED, "no ACK from the caller", code=200, by="system"
                    )
                case _:
                    pass

    async def _prompt_and_refuse(self, decision: PlayPrompt) -> None:
        """Speak ``decision.text`` as early media (183 with rtpengine's SDP), then send
        the final refusal: the caller hears why, and the call is never answered (and
        so never billed as answered by the carrier)."""
        self.summary.command = "prompt"
        audio = await self._while_ringing(self.ports.prompts.render(decision.text))
        await self._media(self._anchor_caller())
        sdp = await self._media(
            self.ports.media.answer(self.id, self.a.media_tag, ANNOUNCEMENT_TAG, ANNOUNCEMENT_SDP)
        )
        self.a.respond(183, "Session Progress", sdp=sdp.encode())
        self.enter(Phase.PLAYING)
        duration_ms = await self._media(
            self.ports.media.play_media(self.id, self.a.media_tag, str(audio))
        )
        self.summary.details["prompt_ms"] = duration_ms
        ends_at = self.loop_time + duration_ms / 1000
        while True:
            event = await self.next_event(ends_at - self.loop_time)
            if event is None:
                break
            self._before_answer(event)
        raise self._refuse(decision.code, CallStatus.FAILED, decision.cause, decision.reason)

    # -- PIN ------------------------------------------------------------------------

    async def _ask_pin(self, gate: PinGate) -> DialNumbers:
        """Answer the caller, prompt for the PIN and collect digits until it is right;
        return what the PIN says to dial, or end the call as failed after the last
        wrong attempt."""
        self.summary.command = "pin"
        outcome: dict[str, object] = {"attempts": 0}
        self.summary.details["pin"] = outcome
        prompt, outcome["prompt"] = await self._while_ringing(
            self._prompt(gate.prompt_file_id, gate.prompt)
        )
        incorrect, outcome["incorrect_prompt"] = await self._while_ringing(
            self._prompt(gate.incorrect_file_id, gate.incorrect)
        )
        await self._media(self._anchor_caller())
        sdp = await self._media(
            self.ports.media.answer(self.id, self.a.media_tag, ANNOUNCEMENT_TAG, ANNOUNCEMENT_SDP)
        )
        self.a.respond(200, "OK", sdp=sdp.encode())
        answered_at = time.perf_counter()
        self.enter(Phase.PLAYING)
        self.ports.book.opened(self)
        for attempt in range(1, gate.attempts + 1):
            outcome["attempts"] = attempt
            prompt_ms = await self._play_to_caller(prompt)
            if attempt == 1:
                outcome["prompt_start_ms"] = round((time.perf_counter() - answered_at) * 1000, 1)
            entered = await self._collect_digits(
                len(gate.pin) or MAX_PIN_DIGITS, self.loop_time + prompt_ms / 1000 + gate.wait_s
            )
            then = await gate.check(entered)  # a local read, or a comparison
            if then is not None:
                outcome["result"] = "correct"
                return then
            await self._wait_in_prompt(await self._play_to_caller(incorrect) / 1000)
        outcome["result"] = "incorrect"
        self._bye_a()
        raise self.end(
            CallStatus.FAILED,
            f"incorrect PIN after {gate.attempts} attempts",
            code=200,
            by="system",
        )

    async def _prompt(self, file_id: str | None, text: str) -> tuple[Path, str]:
        """The customer's audio file for a prompt, else ``text`` spoken; and which it
        is ("file <id>", "speech"; "speech, file <id> missing" when the file is gone,
        deleted through the files API)."""
        if file_id is None:
            return await self.ports.prompts.render(text), "speech"
        path = await self.ports.prompts.audio_path(self.summary.account_id, file_id)
        if path is not None:
            return path, f"file {file_id}"
        log.warning(
            "call %s: prompt audio %s is gone; speaking the prompt instead",
            self.summary.public_call_id,
            file_id,
        )
        return await self.ports.prompts.render(text), f"speech, file {file_id} missing"

    async def _play_to_caller(self, audio: Path) -> int:
        try:
            return await self.ports.media.play_media(self.id, self.a.media_tag, str(audio))
        except Exception as exc:
            self._bye_a()
            raise self.end(
                CallStatus.FAILED, f"playback failed: {exc}", code=200, by="system"
            ) from exc

    async def _collect_digits(self, length: int, deadline: float) -> str:
        """The caller's digits until ``#``, ``length`` of them, or ``deadline``."""
        digits = ""
        while len(digits) < length:
            event = await self.next_event(deadline - self.loop_time)
            if event is None:
                break
            digit = self._digit_while_prompting(event)
            if digit == "#":
                break
            if digit is not None:
                digits += digit
        return digits

    async def _wait_in_prompt(self, seconds: float) -> None:
        """Let a prompt play out; digits pressed meanwhile are dropped."""
        ends_at = self.loop_time + seconds
        while (event := await self.next_event(ends_at - self.loop_time)) is not None:
            self._digit_while_prompting(event)

    def _digit_while_prompting(self, event: CallEvent) -> str | None:
        """What the caller's leg can do while callmask itself answered it."""
        match event:
            case DigitReceived(digit=digit, side="caller"):
                self.digit_received(event)
                return digit
            case RequestReceived(key=key, request=request) if request.method == "BYE":
                self.a.answer_request(key, request, 200)
                raise self.end(
                    CallStatus.FAILED, "caller hung up at the PIN prompt", code=200, by="caller"
                )
            case RequestReceived(key=key, request=request) if request.method == "INFO":
                pressed = digit_of_info(request.headers.get("Content-Type"), request.body)
                self.a.answer_request(key, request, 200)
                if pressed is not None:
                    self.digit_received(DigitReceived(pressed, "caller", "info"))
                return pressed
            case RequestReceived(key=key, request=request):
                self.a.answer_request(key, request, 488 if request.body else 200)
            case HangupRequested(reason=reason):
                self._bye_a()
                raise self.end(CallStatus.FAILED, reason, code=200, by="system")
            case AckReceived():
                self.a_acked = True
            case AckTimedOut():
                self._bye_a()
                raise self.end(CallStatus.FAILED, "no ACK from the caller", code=200, by="system")
            case _:
                pass
        return None

    # -- the end -------------------------------------------------------------------

    async def teardown(self) -> None:
        self.ended = True
        if self._unblock is not None:
            self._unblock.cancel()
        self.summary.times.ended = self.loop_time
        b = self.b
        if b is not None and b.final_status is None:
            b.cancel()
            # Give the far end a moment to answer the CANCEL (or the 200 that crossed it).
            grace_ends = self.loop_time + TEARDOWN_GRACE_S
            while b.final_status is None:
                event = await self.next_event(grace_ends - self.loop_time)
                if event is None:
                    break
                if isinstance(event, ResponseReceived) and event.key == b.key:
                    b.on_response(event.response)
                    if 200 <= event.response.status < 300:
                        b.request("BYE")
        if not self.a.final_sent:
            self.a.respond(480, "Temporarily Unavailable")
        await self.delete_media()
