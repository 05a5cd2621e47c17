"""Services (``KS…``): ``/v1/Services`` and ``/v1/Services/{Sid}``, create / fetch / list /
update (POST) / delete, as twilio_proxy_v1.json defines them (CreateService,
FetchService, ListService, UpdateService, DeleteService). A service is a number pool
and the defaults of its sessions.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from callmask.api.deps import ServicesDep
from callmask.api.twilio import render
from callmask.api.twilio.auth import TwilioAccount
from callmask.api.twilio.errors import TwilioRoute, TwilioSessionDep
from callmask.api.twilio.form import Params, form_params, query_params
from callmask.api.twilio.paging import page_body, page_request
from callmask.errors import InvalidInput
from callmask.sessions.repository import Services

router = APIRouter(prefix="/twilio/v1/Services", route_class=TwilioRoute, include_in_schema=False)

# twilio_proxy_v1.json: service_enum_number_selection_behavior, service_enum_geo_match_level
NUMBER_SELECTION_BEHAVIORS = ("avoid-sticky", "prefer-sticky")
GEO_MATCH_LEVELS = ("area-code", "overlay", "radius", "country")
MAX_UNIQUE_NAME = 191  # "This value must be 191 characters or fewer"
_CHAT_INSTANCE_SID = re.compile(r"IS[0-9a-fA-F]{32}")
URL_FIELDS = {
    "CallbackUrl": "callback_url",
    "InterceptCallbackUrl": "intercept_callback_url",
    "OutOfSessionCallbackUrl": "out_of_session_callback_url",
}


def service_fields(params: Params, *, allow_private: bool, creating: bool) -> dict[str, Any]:
    """The domain's keyword arguments for the parameters given (only those): all
    checked before anything is written. On an update an empty URL or ChatInstanceSid
    is passed on as "", which clears it (``Services.update``)."""
    fields: dict[str, Any] = {}
    unique_name = params.text("UniqueName", max_length=MAX_UNIQUE_NAME, required=creating)
    if unique_name == "":
        raise InvalidInput("UniqueName cannot be empty")
    if unique_name is not None:
        fields["unique_name"] = unique_name
    default_ttl = params.integer("DefaultTtl")
    if default_ttl is not None:
        fields["default_ttl"] = default_ttl
    for name, field in URL_FIELDS.items():
        url = params.url(name, allow_private=allow_private)
        if url is not None:
            fields[field] = url
    behavior = params.choice("NumberSelectionBehavior", NUMBER_SELECTION_BEHAVIORS)
    if behavior is not None:
        fields["number_selection_behavior"] = behavior
    geo_match_level = params.choice("GeoMatchLevel", GEO_MATCH_LEVELS)
    if geo_match_level is not None:
        fields["geo_match_level"] = geo_match_level
    chat_instance_sid = params.raw("ChatInstanceSid")
    if chat_instance_sid is not None:
        if chat_instance_sid and not _CHAT_INSTANCE_SID.fullmatch(chat_instance_sid):
            raise InvalidInput("ChatInstanceSid must be IS followed by 32 hexadecimal digits")
        fields["chat_instance_sid"] = chat_instance_sid
    if creating:
        # Nothing to clear on a create: an empty value is the default.
        fields = {name: value for name, value in fields.items() if value != ""}
    return fields


@router.post("")
async def create_service(
    request: Request, session: TwilioSessionDep, account: TwilioAccount, services: ServicesDep
) -> JSONResponse:
    params = await form_params(request)
    fields = service_fields(
        params, allow_private=services.settings.webhook_allow_private, creating=True
    )
    row = await Services(session).create(account.id, **fields)
    return JSONResponse(render.service(render.Urls(request), row), 201)


@router.get("")
async def list_services(
    request: Request, session: TwilioSessionDep, account: TwilioAccount
) -> JSONResponse:
    urls = render.Urls(request)
    page = page_request(query_params(request))
    rows = await Services(session).list(account.id, offset=page.offset, limit=page.limit)
    body = page_body(urls.services(), "services", page, rows, lambda r: render.service(urls, r))
    return JSONResponse(body)


@router.get("/{sid}")
async def fetch_service(
    sid: str, request: Request, session: TwilioSessionDep, account: TwilioAccount
) -> JSONResponse:
    row = await Services(session).get(account.id, sid)
    return JSONResponse(render.service(render.Urls(request), row))


@router.post("/{sid}")
async def update_service(
    sid: str,
    request: Request,
    session: TwilioSessionDep,
    account: TwilioAccount,
    services: ServicesDep,
) -> JSONResponse:
    params = await form_params(request)
    fields = service_fields(
        params, allow_private=services.settings.webhook_allow_private, creating=False
    )
    repository = Services(session)
    row = await repository.update(account.id, sid, **fields)
    return JSONResponse(render.service(render.Urls(request), row))


@router.delete("/{sid}", status_code=204, response_class=Response)
async def delete_service(
    sid: str, session: TwilioSessionDep, account: TwilioAccount, services: ServicesDep
) -> Response:
    await Services(session).delete(account.id, sid)
    # Closing the service's open sessions may have queued "session closed" events:
    # committed before the worker is woken (see api/webhooks.py retry_delivery).
    await session.commit()
    services.webhooks.notify()
    return Response(status_code=204)
