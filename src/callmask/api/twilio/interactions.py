"""A session's interactions (``KI…``), one per call:
``/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Interactions[/{Sid}]``, fetch / list
/ delete (FetchInteraction, ListInteraction, DeleteInteraction). The call path creates
them; the API only reads and deletes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from callmask.api.twilio import render
from callmask.api.twilio.auth import TwilioAccount
from callmask.api.twilio.errors import TwilioRoute, TwilioSessionDep
from callmask.api.twilio.form import query_params
from callmask.api.twilio.paging import page_body, page_request
from callmask.sessions.repository import Interactions

router = APIRouter(
    prefix="/twilio/v1/Services/{service_sid}/Sessions/{session_sid}/Interactions",
    route_class=TwilioRoute,
    include_in_schema=False,
)


@router.get("")
async def list_interactions(
    service_sid: str,
    session_sid: str,
    request: Request,
    session: TwilioSessionDep,
    account: TwilioAccount,
) -> JSONResponse:
    urls = render.Urls(request)
    page = page_request(query_params(request))
    rows = await Interactions(session).list(
        account.id, service_sid, session_sid, offset=page.offset, limit=page.limit
    )
    body = page_body(
        urls.interactions(service_sid, session_sid),
        "interactions",
        page,
        rows,
        lambda r: render.interaction(urls, r),
    )
    return JSONResponse(body)


@router.get("/{sid}")
async def fetch_interaction(
    service_sid: str,
    session_sid: str,
    sid: str,
    request: Request,
    session: TwilioSessionDep,
    account: TwilioAccount,
) -> JSONResponse:
    row = await Interactions(session).get(account.id, service_sid, session_sid, sid)
    return JSONResponse(render.interaction(render.Urls(request), row))


@router.delete("/{sid}", status_code=204, response_class=Response)
async def delete_interaction(
    service_sid: str, session_sid: str, sid: str, session: TwilioSessionDep, account: TwilioAccount
) -> Response:
    await Interactions(session).delete(account.id, service_sid, session_sid, sid)
    return Response(status_code=204)
