"""A session's participants (``KP…``):
``/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Participants[/{Sid}]``, create /
fetch / list / delete (CreateParticipant, FetchParticipant, ListParticipant,
DeleteParticipant).

Create takes ``Identifier`` (the participant's own number, required), ``FriendlyName``
and either ``ProxyIdentifier`` or ``ProxyIdentifierSid`` to ask for a pool number;
otherwise the pool picks one. Delete is Twilio's soft delete: the participant stays in
the session with ``date_deleted`` set and its proxy number freed.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from callmask.api.twilio import render
from callmask.api.twilio.auth import TwilioAccount
from callmask.api.twilio.errors import TwilioRoute, TwilioSessionDep
from callmask.api.twilio.form import form_params, query_params
from callmask.api.twilio.paging import page_body, page_request
from callmask.api.twilio.sessions import participant_request
from callmask.sessions.repository import Participants

router = APIRouter(
    prefix="/twilio/v1/Services/{service_sid}/Sessions/{session_sid}/Participants",
    route_class=TwilioRoute,
    include_in_schema=False,
)


@router.post("")
async def create_participant(
    service_sid: str,
    session_sid: str,
    request: Request,
    session: TwilioSessionDep,
    account: TwilioAccount,
) -> JSONResponse:
    params = await form_params(request)
    wanted = participant_request(
        params.raw("Identifier"),
        params.raw("FriendlyName"),
        params.raw("ProxyIdentifier"),
        params.raw("ProxyIdentifierSid"),
    )
    row = await Participants(session).add(account.id, service_sid, session_sid, wanted)
    return JSONResponse(render.participant(render.Urls(request), row), 201)


@router.get("")
async def list_participants(
    service_sid: str,
    session_sid: str,
    request: Request,
    session: TwilioSessionDep,
    account: TwilioAccount,
) -> JSONResponse:
    urls = render.Urls(request)
    page = page_request(query_params(request))
    rows = await Participants(session).list(
        account.id, service_sid, session_sid, offset=page.offset, limit=page.limit
    )
    body = page_body(
        urls.participants(service_sid, session_sid),
        "participants",
        page,
        rows,
        lambda r: render.participant(urls, r),
    )
    return JSONResponse(body)


@router.get("/{sid}")
async def fetch_participant(
    service_sid: str,
    session_sid: str,
    sid: str,
    request: Request,
    session: TwilioSessionDep,
    account: TwilioAccount,
) -> JSONResponse:
    row = await Participants(session).get(account.id, service_sid, session_sid, sid)
    return JSONResponse(render.participant(render.Urls(request), row))


@router.delete("/{sid}", status_code=204, response_class=Response)
async def delete_participant(
    service_sid: str, session_sid: str, sid: str, session: TwilioSessionDep, account: TwilioAccount
) -> Response:
    await Participants(session).delete(account.id, service_sid, session_sid, sid)
    return Response(status_code=204)
