"""Sessions (``KC…``): ``/v1/Services/{ServiceSid}/Sessions[/{Sid}]``, create / fetch /
list / update (POST) / delete (CreateSession, FetchSession, ListSession, UpdateSession,
DeleteSession).

Create takes ``UniqueName``, ``DateExpiry``, ``Ttl``, ``Mode``, ``Status`` and
``Participants``: a repeated field, each value a JSON object as a string (twilio-python
``serialize.object``), with the participant's create parameters (``Identifier``,
``FriendlyName``, ``ProxyIdentifier``, ``ProxyIdentifierSid``). All or nothing: a
participant that cannot be given a number leaves no session behind. Update takes
``DateExpiry``, ``Ttl`` and ``Status`` only; ``Status=closed`` closes the session and
frees its numbers. callmask carries calls only: ``Mode=message-only`` is refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from callmask.api.deps import ServicesDep
from callmask.api.twilio import render
from callmask.api.twilio.auth import TwilioAccount
from callmask.api.twilio.errors import TwilioRoute, TwilioSessionDep
from callmask.api.twilio.form import MAX_VALUE_LENGTH, form_params, query_params
from callmask.api.twilio.paging import page_body, page_request
from callmask.errors import InvalidInput
from callmask.sessions.repository import ParticipantRequest, Sessions

router = APIRouter(
    prefix="/twilio/v1/Services/{service_sid}/Sessions",
    route_class=TwilioRoute,
    include_in_schema=False,
)

# twilio_proxy_v1.json: session_enum_mode, session_enum_status
MODES = ("message-only", "voice-only", "voice-and-message")
STATUSES = ("open", "in-progress", "closed", "failed", "unknown")
MAX_UNIQUE_NAME = 191
# "There is a limit of two Participants per Session" (Twilio Proxy, Participant resource).
MAX_PARTICIPANTS = 2
MAX_IDENTIFIER = 191  # "This value must be 191 characters or fewer"
MAX_FRIENDLY_NAME = 255  # "This value must be 255 characters or fewer"
PROXY_IDENTIFIER_SID = re.compile(r"PN[0-9a-fA-F]{32}")

# The keys of a participant object, by their spelling with case and underscores
# dropped: the form's PascalCase (Identifier, ProxyIdentifierSid) and the snake_case
# and camelCase clients write (proxy_identifier, friendlyName) all mean the same.
_PARTICIPANT_KEYS = {
    "identifier": "identifier",
    "friendlyname": "friendly_name",
    "proxyidentifier": "proxy_identifier",
    "proxyidentifiersid": "proxy_identifier_sid",
}


def participant_request(
    identifier: str | None,
    friendly_name: str | None,
    proxy_identifier: str | None,
    proxy_identifier_sid: str | None,
) -> ParticipantRequest:
    """A participant's create parameters, checked (the numbers themselves are checked
    by the domain, which knows the pool)."""
    if not identifier:
        raise InvalidInput("Identifier is required")
    if len(identifier) > MAX_IDENTIFIER:
        raise InvalidInput(f"Identifier must be {MAX_IDENTIFIER} characters or fewer")
    if friendly_name is not None and len(friendly_name) > MAX_FRIENDLY_NAME:
        raise InvalidInput(f"FriendlyName must be {MAX_FRIENDLY_NAME} characters or fewer")
    if proxy_identifier is not None and len(proxy_identifier) > MAX_IDENTIFIER:
        raise InvalidInput(f"ProxyIdentifier must be {MAX_IDENTIFIER} characters or fewer")
    if proxy_identifier_sid is not None and not PROXY_IDENTIFIER_SID.fullmatch(
        proxy_identifier_sid
    ):
        raise InvalidInput("ProxyIdentifierSid must be PN followed by 32 hexadecimal digits")
    return ParticipantRequest(
        identifier=identifier,
        friendly_name=friendly_name or None,
        proxy_identifier=proxy_identifier or None,
        proxy_identifier_sid=proxy_identifier_sid or None,
    )


def _participant_of_json(position: int, value: str) -> ParticipantRequest:
    where = f"Participants[{position}]"
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidInput(f"{where} is longer than {MAX_VALUE_LENGTH} characters")
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise InvalidInput(f"{where} must be a JSON object: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} must be a JSON object")
    fields: dict[str, str] = {}
    for key, item in data.items():
        field = _PARTICIPANT_KEYS.get(key.replace("_", "").lower())
        if field is None:
            known = "Identifier, FriendlyName, ProxyIdentifier, ProxyIdentifierSid"
            raise InvalidInput(f"{where} has an unknown key {key!r} (known: {known})")
        if field in fields:
            raise InvalidInput(f"{where} gives {key!r} twice")
        if item is None:
            continue
        if not isinstance(item, str) or "\x00" in item:
            raise InvalidInput(f"{where}.{key} must be a string")
        fields[field] = item
    try:
        return participant_request(
            fields.get("identifier"),
            fields.get("friendly_name"),
            fields.get("proxy_identifier"),
            fields.get("proxy_identifier_sid"),
        )
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from exc


def _mode(value: str | None) -> str | None:
    if value == "message-only":
        raise InvalidInput("Mode message-only is not supported: callmask carries calls only")
    return value


@router.post("")
async def create_session(
    service_sid: str, request: Request, session: TwilioSessionDep, account: TwilioAccount
) -> JSONResponse:
    params = await form_params(request)
    fields: dict[str, Any] = {}
    unique_name = params.text("UniqueName", max_length=MAX_UNIQUE_NAME)
    if unique_name:
        fields["unique_name"] = unique_name
    ttl = params.integer("Ttl")
    if ttl is not None:
        fields["ttl"] = ttl
    date_expiry = params.datetime("DateExpiry")
    if date_expiry is not None:
        fields["date_expiry"] = date_expiry
    mode = _mode(params.choice("Mode", MODES))
    if mode is not None:
        fields["mode"] = mode
    status = params.choice("Status", STATUSES)
    if status is not None:
        fields["status"] = status
    values = params.all("Participants")
    if len(values) > MAX_PARTICIPANTS:
        raise InvalidInput(f"a session has at most {MAX_PARTICIPANTS} Participants")
    participants = [_participant_of_json(i, value) for i, value in enumerate(values)]
    row = await Sessions(session).create(
        account.id, service_sid, participants=participants, **fields
    )
    return JSONResponse(render.session(render.Urls(request), row), 201)


@router.get("")
async def list_sessions(
    service_sid: str, request: Request, session: TwilioSessionDep, account: TwilioAccount
) -> JSONResponse:
    urls = render.Urls(request)
    page = page_request(query_params(request))
    rows = await Sessions(session).list(
        account.id, service_sid, offset=page.offset, limit=page.limit
    )
    body = page_body(
        urls.sessions(service_sid), "sessions", page, rows, lambda r: render.session(urls, r)
    )
    return JSONResponse(body)


@router.get("/{sid}")
async def fetch_session(
    service_sid: str, sid: str, request: Request, session: TwilioSessionDep, account: TwilioAccount
) -> JSONResponse:
    row = await Sessions(session).get(account.id, service_sid, sid)
    return JSONResponse(render.session(render.Urls(request), row))


@router.post("/{sid}")
async def update_session(
    service_sid: str,
    sid: str,
    request: Request,
    session: TwilioSessionDep,
    account: TwilioAccount,
    services: ServicesDep,
) -> JSONResponse:
    params = await form_params(request)
    ttl = params.integer("Ttl")
    date_expiry = params.datetime("DateExpiry")
    status = params.choice("Status", STATUSES)
    row = await Sessions(session).update(
        account.id, service_sid, sid, ttl=ttl, date_expiry=date_expiry, status=status
    )
    body = render.session(render.Urls(request), row)
    # Closing queues the "session closed" event: committed before the worker is woken.
    await session.commit()
    services.webhooks.notify()
    return JSONResponse(body)


@router.delete("/{sid}", status_code=204, response_class=Response)
async def delete_session(
    service_sid: str,
    sid: str,
    session: TwilioSessionDep,
    account: TwilioAccount,
    services: ServicesDep,
) -> Response:
    await Sessions(session).delete(account.id, service_sid, sid)
    await session.commit()
    services.webhooks.notify()
    return Response(status_code=204)
