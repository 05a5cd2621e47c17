"""Calls callmask places itself (third-party call control, RFC 3725 flow I adapted to
an anchoring media relay): click-to-call and announcements such as OTPs.

Nobody offers SDP first, so rtpengine is given a placeholder offer for the side that
will be called second (port 9, the discard port) and produces the SDP for the first
leg. When the second party answers, its real SDP is re-offered on that side, so
rtpengine sends to it from then on; rtpengine keeps the ports it handed out for a side,
so the first party needs no re-INVITE.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from callmask.calls.base import (
    CallBase,
    HangupRequested,
    sdp_text,
)
from callmask.calls.control import Announcement, ClickToCall
from callmask.calls.legs import OutboundLeg
from callmask.calls.outcome import CallStatus, CallSummary, status_for_code
from callmask.calls.phase import Phase
from callmask.calls.sdp import audio_endpoint
from callmask.routing import tata
from callmask.routing.route import Report
from callmask.sip.message import Request, Response
from callmask.sip.transaction import RequestReceived, ResponseReceived, TransactionTimedOut

if TYPE_CHECKING:
    from pathlib import Path

    from callmask.calls.ports import CallPorts

log = logging.getLogger(__name__)

TEARDOWN_GRACE_S = 2.0


def placeholder_sdp(host: str) -> str:
    return (
        f"v=0\r\no=callmask 1 1 IN IP4 {host}\r\ns=callmask\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    )


class PlacedCall(CallBase, abc.ABC):
    """Shared by the flows below: placing legs, ringing them, tearing them down."""

    def __init__(self, ports: CallPorts, summary: CallSummary, webhook_url: str | None) -> None:
        super().__init__(ports, summary)
        self.webhook_url = webhook_url
        self.legs: list[OutboundLeg] = []
        self.answers: dict[str, Response] = {}
        self.hung_up: OutboundLeg | None = None

    async def placeholder_offer(self, side: str) -> str:
        """Start the media session with a placeholder for ``side`` (the party called
        second, or the announcement); returns the SDP for the party called first."""
        placeholder = placeholder_sdp(self.ports.legs.local.host)
        self.media_tag = side
        try:
            offer = await self.ports.media.offer(self.id, side, placeholder)
        except Exception as exc:
            raise self.end(CallStatus.FAILED, f"media anchor failed: {exc}", by="system") from exc
        self.media_started = True
        return offer

    def place(self, number: str, caller_id: str, sdp: str) -> OutboundLeg:
        self.enter(Phase.DIALLING)
        leg = self.ports.legs.outbound(number, caller_id, sdp.encode())
        self.legs.append(leg)
        self.own_sip_call_id(leg.call_id)
        self.track(leg.start())
        return leg

    async def ring(self, leg: OutboundLeg) -> tuple[bool, int | None]:
        """Wait for ``leg``'s final answer (ring timeout applies); BYE from an already
        answered leg or an operator hangup end the call."""
        deadline = self.loop_time + self.ports.ring_timeout_s
        while True:
            event = await self.next_event(deadline - self.loop_time)
            match event:
                case None:
                    leg.cancel()
                    return False, 408
                case HangupRequested(reason=reason):
                    leg.cancel()
                    raise self.end(CallStatus.FAILED, reason, by="system")
                case ResponseReceived(key=key, response=response) if key == leg.key:
                    status = response.status
                    if status in (401, 407) and not leg.auth_attempted:
                        retry_key = leg.retry_with_credentials(response)
                        if retry_key is not None:
                            self.track(retry_key)
                            continue
                    leg.on_response(response)
                    if status < 200:
                        if status > 100:
                            self.enter(Phase.RINGING)
                            if self.summary.times.ringing is None:
                                self.summary.times.ringing = self.loop_time
                        continue
                    if status < 300:
                        self.answers[leg.call_id] = response
                        return True, status
                    return False, status
                case TransactionTimedOut(key=key) if key == leg.key:
                    return False, (408 if leg.provisional_seen else None)
                case RequestReceived(key=key, request=request):
                    self.answer_in_dialog(key, request)
                case _:
                    pass

    async def reinvite(self, leg: OutboundLeg, sdp: str) -> str | None:
        """Send ``leg`` a new offer (RFC 3261 14.1); its answer SDP, or None if refused."""
        key = leg.request("INVITE", sdp=sdp.encode())
        self.track(key)
        deadline = self.loop_time + self.ports.ring_timeout_s
        while True:
            event = await self.next_event(deadline - self.loop_time)
            match event:
                case None:
                    return None
                case HangupRequested(reason=reason):
                    raise self.end(CallStatus.FAILED, reason, by="system")
                case ResponseReceived(key=got, response=response) if got == key:
                    if response.status < 200:
                        continue
                    if response.status >= 300:
                        return None
                    assert leg.dialog is not None
                    ack = leg.dialog.create_request(
                        "ACK", via=leg.local.via(leg.trunk.reliable), cseq=response.cseq[0]
                    )
                    self.ports.legs.send_ack(key, ack, leg.destination, leg.trunk.reliable)
                    return sdp_text(response.body) or None
                case TransactionTimedOut(key=got) if got == key:
                    return None
                case RequestReceived(key=request_key, request=request):
                    self.answer_in_dialog(request_key, request)
                case _:
                    pass

    def answer_in_dialog(self, key: str, request: Request) -> None:
        """A request on one of our legs while we are busy elsewhere: BYE ends the call."""
        leg = next((leg for leg in self.legs if leg.call_id == request.call_id), None)
        if leg is None:
            return
        if request.method == "BYE":
            leg.answer_request(key, request, 200)
            leg.final_status = leg.final_status or 200
            self.hung_up = leg
            raise self.end(
                CallStatus.ANSWERED if self.summary.times.answered else CallStatus.FAILED,
                f"{self.role(leg)} hung up",
                code=200,
                by=self.role(leg),
            )
        # Offers while bridged: we keep the session as it is (no hold relay for placed calls).
        leg.answer_request(key, request, 488 if request.body else 200)

    def role(self, leg: OutboundLeg) -> str:
        return "callee"

    async def hold(self, until_s: float | None) -> str:
        """Talk until someone hangs up, the operator ends the call, or ``until_s``."""
        while True:
            timeout = None if until_s is None else until_s - self.loop_time
            event = await self.next_event(timeout)
            match event:
                case None:
                    return "call time limit reached"
                case HangupRequested(reason=reason):
                    return reason
                case RequestReceived(key=key, request=request):
                    self.answer_in_dialog(key, request)
                case _:
                    pass

    def started(self) -> None:
        self.ports.book.opened(self)

    async def teardown(self) -> None:
        self.ended = True
        self.summary.times.ended = self.loop_time
        for leg in self.legs:
            if leg is self.hung_up:
                continue
            if leg.final_status is None:
                leg.cancel()
            elif 200 <= leg.final_status < 300:
                leg.request("BYE")
        grace_ends = self.loop_time + TEARDOWN_GRACE_S
        while any(leg.final_status is None and leg.key for leg in self.legs):
            event = await self.next_event(grace_ends - self.loop_time)
            if event is None:
                break
            if isinstance(event, ResponseReceived):
                pending = next((x for x in self.legs if x.key == event.key), None)
                if pending is not None and pending.final_status is None:
                    pending.on_response(event.response)
                    if 200 <= event.response.status < 300:
                        pending.request("BYE")
        await self.delete_media()

    def report(self) -> Report | None:
        if not self.webhook_url:
            return None
        return Report(self.webhook_url, tata.CALL_DETAILS, tata.call_details_of(self.summary))


class ClickToCallFlow(PlacedCall):
    """Agent first; when the agent answers, the customer, showing the masked caller ID."""

    CUSTOMER_SIDE = "customer"

    def __init__(self, ports: CallPorts, summary: CallSummary, request: ClickToCall) -> None:
        super().__init__(ports, summary, request.webhook_url)
        self.request = request
        self.agent_answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.agent: OutboundLeg | None = None

    def role(self, leg: OutboundLeg) -> str:
        return "agent" if leg is self.agent else "customer"

    def _agent_result(self, answered: bool) -> None:
        if not self.agent_answered.done():
            self.agent_answered.set_result(answered)

    async def teardown(self) -> None:
        self._agent_result(False)
        await super().teardown()

    async def flow(self) -> None:
        request = self.request
        media = self.ports.media
        agent_offer = await self.placeholder_offer(self.CUSTOMER_SIDE)
        agent = self.place(request.agent_number, request.caller_id, agent_offer)
        self.agent = agent
        answered, code = await self.ring(agent)
        if not answered:
            raise self.end(status_for_code(code), f"agent did not answer ({code})", code=code)
        agent_tag = agent.dialog.remote_tag if agent.dialog else ""
        agent_sdp = sdp_text(self.answers[agent.call_id].body)
        customer_offer = await media.answer(self.id, self.CUSTOMER_SIDE, agent_tag, agent_sdp)
        self._agent_result(True)
        limit_at = self.loop_time + request.call_timeout_s if request.call_timeout_s else None
        customer = self.place(request.destination_number, request.caller_id, customer_offer)
        answered, code = await self.ring(customer)
        if not answered:
            raise self.end(
                status_for_code(code), f"customer did not answer ({code})", code=code, by="system"
            )
        # Now the customer's real address replaces the placeholder on its side. The
        # re-offer moves rtpengine's agent-facing port, so the agent is re-INVITEd to it.
        customer_sdp = sdp_text(self.answers[customer.call_id].body)
        agent_reoffer = await media.offer(self.id, self.CUSTOMER_SIDE, customer_sdp)
        if audio_endpoint(agent_reoffer) != audio_endpoint(agent_offer):
            agent_sdp = await self.reinvite(agent, agent_reoffer) or agent_sdp
        await media.answer(self.id, self.CUSTOMER_SIDE, agent_tag, agent_sdp)
        self.enter(Phase.BRIDGED)
        self.summary.times.answered = self.loop_time
        self.summary.status = CallStatus.ANSWERED
        self.ports.book.answered(self)
        cause = await self.hold(limit_at)
        raise self.end(CallStatus.ANSWERED, cause, code=200, by="system")


class AnnouncementFlow(PlacedCall):
    """Call the customer and, once answered, play a spoken message, then hang up."""

    ANNOUNCEMENT_SIDE = "announcement"

    def __init__(
        self, ports: CallPorts, summary: CallSummary, request: Announcement, audio: Path
    ) -> None:
        super().__init__(ports, summary, request.webhook_url)
        self.request = request
        self.audio = audio

    def role(self, leg: OutboundLeg) -> str:
        return "customer"

    async def flow(self) -> None:
        media = self.ports.media
        offer = await self.placeholder_offer(self.ANNOUNCEMENT_SIDE)
        customer = self.place(self.request.customer_number, self.request.caller_id, offer)
        answered, code = await self.ring(customer)
        if not answered:
            raise self.end(status_for_code(code), f"customer did not answer ({code})", code=code)
        customer_tag = customer.dialog.remote_tag if customer.dialog else ""
        await media.answer(
            self.id,
            self.ANNOUNCEMENT_SIDE,
            customer_tag,
            sdp_text(self.answers[customer.call_id].body),
        )
        self.summary.times.answered = self.loop_time
        self.summary.status = CallStatus.ANSWERED
        self.enter(Phase.BRIDGED)
        self.ports.book.answered(self)
        self.enter(Phase.PLAYING)
        duration_ms = await media.play_media(self.id, customer_tag, str(self.audio))
        self.summary.details["audio_ms"] = duration_ms
        cause = await self.hold(self.loop_time + duration_ms / 1000)
        if cause == "call time limit reached":
            cause = "announcement finished"
        raise self.end(CallStatus.ANSWERED, cause, code=200, by="system")


async def wait_for_agent(flow: ClickToCallFlow) -> bool:
    with contextlib.suppress(asyncio.CancelledError):
        return await flow.agent_answered
    return False
