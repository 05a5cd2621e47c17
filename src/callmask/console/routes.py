"""The console's pages under ``/console``: login, dashboard, live calls (with hang up),
call records and a call's detail, numbers and their actions, session pools (numbers in
use and free over time, exhaustion events), webhook deliveries (with attempts and
retry).

Every page reads through the same repositories, filters and tenancy as the REST APIs:
records go through the Tata records endpoint's own function (so the filters and their
errors are the API's), deliveries through ``Deliveries`` as ``/webhooks/1`` does, live
calls and hang up through the engine's ``CallControl``. An account sees its own rows;
the operator (logged in with ``CALLMASK_ADMIN_KEY``) sees every account's.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select

from callmask.api.deps import ServicesDep, SessionDep
from callmask.api.tata import records as tata_records
from callmask.api.webhooks import AttemptOut, DeliveryOut
from callmask.console import assets, live, pools, stats
from callmask.console.session import (
    LOGIN_FORM_LIFETIME_S,
    SESSION_LIFETIME_S,
    Role,
    new_session,
)
from callmask.console.web import (
    CodecDep,
    ConsoleRoute,
    FormDep,
    Viewer,
    ViewerDep,
    anonymous_session,
    check_csrf,
    cookie_session,
    page,
    read_form,
    set_session_cookie,
)
from callmask.errors import InvalidInput, NotFound
from callmask.store.models import Account, ApiKey, CallRecord
from callmask.store.repositories import Accounts, Actions, Numbers, hash_api_key
from callmask.webhooks.outbox import EventStatus
from callmask.webhooks.repository import Deliveries, as_utc

log = logging.getLogger(__name__)

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

MAX_KEY_LENGTH = 512
DELIVERY_PAGE = 50
NUMBERS_PAGE = 200
RECORD_FILTERS = (
    "from_date",
    "to_date",
    "call_id",
    "call_type",
    "callerid",
    "destination",
    "direction",
    "duration",
    "operator",
    "services",
    "agents",
    "department",
    "ivr",
    "page",
    "limit",
)
Text = Annotated[str | None, Query(max_length=100)]


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    return assets.asset_response(name)


@router.get("")
async def home() -> Response:
    return RedirectResponse("/console/dashboard", status_code=303)


# -- login ----------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, session_codec: CodecDep) -> Response:
    console = cookie_session(request, session_codec)
    if console is None or console.role is not Role.ANONYMOUS:
        console = anonymous_session()
    response = page(request, "login.html", None, csrf_login=console.csrf)
    set_session_cookie(request, response, session_codec.encode(console), LOGIN_FORM_LIFETIME_S)
    return response


@router.post("/login")
async def login(
    request: Request, session: SessionDep, services: ServicesDep, session_codec: CodecDep
) -> Response:
    form = await read_form(request)
    anonymous = cookie_session(request, session_codec)
    if anonymous is None:
        return RedirectResponse("/console/login", status_code=303)  # the form had expired
    check_csrf(request, anonymous, form)
    key = form.get("api_key", "").strip()
    console = None
    admin_key = services.settings.admin_key
    if key and len(key) <= MAX_KEY_LENGTH:
        if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
            console = new_session(Role.OPERATOR, operator=session_codec.operator_tag(admin_key))
        else:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_sha256 == hash_api_key(key)))
            if row is not None:
                console = new_session(Role.ACCOUNT, account_id=row.account_id, key_id=row.id)
    if console is None:
        # The key itself is never logged; where the attempt came from is.
        log.warning(
            "console: login refused from %s", request.client.host if request.client else "?"
        )
        return page(
            request,
            "login.html",
            None,
            401,
            csrf_login=anonymous.csrf,
            error="That key is not valid.",
        )
    log.info("console: %s logged in", console.account_id or "operator")
    redirect = RedirectResponse("/console/dashboard", status_code=303)
    set_session_cookie(request, redirect, session_codec.encode(console), SESSION_LIFETIME_S)
    return redirect


@router.post("/logout")
async def logout(request: Request, form: FormDep) -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie("callmask_console", path="/console")
    return response


# -- dashboard --------------------------------------------------------------------------


@router.get("/dashboard")
async def dashboard(
    request: Request, viewer: ViewerDep, session: SessionDep, services: ServicesDep
) -> Response:
    series = await stats.minute_series(session, viewer.account_id)
    calls = await live.live_calls(viewer, services, session)
    return page(
        request,
        "dashboard.html",
        viewer,
        series=series,
        live_count=None if calls is None else len(calls),
        node=stats.node_metrics() if viewer.is_operator else None,
        missing_assets=assets.missing_vendor_files(),
    )


@router.get("/dashboard/data")
async def dashboard_data(viewer: ViewerDep, session: SessionDep) -> Response:
    series = await stats.minute_series(session, viewer.account_id)
    return JSONResponse(
        {
            "minutes": series.minutes,
            "calls": series.calls,
            "answered": series.answered,
            "pdd_ms": series.pdd_ms,
        }
    )


# -- live calls ---------------------------------------------------------------------------


@router.get("/live")
async def live_page(
    request: Request, viewer: ViewerDep, session: SessionDep, services: ServicesDep
) -> Response:
    calls = await live.live_calls(viewer, services, session)
    return page(
        request,
        "live.html",
        viewer,
        calls=calls or [],
        running=calls is not None,
        hung=request.query_params.get("hung"),
    )


@router.get("/live/stream")
async def live_stream(
    request: Request, viewer: ViewerDep, session: SessionDep, services: ServicesDep
) -> Response:
    accounts = None if not viewer.is_operator else [a.id for a in await Accounts(session).list()]
    return live.stream_response(request, viewer, services, accounts)


@router.post("/live/hangup")
async def hangup(viewer: ViewerDep, services: ServicesDep, form: FormDep) -> Response:
    call_id = form.get("call_id", "")
    # The operator names the call's account; an account can only name its own.
    account_id = viewer.account_id or form.get("account_id", "")
    if services.calls is None:
        raise InvalidInput("calls are not running on this node")
    if not call_id or not services.calls.hangup(account_id, call_id):
        raise NotFound(f"live call {call_id} not found")
    log.info("console: %s hung up call %s", viewer.account_id or "operator", call_id)
    return RedirectResponse("/console/live?hung=" + call_id, status_code=303)


# -- call records -----------------------------------------------------------------------


async def _chosen_account(
    viewer: Viewer, session: SessionDep, chosen: str | None
) -> tuple[Account | None, list[Account]]:
    """The account whose records a page shows: the viewer's own, or the one the
    operator picked (the first, when none was)."""
    if viewer.account is not None:
        return viewer.account, []
    accounts = list(await Accounts(session).list())
    if chosen:
        return await Accounts(session).get(chosen), accounts
    return (accounts[0] if accounts else None), accounts


@router.get("/records")
async def records_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    services: ServicesDep,
    account: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    params = {name: request.query_params.get(name) or None for name in RECORD_FILTERS}
    for name, value in params.items():
        if value is not None and len(value) > 1000:
            raise InvalidInput(f"{name} is too long")
    shown_account, accounts = await _chosen_account(viewer, session, account)
    result = None
    if shown_account is not None:
        department = [params["department"]] if params["department"] else None
        ivr = [params["ivr"]] if params["ivr"] else None
        result = await tata_records.call_records(
            session=session,
            account=shown_account,
            services=services,
            from_date=params["from_date"],
            to_date=params["to_date"],
            page=params["page"],
            limit=params["limit"] or "25",
            call_id=params["call_id"],
            agents=params["agents"],
            department=department,
            department_brackets=None,
            ivr=ivr,
            ivr_brackets=None,
            call_type=params["call_type"],
            callerid=params["callerid"],
            destination=params["destination"],
            direction=params["direction"],
            duration=params["duration"],
            operator=params["operator"],
            services_filter=params["services"],
        )
    filters = {k: v or "" for k, v in params.items()}
    next_query = None
    if result is not None and result.page * result.limit < result.count:
        next_params = {k: v for k, v in filters.items() if v}
        next_params["page"] = str(result.page + 1)
        if shown_account is not None and viewer.is_operator:
            next_params["account"] = shown_account.id
        next_query = next_params
    return page(
        request,
        "records.html",
        viewer,
        result=result,
        filters=filters,
        accounts=accounts,
        shown_account=shown_account,
        next_query=next_query,
        operators=list(tata_records.OPERATORS),
        service_names=list(tata_records.SERVICE_NAMES.values()),
    )


def _timeline(record: CallRecord, details: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(event, UTC time, seconds after the INVITE) in the order they happened."""
    start = as_utc(record.invited_at)
    events = [("INVITE received", record.invited_at)]
    if record.ringing_at is not None:
        events.append(("ringing", record.ringing_at))
    if record.answered_at is not None:
        events.append(("answered", record.answered_at))
    events.append((f"ended: {record.status}", record.ended_at))
    rows = []
    for name, moment in events:
        when = as_utc(moment)
        rows.append(
            (
                name,
                when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                f"+{(when - start).total_seconds():.3f} s",
            )
        )
    return rows


@router.get("/calls/{call_id}")
async def call_detail(
    request: Request, call_id: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    query = select(CallRecord).where(CallRecord.call_id == call_id[:40])
    if viewer.account_id is not None:
        query = query.where(CallRecord.account_id == viewer.account_id)
    record = await session.scalar(query)
    if record is None:
        raise NotFound(f"call {call_id} not found")
    try:
        details = json.loads(record.details or "{}")
    except ValueError:
        details = {}
    if not isinstance(details, dict):
        details = {}
    legs: list[dict[str, Any]] = [
        {"leg": "A (caller)", "number": record.caller, "sip call id": record.a_sip_call_id}
    ]
    for kind in ("tried", "legs"):
        for entry in details.get(kind, []) or []:
            if isinstance(entry, dict):
                legs.append({"leg": "B (tried)" if kind == "tried" else "B", **entry})
    facts = {
        key: details[key]
        for key in ("callback_ms", "post_dial_delay_ms", "audio_ms", "prompt_ms", "ring_timeout")
        if key in details
    }
    return page(
        request,
        "call.html",
        viewer,
        record=record,
        timeline=_timeline(record, details),
        legs=legs,
        facts=facts,
        media=details.get("media") if isinstance(details.get("media"), dict) else None,
        service=tata_records.service_name(record.service),
    )


# -- numbers and actions -------------------------------------------------------------------


@router.get("/numbers")
async def numbers_page(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    numbers = Numbers(session)
    if viewer.account_id is None:
        rows = list(await numbers.inventory())[:NUMBERS_PAGE]
        owners = {a.id: a.name for a in await Accounts(session).list()}
    else:
        rows = list((await numbers.owned(viewer.account_id, limit=NUMBERS_PAGE, offset=0))[0])
        owners = {}
    actions = Actions(session)
    table = []
    for number in rows:
        number_actions = (
            await actions.for_number(number.account_id, number.number_key)
            if number.account_id
            else []
        )
        table.append((number, owners.get(number.account_id or "", ""), number_actions))
    return page(request, "numbers.html", viewer, table=table, capped=len(rows) >= NUMBERS_PAGE)


# -- session pools ----------------------------------------------------------------------------


@router.get("/pools")
async def pools_page(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    services = await pools.services_of(session, viewer.account_id)
    summaries = [await pools.summary_of(session, service) for service in services]
    return page(request, "pools.html", viewer, summaries=summaries)


@router.get("/pools/{service_sid}")
async def pool_detail(
    request: Request, service_sid: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    service = await pools.service_of(session, viewer.account_id, service_sid)
    if service is None:
        raise NotFound(f"pool {service_sid} not found")
    return page(
        request,
        "pool.html",
        viewer,
        summary=await pools.summary_of(session, service),
        exhaustions=await pools.recent_exhaustions(session, service),
        missing_assets=assets.missing_vendor_files(),
    )


@router.get("/pools/{service_sid}/data")
async def pool_data(service_sid: str, viewer: ViewerDep, session: SessionDep) -> Response:
    service = await pools.service_of(session, viewer.account_id, service_sid)
    if service is None:
        raise NotFound(f"pool {service_sid} not found")
    history = await pools.history_of(session, service)
    return JSONResponse(
        {
            "times": history.times,
            "in_use": history.in_use,
            "free": history.free,
            "capped": history.capped,
        }
    )


# -- webhook deliveries ---------------------------------------------------------------------


@router.get("/deliveries")
async def deliveries_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    event_type: Annotated[str | None, Query(alias="eventType", max_length=64)] = None,
    page_number: Annotated[int, Query(alias="page", ge=0, le=999_999)] = 0,
) -> Response:
    chosen = None
    if status:
        try:
            chosen = EventStatus(status)
        except ValueError as exc:
            raise InvalidInput(f"status must be one of {[s.value for s in EventStatus]}") from exc
    rows, total = await Deliveries(session).search(
        account_id=viewer.account_id,
        status=chosen,
        event_type=event_type or None,
        limit=DELIVERY_PAGE,
        offset=page_number * DELIVERY_PAGE,
    )
    return page(
        request,
        "deliveries.html",
        viewer,
        deliveries=[DeliveryOut.of(e) for e in rows],
        accounts={e.id: e.account_id for e in rows},
        total=total,
        status=status or "",
        event_type=event_type or "",
        page_number=page_number,
        more=(page_number + 1) * DELIVERY_PAGE < total,
        statuses=[s.value for s in EventStatus],
    )


@router.get("/deliveries/{event_id}")
async def delivery_detail(
    request: Request, event_id: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    deliveries = Deliveries(session)
    event = await deliveries.get(event_id, account_id=viewer.account_id)
    attempts = [AttemptOut.of(a) for a in await deliveries.attempts(event.id)]
    try:
        payload = json.dumps(json.loads(event.payload), indent=2)
    except ValueError:
        payload = event.payload
    return page(
        request,
        "delivery.html",
        viewer,
        delivery=DeliveryOut.of(event),
        account_id=event.account_id,
        attempts=attempts,
        payload=payload,
        retried=request.query_params.get("retried") == "1",
    )


@router.post("/deliveries/{event_id}/retry")
async def retry_delivery(
    event_id: str, viewer: ViewerDep, session: SessionDep, services: ServicesDep, form: FormDep
) -> Response:
    await Deliveries(session).retry(event_id, account_id=viewer.account_id)
    # As POST /webhooks/1/deliveries/{id}/retry: committed before the worker is woken.
    await session.commit()
    services.webhooks.notify()
    log.info("console: %s retried delivery %s", viewer.account_id or "operator", event_id)
    return RedirectResponse(f"/console/deliveries/{event_id}?retried=1", status_code=303)
