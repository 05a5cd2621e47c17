"""A service's pool numbers (``PN…``): ``/v1/Services/{ServiceSid}/PhoneNumbers[/{Sid}]``,
create / fetch / list / update (POST) / delete (CreatePhoneNumber, FetchPhoneNumber,
ListPhoneNumber, UpdatePhoneNumber, DeletePhoneNumber).

Create takes ``Sid`` (a PN sid of the account's number) or ``PhoneNumber`` (the E.164
of a DID the account owns: bought through ``/numbers/1/numbers`` or given by the
operator), and ``IsReserved``. A number outside the account's inventory is refused and
changes nothing; a DID that carries a per-DID action cannot join a pool (409).
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from callmask.api.deps import ServicesDep
from callmask.api.twilio import render
from callmask.api.twilio.auth import TwilioAccount
from callmask.api.twilio.errors import TwilioRoute, TwilioSessionDep
from callmask.api.twilio.form import form_params, query_params
from callmask.api.twilio.paging import page_body, page_request
from callmask.errors import InvalidInput
from callmask.phone import normalise
from callmask.sessions.repository import PoolNumbers
from callmask.store.models import PoolNumber

router = APIRouter(
    prefix="/twilio/v1/Services/{service_sid}/PhoneNumbers",
    route_class=TwilioRoute,
    include_in_schema=False,
)

PHONE_NUMBER_SID = re.compile(r"PN[0-9a-fA-F]{32}")
MAX_PHONE_NUMBER = 32


async def _render(urls: render.Urls, numbers: PoolNumbers, row: PoolNumber) -> dict[str, object]:
    return render.phone_number(urls, row, in_use=await numbers.in_use(row.sid))


@router.post("")
async def create_phone_number(
    service_sid: str,
    request: Request,
    session: TwilioSessionDep,
    account: TwilioAccount,
    services: ServicesDep,
) -> JSONResponse:
    params = await form_params(request)
    sid = params.raw("Sid") or None
    phone_number = params.text("PhoneNumber", max_length=MAX_PHONE_NUMBER) or None
    is_reserved = params.boolean("IsReserved") or False
    if sid is None and phone_number is None:
        raise InvalidInput("Sid or PhoneNumber is required")
    if sid is not None and phone_number is not None:
        raise InvalidInput("give Sid or PhoneNumber, not both")
    if sid is not None and not PHONE_NUMBER_SID.fullmatch(sid):
        raise InvalidInput("Sid must be PN followed by 32 hexadecimal digits")
    e164 = None
    if phone_number is not None:
        e164 = normalise(phone_number, services.settings.default_region)
    numbers = PoolNumbers(session)
    row = await numbers.add(
        account.id, service_sid, number_sid=sid, phone_number=e164, is_reserved=is_reserved
    )
    return JSONResponse(await _render(render.Urls(request), numbers, row), 201)


@router.get("")
async def list_phone_numbers(
    service_sid: str, request: Request, session: TwilioSessionDep, account: TwilioAccount
) -> JSONResponse:
    urls = render.Urls(request)
    page = page_request(query_params(request))
    numbers = PoolNumbers(session)
    rows = await numbers.list(account.id, service_sid, offset=page.offset, limit=page.limit)
    in_use = {row.sid: await numbers.in_use(row.sid) for row in rows[: page.page_size]}
    body = page_body(
        urls.phone_numbers(service_sid),
        "phone_numbers",
        page,
        rows,
        lambda r: render.phone_number(urls, r, in_use=in_use[r.sid]),
    )
    return JSONResponse(body)


@router.get("/{sid}")
async def fetch_phone_number(
    service_sid: str, sid: str, request: Request, session: TwilioSessionDep, account: TwilioAccount
) -> JSONResponse:
    numbers = PoolNumbers(session)
    row = await numbers.get(account.id, service_sid, sid)
    return JSONResponse(await _render(render.Urls(request), numbers, row))


@router.post("/{sid}")
async def update_phone_number(
    service_sid: str, sid: str, request: Request, session: TwilioSessionDep, account: TwilioAccount
) -> JSONResponse:
    params = await form_params(request)
    is_reserved = params.boolean("IsReserved")
    numbers = PoolNumbers(session)
    if is_reserved is None:
        row = await numbers.get(account.id, service_sid, sid)
    else:
        row = await numbers.update(account.id, service_sid, sid, is_reserved=is_reserved)
    return JSONResponse(await _render(render.Urls(request), numbers, row))


@router.delete("/{sid}", status_code=204, response_class=Response)
async def delete_phone_number(
    service_sid: str, sid: str, session: TwilioSessionDep, account: TwilioAccount
) -> Response:
    await PoolNumbers(session).remove(account.id, service_sid, sid)
    return Response(status_code=204)
