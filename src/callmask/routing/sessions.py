"""Routing for DIDs in a session pool (Twilio Proxy's model, ``callmask.sessions``).

``SessionRouting``: the caller is a participant of an open session and dialled the
proxy number they were given. The call becomes an interaction of the session; the
service's ``InterceptCallbackUrl`` (if any) is asked first, form-encoded with the
parameters Twilio Proxy sends; then the other participant is dialled with *their*
proxy number as the caller ID, so each side only ever sees a pool number. Twilio lets
an interaction continue unless the intercept answers 403; callmask blocks on any
non-2xx and on a timeout or an unreachable server (the caller gets 403 Forbidden),
because a check that could not be made is not a check that passed.

``OutOfSessionRouting``: the DID is a pool number but the caller has no open session
on it. The service's ``OutOfSessionCallbackUrl`` is asked like an Infobip callback
(``{"from", "to"}``; the answer may dial or play audio); without one, the caller hears
that the number is no longer in service and gets 404.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import aiohttp

from callmask.calls.ledger import Kept
from callmask.calls.outcome import CallStatus, CallSummary
from callmask.errors import InvalidInput
from callmask.netguard import check_url
from callmask.outbound import OutboundFailure, outbound_failures
from callmask.routing import infobip
from callmask.routing.decisions import (
    Decision,
    DialNumbers,
    PinGate,
    PlayPrompt,
    RoutingRefused,
)
from callmask.routing.route import Exchange, Report
from callmask.sessions.calls import (
    PoolRoute,
    SessionRoute,
    SharedByPin,
    find_by_pin,
    interaction_kept,
    new_interaction_sid,
)
from callmask.sessions.lifetime import twilio_time
from callmask.store.models import utcnow
from callmask.store.postdial import PostDialReader

SESSION = "session"
OUT_OF_SESSION = "out_of_session"
NOT_IN_SERVICE = "The number you have dialled is no longer in service."

# How a call's end reads in the interaction's resource statuses (Twilio's call statuses).
_INBOUND_STATUS = {
    CallStatus.ANSWERED: "completed",
    CallStatus.BUSY: "completed",
    CallStatus.NO_ANSWER: "completed",
    CallStatus.FAILED: "failed",
    CallStatus.CONGESTION: "failed",
}
_OUTBOUND_STATUS = {
    CallStatus.ANSWERED: "completed",
    CallStatus.BUSY: "busy",
    CallStatus.NO_ANSWER: "no-answer",
    CallStatus.FAILED: "failed",
    CallStatus.CONGESTION: "failed",
}


@dataclass(slots=True)
class SessionRouting:
    exchange: Exchange
    route: SessionRoute
    did: str
    action_key: str | None = None
    service: str = SESSION
    interaction_sid: str | None = None
    # The caller shares the DID among PIN sessions: the PIN picks the route.
    shared: SharedByPin | None = None
    reader: PostDialReader | None = None

    @property
    def account_id(self) -> str:
        return self.route.account_id

    async def decide(self, summary: CallSummary) -> Decision:
        route = self.route
        if self.shared is not None:
            # Which session is the PIN's: known only once the caller has keyed it in.
            pin = route.pin
            assert pin is not None, "shared numbers are for PIN sessions only"
            return PinGate(
                pin="",
                then=self._dial(route),
                attempts=pin.attempts,
                wait_s=pin.wait_s,
                lookup=lambda entered: self._by_pin(entered, summary),
                prompt_file_id=pin.prompt_file_id,
                incorrect_file_id=pin.incorrect_file_id,
            )
        await self._begin(summary)
        dial = self._dial(route)
        if route.pin is None:
            return dial
        return PinGate(
            pin=route.pin.pin,
            then=dial,
            attempts=route.pin.attempts,
            wait_s=route.pin.wait_s,
            prompt_file_id=route.pin.prompt_file_id,
            incorrect_file_id=route.pin.incorrect_file_id,
        )

    async def _begin(self, summary: CallSummary) -> None:
        """The call is the route's session's interaction from here on."""
        route = self.route
        # The row is written with the CDR (sessions.calls.interaction_kept).
        self.interaction_sid = new_interaction_sid()
        summary.details["session_sid"] = route.session_sid
        summary.details["interaction_sid"] = self.interaction_sid
        if route.intercept_callback_url:
            await self._intercept(route.intercept_callback_url, summary, utcnow())

    @staticmethod
    def _dial(route: SessionRoute) -> DialNumbers:
        return DialNumbers(
            numbers=(route.callee_identifier,),
            caller_id=route.callee_proxy_identifier,
            time_limit_s=route.time_limit_s,
            record=route.record,
        )

    async def _by_pin(self, entered: str, summary: CallSummary) -> DialNumbers | None:
        assert self.shared is not None and self.reader is not None
        found = await find_by_pin(self.reader, self.shared, entered)
        if found is None or found.pin is None:
            return None
        self.route = found
        await self._begin(summary)
        return self._dial(found)

    def report(self, summary: CallSummary) -> Report | None:
        # The interaction's event goes to the service's CallbackUrl with the rows
        # ``ended`` keeps (sessions.calls.interaction_kept), with its statuses.
        return None

    def ended(self, summary: CallSummary) -> Kept | None:
        if self.interaction_sid is None:
            return None  # refused before the interaction existed
        return interaction_kept(
            self.route,
            self.interaction_sid,
            call_id=summary.public_call_id,
            started_at=summary.invited_utc,
            inbound_status=_INBOUND_STATUS[summary.status],
            outbound_status=_OUTBOUND_STATUS[summary.status],
            duration_s=summary.times.talk_seconds(),
            now=utcnow(),
        )

    async def _intercept(self, url: str, summary: CallSummary, now: dt.datetime) -> None:
        route = self.route
        stamp = twilio_time(now)
        assert stamp is not None
        form = {
            "interactionSid": self.interaction_sid or "",
            "interactionSessionSid": route.session_sid,
            "interactionServiceSid": route.service_sid,
            "interactionAccountSid": route.account_id,
            "interactionType": "Voice",
            "interactionData": "",
            "interactionDateCreated": stamp,
            "interactionDateUpdated": stamp,
            "inboundParticipantSid": route.caller_participant_sid,
            "inboundResourceSid": summary.public_call_id,
            "inboundResourceStatus": "in-progress",
            "inboundResourceType": "call",
            "outboundParticipantSid": route.callee_participant_sid,
            "outboundResourceStatus": "initiated",
            "outboundResourceType": "call",
        }
        status = await post_form(self.exchange, url, form)
        if not 200 <= status < 300:
            raise RoutingRefused(f"intercept callback answered HTTP {status}: blocked")


async def post_form(exchange: Exchange, url: str, form: dict[str, str]) -> int:
    """POST ``form`` and return the answer's status; any way of getting no answer (a
    refused URL, a timeout, a server that cannot be reached) is ``RoutingRefused``."""
    try:
        check_url(url, allow_private=exchange.allow_private)
    except InvalidInput as exc:
        raise RoutingRefused(f"intercept callback url refused: {exc}") from exc
    try:
        with outbound_failures(exchange.timeout_s):
            async with exchange.http.post(
                url,
                data=form,
                timeout=aiohttp.ClientTimeout(total=exchange.timeout_s),
                allow_redirects=False,
            ) as reply:
                return reply.status
    except OutboundFailure as exc:
        raise RoutingRefused(f"intercept callback {exc}: blocked") from exc


@dataclass(slots=True)
class OutOfSessionRouting:
    exchange: Exchange
    route: PoolRoute
    did: str
    action_key: str | None = None
    service: str = OUT_OF_SESSION

    @property
    def account_id(self) -> str:
        return self.route.account_id

    async def decide(self, summary: CallSummary) -> Decision:
        url = self.route.out_of_session_callback_url
        if not url:
            return PlayPrompt(
                text=NOT_IN_SERVICE,
                code=404,
                reason="Not Found",
                cause="no open session for the caller on this pool number",
            )
        exchange = self.exchange
        return await infobip.ask(
            exchange.http,
            url,
            caller=summary.caller,
            did=self.did,
            timeout_s=exchange.timeout_s,
            allow_private=exchange.allow_private,
            default_region=exchange.default_region,
        )

    def report(self, summary: CallSummary) -> Report | None:
        return None

    def ended(self, summary: CallSummary) -> Kept | None:
        return None
