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
from typing import Any

import aiohttp

from callmask.errors import InvalidInput
from callmask.phone import normalise
from callmask.routing.decisions import DialNumbers, RoutingFailed
from callmask.routing.infobip import post_json

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
