"""The Tata "user's API" exchange for ANONYMIZE numbers (reference:
tata-cpaas-anonymize.txt).

callmask POSTs ``{"uuid", "call_id", "call_to_number", "caller_id_number",
"start_stamp"}`` and expects ``[{"transfer": {"type": "number", "data": [...]}}]``: the
numbers to try in order until one answers. Numbers may be 10-digit national (read in
``CALLMASK_DEFAULT_REGION``), ``+CC...`` or ``0``-prefixed. The called party sees the
DID, which is the point of anonymising.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import aiohttp

from callmask.calls.ledger import Kept
from callmask.calls.outcome import CallSummary
from callmask.errors import InvalidInput
from callmask.phone import normalise
from callmask.routing.decisions import Decision, DialNumbers, RoutingFailed
from callmask.routing.infobip import post_json
from callmask.routing.route import Exchange, Report

CALL_DETAILS = "call.details"

# A transfer list longer than this is a bug on the user's side, not a hunt group.
MAX_TRANSFER_NUMBERS = 10


def parse_answer(answer: Any, *, did: str, default_region: str | None) -> DialNumbers:
    if isinstance(answer, dict):
        answer = [answer]  # some users' APIs drop the outer list; the object is unambiguous
    if not isinstance(answer, list) or not answer:
        raise RoutingFailed("user's API answer is not a list of transfer objects")
    numbers: list[str] = []
    for item in answer:
        transfer = item.get("transfer") if isinstance(item, dict) else None
        if not isinstance(transfer, dict):
            raise RoutingFailed("user's API answer item has no transfer object")
        if transfer.get("type") != "number":
            raise RoutingFailed(f"unsupported transfer type {transfer.get('type')!r}")
        data = transfer.get("data")
        if not isinstance(data, list) or not data:
            raise RoutingFailed("transfer data must be a non-empty list of numbers")
        for raw in data:
            if not isinstance(raw, (str, int)) or isinstance(raw, bool):
                raise RoutingFailed(f"transfer number {raw!r} is not a string")
            try:
                numbers.append(normalise(str(raw), default_region))
            except InvalidInput as exc:
                raise RoutingFailed(f"transfer number: {exc}") from exc
    if len(numbers) > MAX_TRANSFER_NUMBERS:
        raise RoutingFailed(f"more than {MAX_TRANSFER_NUMBERS} transfer numbers")
    return DialNumbers(numbers=tuple(numbers), caller_id=did)


async def ask(
    http: aiohttp.ClientSession,
    url: str,
    *,
    uuid: str,
    call_id: str,
    did: str,
    caller: str,
    start_stamp: dt.datetime,
    timeout_s: float,
    allow_private: bool,
    default_region: str | None,
) -> DialNumbers:
    body = {
        "uuid": uuid,
        "call_id": call_id,
        "call_to_number": did,
        "caller_id_number": caller,
        "start_stamp": start_stamp.strftime("%Y-%m-%d %H:%M:%S"),
    }
    answer = await post_json(http, url, body, timeout_s=timeout_s, allow_private=allow_private)
    return parse_answer(answer, did=did, default_region=default_region)


def _stamp(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else None


def call_details(
    *,
    call_id: str,
    uuid: str,
    direction: str,
    service: str,
    did: str | None,
    caller: str,
    callee: str | None,
    started: dt.datetime,
    answered: dt.datetime | None,
    ended: dt.datetime,
    answered_seconds: int,
    status: str,
    hangup_cause: str,
    custom_identifier: str | None,
) -> dict[str, object]:
    """The call details posted to the account's webhook when a Tata-dialect call ends
    (anonymize, click-to-call, OTP), with the field names of the call-records API and
    the ``custom_identifier`` the click-to-call request carried."""
    return {
        "call_id": call_id,
        "uuid": uuid,
        "direction": direction,
        "services": service,
        "did_number": did,
        "caller_id_number": caller,
        "destination": callee,
        "start_stamp": _stamp(started),
        "answer_stamp": _stamp(answered),
        "end_stamp": _stamp(ended),
        "call_duration": max(0, round((ended - started).total_seconds())),
        "answered_seconds": answered_seconds,
        "status": "answered" if status == "answered" else "missed",
        "call_status": status,
        "hangup_cause": hangup_cause,
        "custom_identifier": custom_identifier,
    }


def call_details_of(summary: CallSummary) -> dict[str, object]:
    ended = summary.utc(summary.times.ended) or summary.invited_utc
    return call_details(
        call_id=summary.public_call_id,
        uuid=summary.record_id,
        direction=summary.direction,
        service=summary.service,
        did=summary.did,
        caller=summary.caller,
        callee=summary.callee,
        started=summary.invited_utc,
        answered=summary.utc(summary.times.answered),
        ended=ended,
        answered_seconds=summary.times.talk_seconds(),
        status=summary.status.value,
        hangup_cause=summary.hangup_cause,
        custom_identifier=summary.custom_identifier,
    )


@dataclass(slots=True)
class TataRouting:
    """An ANONYMIZE action: the user's API lists the numbers to try; the account's
    webhook gets the call details."""

    exchange: Exchange
    account_id: str
    did: str
    action_key: str | None
    callback_url: str
    webhook_url: str | None
    service: str = "anonymize"

    async def decide(self, summary: CallSummary) -> Decision:
        exchange = self.exchange
        return await ask(
            exchange.http,
            self.callback_url,
            uuid=summary.record_id,
            call_id=summary.public_call_id,
            did=self.did,
            caller=summary.caller,
            start_stamp=summary.invited_utc,
            timeout_s=exchange.timeout_s,
            allow_private=exchange.allow_private,
            default_region=exchange.default_region,
        )

    def report(self, summary: CallSummary) -> Report | None:
        if not self.webhook_url:
            return None
        return Report(self.webhook_url, CALL_DETAILS, call_details_of(summary))

    def ended(self, summary: CallSummary) -> Kept | None:
        return None
