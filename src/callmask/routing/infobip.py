"""The Infobip "CallBack URL Request" (reference: infobip-number-masking.txt).

callmask POSTs ``{"from", "to"}`` (international digits, no plus) to the action's
callbackUrl while the caller waits, and expects either
``{"command": "dial", "phoneNumber", "callerId"}`` or ``{"command": "audio", "fileId"}``.
Answers are parsed strictly: every problem becomes ``RoutingFailed`` with a reason that
names it, so the caller gets a defined SIP answer and the status report says ``failed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from callmask.calls.ledger import Kept
from callmask.calls.outcome import CallSummary
from callmask.errors import InvalidInput
from callmask.netguard import check_url
from callmask.outbound import OutboundFailure, outbound_failures, read_at_most
from callmask.phone import digits, normalise
from callmask.routing.decisions import Decision, DialNumbers, PlayAudio, RoutingFailed
from callmask.routing.route import Exchange, Report

STATUS_REPORT = "call.status"

# A routing answer is a few hundred bytes; anything much larger is not one.
MAX_ANSWER_BYTES = 64 * 1024
_JSON = {"Content-Type": "application/json"}


def display_number(number: str) -> str:
    """Infobip shows numbers as international digits; non-E.164 callers pass as they are."""
    return digits(number) if number.startswith("+") else number


async def post_json(
    http: aiohttp.ClientSession, url: str, body: object, *, timeout_s: float, allow_private: bool
) -> Any:
    """POST ``body`` and return the decoded JSON answer, or raise ``RoutingFailed``.
    ``http`` comes from ``outbound.client_session`` with the same ``allow_private``."""
    try:
        check_url(url, allow_private=allow_private)
    except InvalidInput as exc:
        raise RoutingFailed(f"callback url refused: {exc}") from exc
    # Compact, like the webhook payloads (outbox.py); aiohttp's ``json=`` adds spaces.
    data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    try:
        with outbound_failures(timeout_s):
            async with http.post(
                url,
                data=data,
                headers=_JSON,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as reply:
                if not 200 <= reply.status < 300:
                    raise RoutingFailed(f"callback answered HTTP {reply.status}")
                content = await read_at_most(reply, MAX_ANSWER_BYTES + 1)
    except OutboundFailure as exc:
        raise RoutingFailed(f"callback {exc}") from exc
    if len(content) > MAX_ANSWER_BYTES:
        raise RoutingFailed(f"callback answer is larger than {MAX_ANSWER_BYTES} bytes")
    try:
        return json.loads(content)
    except ValueError as exc:
        raise RoutingFailed(f"callback answer is not JSON: {exc}") from exc


def _text_field(answer: dict[str, Any], name: str) -> str:
    value = answer.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RoutingFailed(f"callback answer has no {name}")
    return value.strip()


def _number_field(answer: dict[str, Any], name: str, default_region: str | None) -> str:
    raw = _text_field(answer, name)
    try:
        return normalise(raw, default_region)
    except InvalidInput as exc:
        raise RoutingFailed(f"callback answer {name}: {exc}") from exc


def parse_answer(answer: Any, default_region: str | None) -> Decision:
    if not isinstance(answer, dict):
        raise RoutingFailed("callback answer is not a JSON object")
    command = answer.get("command")
    match command:
        case "dial":
            return DialNumbers(
                numbers=(_number_field(answer, "phoneNumber", default_region),),
                caller_id=_number_field(answer, "callerId", default_region),
            )
        case "audio":
            return PlayAudio(file_id=_text_field(answer, "fileId"))
        case None:
            raise RoutingFailed("callback answer has no command")
        case _:
            raise RoutingFailed(f"callback answer has unknown command {command!r}")


async def ask(
    http: aiohttp.ClientSession,
    url: str,
    *,
    caller: str,
    did: str,
    timeout_s: float,
    allow_private: bool,
    default_region: str | None,
) -> Decision:
    body = {"from": display_number(caller), "to": display_number(did)}
    answer = await post_json(http, url, body, timeout_s=timeout_s, allow_private=allow_private)
    return parse_answer(answer, default_region)


def status_report(
    *,
    command: str | None,
    caller: str,
    did: str,
    transfer_to: str | None,
    duration_s: int,
    status: str,
    file_id: str | None,
) -> dict[str, object]:
    """The "Status URL Request" body, sent through the webhook outbox when a call ends."""
    return {
        "action": command,
        "from": display_number(caller),
        "to": display_number(did),
        "transferTo": display_number(transfer_to) if transfer_to else None,
        "duration": duration_s,
        "status": status,
        "fileId": file_id,
    }


def status_report_of(summary: CallSummary) -> dict[str, object]:
    return status_report(
        command=summary.command,
        caller=summary.caller,
        did=summary.did or "",
        transfer_to=summary.callee,
        duration_s=summary.times.talk_seconds(),
        status=summary.status.value,
        file_id=summary.file_id,
    )


@dataclass(slots=True)
class InfobipRouting:
    """A VOICE_NUMBER_MASKING action: its callbackUrl decides each call, its statusUrl
    hears how each ended."""

    exchange: Exchange
    account_id: str
    did: str
    action_key: str | None
    callback_url: str
    status_url: str | None
    service: str = "number_masking"

    async def decide(self, summary: CallSummary) -> Decision:
        exchange = self.exchange
        return await ask(
            exchange.http,
            self.callback_url,
            caller=summary.caller,
            did=self.did,
            timeout_s=exchange.timeout_s,
            allow_private=exchange.allow_private,
            default_region=exchange.default_region,
        )

    def report(self, summary: CallSummary) -> Report | None:
        if not self.status_url:
            return None
        return Report(self.status_url, STATUS_REPORT, status_report_of(summary))

    def ended(self, summary: CallSummary) -> Kept | None:
        return None
