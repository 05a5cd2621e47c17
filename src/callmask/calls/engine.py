"""The call engine: receives every SIP event from the endpoint, starts a call for each
new INVITE from the trunk, hands each later event to the call it belongs to, and writes
each call's CDR and status report when it ends.

Admission (RFC 3261 8.2 and the operator's rules): INVITEs from outside
``CALLMASK_TRUNK_ALLOW`` get 403; a DID that is not ours or has no action gets 404
without asking anyone; while shutting down, 503.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import ipaddress
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import aiohttp

from callmask.calls import metrics, recovery
from callmask.calls.base import (
    CallBase,
    CancelReceived,
    DigitReceived,
    HangupRequested,
    TransferRequested,
)
from callmask.calls.call import InboundCall
from callmask.calls.control import Announcement, ClickToCall, LiveCall
from callmask.calls.endpoint import SipEndpoint
from callmask.calls.ledger import CallAnswered, CallClosed, CallLedger, CallOpened
from callmask.calls.legs import (
    ALLOW,
    InboundLeg,
    LocalAddress,
    Trunk,
    TrunkLegs,
    caller_of,
    parse_trunk,
    request_user,
)
from callmask.calls.origination import AnnouncementFlow, ClickToCallFlow
from callmask.calls.origination import wait_for_agent as agent_answered
from callmask.calls.outcome import CallSummary, CallTimes, new_public_call_id
from callmask.calls.ports import CallPorts, MediaRelay
from callmask.calls.sdp import MaskedMedia
from callmask.config import Settings
from callmask.logs import call_id_var
from callmask.media.dtmf import DtmfReport
from callmask.media.rtpengine_process import ManagedRtpengine
from callmask.media.tts import TextToSpeech
from callmask.routing.decisions import Decision, RoutingFailed, UnknownNumber
from callmask.routing.reports import payload_for
from callmask.routing.route import CallRouting, Exchange
from callmask.routing.table import RoutingTable
from callmask.sip.message import RandomHex, Request, make_response
from callmask.sip.transaction import (
    AckReceived,
    AckTimedOut,
    Event,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionTimedOut,
)
from callmask.store.database import Database
from callmask.store.repositories import AudioFiles
from callmask.webhooks.outbox import new_event

log = logging.getLogger(__name__)

# How long Ctrl-C waits for calls to send their BYEs and write their CDRs.
SHUTDOWN_GRACE_S = 5.0


class CallsUnavailable(Exception):
    """The node is shutting down or its call path is not running."""


class Notifier(Protocol):
    def notify(self) -> None: ...


class CallEngine:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        http: aiohttp.ClientSession,
        media: MediaRelay,
        *,
        audio_dir: Path,
        webhooks: Notifier | None = None,
        media_counts: Callable[[dict[str, object]], dict[str, int]] = lambda _stats: {},
        endpoint: Callable[[Callable[[Event], None]], SipEndpoint] | None = None,
        routing: RoutingTable | None = None,
        random_hex: RandomHex = secrets.token_hex,
    ) -> None:
        """``endpoint`` and ``routing`` replace the node's UDP/TCP endpoint and its
        store-backed routing: the in-memory call-flow tests pass an endpoint on an
        in-memory SIP network and routing that answers from the test. ``random_hex`` is
        where the legs' branches, tags and Call-IDs come from."""
        self.random_hex = random_hex
        self.settings = settings
        self.database = database
        self.http = http
        self.raw_media = media
        self.media: MediaRelay = MaskedMedia(media)
        self.media_counts = media_counts
        self.audio_dir = audio_dir
        self.webhooks = webhooks
        self.tts = TextToSpeech(settings.data_dir / "tts")
        self.node_id = settings.effective_node_id
        self.routing = routing or RoutingTable(
            database,
            Exchange(
                http,
                timeout_s=settings.callback_timeout,
                allow_private=settings.webhook_allow_private,
                default_region=settings.default_region,
            ),
        )
        self.ledger = CallLedger(database, on_events=webhooks.notify if webhooks else None)
        self.rtpengine_process: ManagedRtpengine | None = None  # when callmask runs it
        self.endpoint = (
            endpoint(self.on_event)
            if endpoint is not None
            else SipEndpoint(settings.sip_host, settings.sip_port, self.on_event)
        )
        self.legs = TrunkLegs(
            self.endpoint,
            LocalAddress(settings.sip_host, settings.sip_port, random_hex),
            parse_trunk(settings.trunk_uri, settings.trunk_username, settings.trunk_password),
        )
        # What every call is given (calls/ports.py); the engine is most of it.
        self.ports = CallPorts(
            legs=self.legs,
            registry=self,
            media=self.media,
            book=self,
            admission=self,
            prompts=self,
            ring_timeout_s=settings.ring_timeout,
            media_counts=media_counts,
            node_id=settings.effective_node_id,
        )
        self.calls: dict[str, CallBase] = {}  # by the SIP Call-ID of any of its legs
        self.by_public_id: dict[str, CallBase] = {}
        self.by_media_id: dict[str, CallBase] = {}  # by the call-id rtpengine knows
        self._tracked: dict[str, CallBase] = {}  # transaction key -> call
        self._group: asyncio.TaskGroup | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._call_tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------

    async def serve(self) -> None:
        """Run until ``stop()``: SIP up, calls in a TaskGroup, then a clean shutdown."""
        self.legs.trunk = await self._resolve_trunk(self.legs.trunk)
        closed = await recovery.close_orphans(self.database, self.node_id, payload_for)
        if closed and self.webhooks is not None:
            self.webhooks.notify()
        await recovery.heartbeat(self.database, self.node_id)
        await self.endpoint.start()
        self.legs.local = LocalAddress(self.settings.sip_host, self.endpoint.port, self.random_hex)
        try:
            # The ledger's writer outlives the calls: their last writes (CDRs) are
            # queued as they end, up to the end of the inner group.
            async with asyncio.TaskGroup() as writer:
                writer.create_task(self.ledger.run(), name="call ledger")
                try:
                    async with asyncio.TaskGroup() as group:
                        self._group = group
                        heartbeat = group.create_task(self._heartbeat(), name="node heartbeat")
                        self.ready.set()
                        await self._stop.wait()
                        await self._end_all_calls()
                        heartbeat.cancel()
                finally:
                    self.ledger.stop()
        finally:
            self._group = None
            await self.ledger.close()
            await self.endpoint.close()
            self.routing.close()

    async def calls_done(self) -> None:
        """Wait until every call in progress now has ended (its CDR queued)."""
        tasks = list(self._call_tasks)
        if tasks:
            await asyncio.wait(tasks)

    def stop(self) -> None:
        self._stopping = True
        self._stop.set()

    async def _end_all_calls(self) -> None:
        """BYE every live call and let each write its CDR; cancel what is still up
        after the grace period (its CDR then says it was cut by the shutdown)."""
        tasks = list(self._call_tasks)
        if not tasks:
            return
        log.info("ending %d calls before shutdown", len(tasks))
        for call in list(self.by_public_id.values()):
            call.post(HangupRequested("callmask shutting down"))
        _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
        for task in pending:
            task.cancel()

    @staticmethod
    async def _resolve_trunk(trunk: Trunk) -> Trunk:
        host = trunk.address[0]
        try:
            ipaddress.ip_address(host)
            return trunk
        except ValueError:
            pass
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, trunk.address[1], type=socket.SOCK_DGRAM
        )
        address = (str(infos[0][4][0]), trunk.address[1])
        return Trunk(
            address, trunk.reliable, trunk.host, trunk.port, trunk.username, trunk.password
        )

    # -- dispatch ----------------------------------------------------------------

    def track(self, key: str, call: CallBase) -> None:
        self._tracked[key] = call

    def register_sip_call_id(self, sip_call_id: str, call: CallBase) -> None:
        self.calls[sip_call_id] = call

    def untrack(self, key: str) -> None:
        self._tracked.pop(key, None)

    def on_event(self, event: Event) -> None:
        match event:
            case RequestReceived(request=request):
                self._on_request(event, request)
            case ResponseReceived(key=key) | TransactionTimedOut(key=key):
                call = self._tracked.get(key)
                if call is not None:
                    call.post(event)
            case AckReceived(request=request):
                call = self.calls.get(request.call_id)
                if call is not None:
                    call.post(event)
            case AckTimedOut(key=key):
                call = self._tracked.get(key)
                if call is not None:
                    call.post(event)
            case StrayResponse():
                metrics.SIP_STRAY_RESPONSES.inc()

    def _reply(self, event: RequestReceived, status: int, reason: str | None = None) -> None:
        headers = [("Allow", ALLOW)] if status in (200, 405) else []
        self.endpoint.send_response(
            event.key, make_response(event.request, status, reason, headers=headers)
        )

    def _on_request(self, event: RequestReceived, request: Request) -> None:
        method = request.method
        if method == "CANCEL":
            self._on_cancel(event, request)
            return
        if request.to_tag:
            call = self.calls.get(request.call_id)
            if call is None or call.ended:
                self._reply(event, 481, "Call/Transaction Does Not Exist")
            else:
                call.post(event)
            return
        if not self._allowed(event.source[0]):
            metrics.CALLS_REFUSED.labels(reason="not allowed").inc()
            self._reply(event, 403, "Forbidden")
            return
        match method:
            case "INVITE":
                self._on_invite(event, request)
            case "OPTIONS":
                self._reply(event, 200)
            case "BYE":
                self._reply(event, 481, "Call/Transaction Does Not Exist")
            case _:
                self._reply(event, 405, "Method Not Allowed")

    def _allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.settings.trunk_allow)

    def _on_cancel(self, event: RequestReceived, request: Request) -> None:
        invite_key = self.endpoint.layer.matching_invite(request)
        call = self.calls.get(request.call_id)
        if invite_key is None or not isinstance(call, InboundCall) or call.a.key != invite_key:
            self._reply(event, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(event, 200)
        call.post(CancelReceived())

    def _on_invite(self, event: RequestReceived, request: Request) -> None:
        if self._stopping or self._group is None:
            self._reply(event, 503, "Service Unavailable")
            return
        if request.call_id in self.calls:
            # A second initial INVITE with a live Call-ID: a loop or a merged fork.
            self._reply(event, 482, "Loop Detected")
            return
        if not request.body:
            # Without an offer the media cannot be anchored before B answers; carriers
            # send offers in the INVITE, so refuse delayed offer clearly.
            metrics.CALLS_REFUSED.labels(reason="no sdp").inc()
            self._reply(event, 488, "Not Acceptable Here")
            return
        a = InboundLeg(
            self.endpoint, self.legs.local, event.key, request, event.source, event.reliable
        )
        now = asyncio.get_running_loop().time()
        summary = CallSummary(
            record_id=uuid.uuid4().hex,
            public_call_id=new_public_call_id(self.settings.node_index),
            direction="inbound",
            service="number_masking",
            caller=caller_of(request),
            a_sip_call_id=request.call_id,
            times=CallTimes(invited=now),
            invited_utc=dt.datetime.now(dt.UTC),
        )
        call = InboundCall(self.ports, a, summary)
        call.own_sip_call_id(request.call_id)
        call.track(event.key)
        self._start(call)

    def _start(self, call: CallBase) -> None:
        assert self._group is not None
        self.by_public_id[call.summary.public_call_id] = call
        self.by_media_id[call.id] = call
        metrics.CALLS_STARTED.inc()
        metrics.ACTIVE_CALLS.inc()
        # Every log line written for this call carries its id (callmask.logs).
        context = contextvars.copy_context()
        context.run(call_id_var.set, call.summary.public_call_id)
        task = self._group.create_task(
            call.run(), name=f"call {call.summary.public_call_id}", context=context
        )
        self._call_tasks.add(task)
        task.add_done_callback(self._call_tasks.discard)

    # -- what calls ask of the engine -------------------------------------------

    async def admit(self, call: InboundCall) -> CallRouting:
        """Whose number the caller dialled and which dialect routes the call, chosen
        once; fills in the call's summary. Raises ``UnknownNumber`` for a DID that is
        not ours or has neither an action nor a pool."""
        summary = call.summary
        user = request_user(call.a.invite)
        did = self.routing.did_of(user)
        routing = None if did is None else await self.routing.find(summary.caller, did)
        if did is None or routing is None:
            raise UnknownNumber(user or "")
        summary.account_id = routing.account_id
        summary.did = did
        summary.action_key = routing.action_key
        summary.service = routing.service
        return routing

    async def decide(self, call: InboundCall, routing: CallRouting) -> Decision:
        """The customer's answer for this call. Raises ``RoutingFailed``."""
        started = time.perf_counter()
        try:
            return await routing.decide(call.summary)
        except RoutingFailed:
            metrics.CALLBACK_FAILURES.inc()
            raise
        finally:
            metrics.CALLBACK_SECONDS.observe(time.perf_counter() - started)

    async def render(self, text: str) -> Path:
        return await self.tts.render(text)

    async def audio_path(self, account_id: str | None, file_id: str) -> Path | None:
        if account_id is None:
            return None
        async with self.database.session() as session:
            try:
                await AudioFiles(session).get(account_id, file_id)
            except Exception:
                return None
        path = self.audio_dir / f"{file_id}.mp3"
        return path.resolve() if path.exists() else None

    def observe_post_dial_delay(self, delay_s: float) -> None:
        metrics.POST_DIAL_DELAY_SECONDS.observe(delay_s)

    def finish(self, call: CallBase) -> None:
        """The call is over: forget it, and queue its CDR with the report it causes."""
        summary = call.summary
        for sip_call_id in call.sip_call_ids:
            if self.calls.get(sip_call_id) is call:
                del self.calls[sip_call_id]
        for key in call.keys:
            self.untrack(key)
        self.by_public_id.pop(summary.public_call_id, None)
        self.by_media_id.pop(call.id, None)
        metrics.ACTIVE_CALLS.dec()
        metrics.CALLS_ENDED.labels(status=summary.status.value).inc()
        log.info(
            "call ended direction=%s service=%s status=%s code=%s by=%s talk_s=%d cause=%r",
            summary.direction,
            summary.service,
            summary.status.value,
            summary.sip_code,
            summary.hangup_by,
            summary.times.talk_seconds(),
            summary.hangup_cause,
        )
        if summary.account_id is None:
            return  # not one of our numbers: nobody to report to
        report = call.report()
        event = None
        if report is not None:
            event = new_event(
                account_id=summary.account_id,
                event_type=report.event_type,
                url=report.url,
                payload=report.payload,
                ordering_key=summary.public_call_id,
            )
        self.ledger.write(
            CallClosed(summary.record(), event, was_open=call.opened, kept=call.kept())
        )

    def opened(self, call: CallBase) -> None:
        """Note the call in the store so a restart after a crash can close it."""
        if call.opened or call.summary.account_id is None:
            return
        call.opened = True
        snapshot = recovery.snapshot(call.summary, call.report())
        self.ledger.write(CallOpened(call.summary.record_id, self.node_id, snapshot))

    def answered(self, call: CallBase) -> None:
        answered_at = call.summary.utc(call.summary.times.answered)
        if call.opened and answered_at is not None:
            self.ledger.write(CallAnswered(call.summary.record_id, answered_at))

    async def _heartbeat(self) -> None:
        """Every few seconds: tell the store this node is alive, check the media relay."""
        while True:
            try:
                await recovery.heartbeat(self.database, self.node_id)
            except Exception:
                log.exception("node heartbeat failed")
            metrics.RTPENGINE_UP.set(1 if await self._media_healthy() else 0)
            await asyncio.sleep(recovery.HEARTBEAT_INTERVAL_S)

    async def _media_healthy(self) -> bool:
        if self.rtpengine_process is not None:
            return self.rtpengine_process.healthy
        ping = getattr(self.raw_media, "ping", None)
        if ping is None:
            return True
        try:
            await ping()
        except Exception:
            return False
        return True

    def dtmf_reported(self, report: DtmfReport) -> None:
        """rtpengine decoded a digit (``media.dtmf``): hand it to its call."""
        call = self.by_media_id.get(report.call_id)
        if call is None or call.ended:
            return  # a report that outlived its call
        side = "caller" if report.source_tag == call.media_tag else "callee"
        call.post(DigitReceived(report.digit, side, "rfc4733"))

    def media_lost(self) -> None:
        """rtpengine died: every call anchored in it has lost its media for good, so
        end them now (BYE both ways, CDR and report) rather than leave silent lines."""
        for call in list(self.by_public_id.values()):
            if call.media_started and not call.ended:
                call.post(HangupRequested("media relay (rtpengine) stopped: call cut"))

    # -- CallControl (the API's view of live calls) ------------------------------

    def live_calls(self, account_id: str) -> list[LiveCall]:
        return [
            call.live_view()
            for call in self.by_public_id.values()
            if call.summary.account_id == account_id and not call.ended
        ]

    def hangup(self, account_id: str, call_id: str) -> bool:
        call = self.by_public_id.get(call_id)
        if call is None or call.ended or call.summary.account_id != account_id:
            return False
        call.post(HangupRequested("hung up through the API"))
        return True

    # -- calls callmask places ----------------------------------------------------

    def _placed_summary(
        self, account_id: str, service: str, caller: str, callee: str
    ) -> CallSummary:
        return CallSummary(
            record_id=uuid.uuid4().hex,
            public_call_id=new_public_call_id(self.settings.node_index),
            direction="outbound",
            service=service,
            caller=caller,
            callee=callee,
            a_sip_call_id="",
            times=CallTimes(invited=asyncio.get_running_loop().time()),
            invited_utc=dt.datetime.now(dt.UTC),
            account_id=account_id,
        )

    def _refuse_when_stopping(self) -> None:
        if self._stopping or self._group is None:
            raise CallsUnavailable("calls are not running on this node")

    async def click_to_call(self, request: ClickToCall, *, wait_for_agent: bool) -> str | None:
        self._refuse_when_stopping()
        summary = self._placed_summary(
            request.account_id, "click_to_call", request.agent_number, request.destination_number
        )
        summary.did = request.caller_id
        summary.caller_id_shown = request.caller_id
        summary.custom_identifier = request.custom_identifier
        summary.agent_id = request.agent_id
        summary.command = "click_to_call"
        flow = ClickToCallFlow(self.ports, summary, request)
        self._start(flow)
        if wait_for_agent and not await agent_answered(flow):
            return None
        return summary.public_call_id

    async def announce(self, request: Announcement) -> str:
        self._refuse_when_stopping()
        audio = await self.tts.render(request.text)
        summary = self._placed_summary(
            request.account_id, "broadcast", request.caller_id, request.customer_number
        )
        summary.did = request.caller_id
        summary.caller_id_shown = request.caller_id
        summary.broadcast_id = request.broadcast_id
        summary.command = "announcement"
        self._start(AnnouncementFlow(self.ports, summary, request, audio))
        return summary.public_call_id

    async def transfer(self, account_id: str, call_id: str, number: str) -> bool:
        call = self.by_public_id.get(call_id)
        if (
            not isinstance(call, InboundCall)
            or call.ended
            or call.summary.account_id != account_id
            or call.summary.times.answered is None
        ):
            return False
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        call.post(TransferRequested(number, done))
        return await done
