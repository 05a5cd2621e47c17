"""Masking sessions: ``/v1/Account/{auth_id}/Masking/Session/[{session_uuid}/]``,
create (POST), get (GET), update (POST), delete (DELETE) and list (GET with filters),
with the parameters plivo-python's ``MaskingSessions`` sends
(``plivo/resources/maskingsession.py``) and the answers its fixtures show.

A Plivo session is a callmask session (``callmask.sessions.shared``) in the account's
Proxy service named ``plivo``, whose pool is the account's virtual numbers: both
parties get the same pool number, as Plivo gives one virtual number to both. The
session ends ``session_expiry`` seconds after its creation (an absolute end: calls do
not extend it); ``call_time_limit`` is kept in its own column for the call path; every
other Plivo-only field, checked, in the session's ``plivo_options``.

``record`` records the session's calls once both parties answered, after a consent
announcement both hear (``calls.call``); the file is served by ``recordings.py`` and
announced to ``recording_callback_url`` by POST (the webhook outbox: a GET callback is
refused).

Fields whose behaviour callmask's call path does not have yet are refused with Plivo's
400 rather than stored as promises: ``force_pin_authentication``, ``initiate_call_to_first_party``,
``create_session_with_single_party`` when true, non-empty ``first_party_play_url`` /
``second_party_play_url``, and ``subaccount`` (callmask has no subaccounts).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.api.deps import Services as NodeServices
from callmask.api.deps import ServicesDep
from callmask.api.plivo import render
from callmask.api.plivo.auth import PlivoAccount
from callmask.api.plivo.errors import (
    PlivoRoute,
    PlivoSessionDep,
    api_id,
    invalid,
    not_found,
    not_supported,
)
from callmask.api.plivo.params import Fields, json_body, query_fields
from callmask.errors import InvalidInput
from callmask.media.audio import fetch_audio, inspect_mp3
from callmask.phone import region_of
from callmask.sessions import errors
from callmask.sessions.lifetime import as_utc
from callmask.sessions.repository import Services
from callmask.sessions.shared import (
    Bounds,
    Pins,
    SharedFilter,
    SharedSession,
    create_shared,
    end_shared,
    get_shared,
    list_shared,
    update_shared,
)
from callmask.store.models import AudioFile, ProxyService, utcnow
from callmask.store.repositories import AudioFiles

PREFIX = "/plivo/v1/Account/{auth_id}/Masking/Session"
router = APIRouter(route_class=PlivoRoute, include_in_schema=False)

# The name of the account's Proxy service whose pool and sessions the Plivo API uses.
SERVICE_NAME = "plivo"

# Defaults and ranges: Plivo's API reference where it gives them (session_expiry and
# call_time_limit default 3,600 s; ring_timeout 120 s; PINs 4 to 15 digits;
# generate_pin_length 4 to 15; pin_retry 0 to 5, default 1; cooloff 0 to 3,600 s).
# Where it gives no bound, callmask's own, wide enough for any real use: a session of
# at most a year (as a Twilio ttl), a call of at most a day, ringing of at most 300 s,
# a wait between PIN retries of at most 60 s.
SESSION_EXPIRY = (1, 365 * 24 * 3600, 3600)
CALL_TIME_LIMIT = (1, 24 * 3600, 3600)
RING_TIMEOUT = (1, 300)
PIN_LENGTH = (4, 15)
PIN_RETRY = (0, 5)
PIN_RETRY_WAIT = (1, 60)
COOLOFF = (0, 3600)
FILE_FORMATS = ("mp3", "wav")
METHODS = ("GET", "POST")
LIST_LIMIT = (1, 20, 20)

# plivo-python 4.63.0, MaskingSessions: the keyword arguments of each method, which
# are the request's parameters (to_param_dict; update and delete also send the
# session_uuid they were given).
UPDATE_OPTIONS = (
    "record",
    "record_file_format",
    "recording_callback_url",
    "callback_url",
    "callback_method",
    "ring_timeout",
    "first_party_play_url",
    "second_party_play_url",
    "recording_callback_method",
    "subaccount",
    "geomatch",
    "create_session_with_single_party",
)
CREATE_OPTIONS = (
    *UPDATE_OPTIONS,
    "initiate_call_to_first_party",
    "is_pin_authentication_required",
    "generate_pin",
    "generate_pin_length",
    "first_party_pin",
    "second_party_pin",
    "pin_prompt_play",
    "pin_retry",
    "pin_retry_wait",
    "incorrect_pin_play",
    "unknown_caller_play",
    "virtual_number_cooloff_period",
    "force_pin_authentication",
)
PARTIES = ("first_party", "second_party")
CREATE_FIELDS = (*PARTIES, "session_expiry", "call_time_limit", *CREATE_OPTIONS)
UPDATE_FIELDS = ("session_uuid", *PARTIES, "session_expiry", "call_time_limit", *UPDATE_OPTIONS)
RANGE_SUFFIXES = ("", "__lt", "__lte", "__gt", "__gte")
LIST_FIELDS = (
    *PARTIES,
    "virtual_number",
    "status",
    *(
        f"{name}{suffix}"
        for name in ("created_time", "expiry_time", "duration")
        for suffix in RANGE_SUFFIXES
    ),
    "limit",
    "offset",
    "subaccount",
)
LIST_STATUSES = ("active", "expired", "all", "in-progress")


def _options(fields: Fields, names: tuple[str, ...], *, allow_private: bool) -> dict[str, Any]:
    """The given Plivo-only fields among ``names``, each checked."""
    found: dict[str, Any] = {}
    for name in names:
        if name not in fields:
            continue
        value: Any
        match name:
            case (
                "record"
                | "initiate_call_to_first_party"
                | "is_pin_authentication_required"
                | "generate_pin"
                | "geomatch"
                | "create_session_with_single_party"
                | "force_pin_authentication"
            ):
                value = fields.boolean(name)
            case "record_file_format":
                value = fields.choice(name, FILE_FORMATS)
            case "recording_callback_method" | "callback_method":
                value = fields.choice(name, METHODS, upper=True)
            case (
                "recording_callback_url"
                | "callback_url"
                | "first_party_play_url"
                | "second_party_play_url"
                | "pin_prompt_play"
                | "incorrect_pin_play"
                | "unknown_caller_play"
            ):
                value = fields.url(name, allow_private=allow_private)
            case "ring_timeout":
                value = fields.integer(name, minimum=RING_TIMEOUT[0], maximum=RING_TIMEOUT[1])
            case "generate_pin_length":
                value = fields.integer(name, minimum=PIN_LENGTH[0], maximum=PIN_LENGTH[1])
            case "first_party_pin" | "second_party_pin":
                value = fields.digits(name, min_length=PIN_LENGTH[0], max_length=PIN_LENGTH[1])
            case "pin_retry":
                value = fields.integer(name, minimum=PIN_RETRY[0], maximum=PIN_RETRY[1])
            case "pin_retry_wait":
                value = fields.integer(name, minimum=PIN_RETRY_WAIT[0], maximum=PIN_RETRY_WAIT[1])
            case "virtual_number_cooloff_period":
                value = fields.integer(name, minimum=COOLOFF[0], maximum=COOLOFF[1])
            case "subaccount":
                value = fields.text(name, max_length=64)
            case _:  # pragma: no cover - every name above is matched
                raise AssertionError(name)
        found[name] = value
    return found


def _refuse_unsupported(options: dict[str, Any]) -> None:
    """Features the call path does not carry out yet: refused, not stored."""
    if options.get("recording_callback_method") == "GET":
        raise not_supported(
            "recording_callback_method=GET (callmask POSTs the recording callback as JSON)"
        )
    for name in (
        "force_pin_authentication",
        "initiate_call_to_first_party",
        "create_session_with_single_party",
    ):
        if options.get(name):
            raise not_supported(f"{name}=true")
    for name in ("first_party_play_url", "second_party_play_url"):
        if options.get(name):
            raise not_supported(f"{name} (audio played before connecting)")
    if options.get("unknown_caller_play"):
        # A number's unknown callers belong to no session, so no session's audio is
        # theirs: the pool's out-of-session handling answers them.
        raise not_supported("unknown_caller_play (callers in no session get the pool's answer)")
    if options.get("subaccount"):
        raise not_supported("subaccount (callmask accounts have no subaccounts)")


# The customer's audio for the PIN prompts: fetched once, when the session is created,
# checked as MP3 and kept as one of the account's audio files (``media.audio``), so a
# call never waits on, or fails because of, the customer's web server.
PROMPT_AUDIO = ("pin_prompt_play", "incorrect_pin_play")


def prompt_file_key(name: str) -> str:
    """Where the options keep the audio file id of ``name`` (not shown by the API)."""
    return f"{name}_file_id"


async def _fetch_prompt_audio(
    services: NodeServices, options: dict[str, Any]
) -> dict[str, tuple[bytes, str]]:
    """The MP3 of each prompt URL given, by option name; 400 if one is not an MP3."""
    settings = services.settings
    fetched: dict[str, tuple[bytes, str]] = {}
    for name in PROMPT_AUDIO:
        url = options.get(name)
        if not url:
            continue
        data = await fetch_audio(
            services.http,
            url,
            max_bytes=settings.max_audio_bytes,
            timeout_s=settings.audio_fetch_timeout,
            allow_private=settings.webhook_allow_private,
        )
        try:
            inspect_mp3(data)
        except InvalidInput as exc:
            raise invalid(f"{name}: {exc}") from exc
        fetched[name] = (data, url)
    return fetched


async def _keep_prompt_audio(
    session: AsyncSession,
    services: NodeServices,
    account_id: str,
    fetched: dict[str, tuple[bytes, str]],
    saved: list[str],
) -> dict[str, str]:
    """The fetched prompts as the account's audio files; their ids by option key.
    ``saved`` collects the files written, for the caller to remove on failure."""
    ids: dict[str, str] = {}
    for name, (data, url) in fetched.items():
        info = inspect_mp3(data)
        file_id = str(uuid.uuid4())
        services.audio_store.save(file_id, data)
        saved.append(file_id)
        await AudioFiles(session).add(
            AudioFile(
                file_id=file_id,
                account_id=account_id,
                size_bytes=len(data),
                duration_ms=info.duration_ms,
                sha256=info.sha256,
                source_url=url,
            )
        )
        ids[prompt_file_key(name)] = file_id
    return ids


def _check_pins(options: dict[str, Any]) -> None:
    first, second = options.get("first_party_pin"), options.get("second_party_pin")
    if first and second and first == second:
        raise invalid("first_party_pin and second_party_pin must be different")
    if (
        options.get("is_pin_authentication_required")
        and not options.get("generate_pin")
        and not (first and second)
    ):
        raise invalid(
            "is_pin_authentication_required needs first_party_pin and second_party_pin, "
            "or generate_pin=true"
        )


def _pins(options: dict[str, Any]) -> Pins | None:
    if not options["is_pin_authentication_required"]:
        return None
    if options["generate_pin"]:
        return Pins(length=options["generate_pin_length"])
    return Pins(first=options["first_party_pin"], second=options["second_party_pin"])


def _with_pins(shared: SharedSession) -> None:
    """The PINs the parties got (generated ones are chosen with the number), into the
    session's options, where the API shows them."""
    if not shared.first.pin:
        return
    stored = json.loads(shared.row.plivo_options or "{}")
    stored["first_party_pin"], stored["second_party_pin"] = shared.first.pin, shared.second.pin
    shared.row.plivo_options = json.dumps(stored, sort_keys=True, separators=(",", ":"))


def _store(options: dict[str, Any]) -> str:
    # Only what differs from Plivo's defaults is kept: a default changed later in
    # OPTION_DEFAULTS then applies to sessions that never chose otherwise.
    kept = {k: v for k, v in options.items() if render.OPTION_DEFAULTS.get(k) != v}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"))


async def _service(session: AsyncSession, account_id: str) -> ProxyService | None:
    try:
        return await Services(session).get(account_id, SERVICE_NAME)
    except errors.ProxyError as exc:
        if exc.status == 404:
            return None
        raise


async def _shared(session: AsyncSession, account_id: str, uuid_text: str) -> SharedSession:
    sid = render.sid_of(uuid_text)
    service = await _service(session, account_id)
    if sid is None or service is None:
        raise not_found()
    try:
        return await get_shared(session, service.sid, sid)
    except errors.ProxyError as exc:
        raise not_found() from exc


def _route(path: str, methods: list[str], endpoint: Any) -> None:
    """Plivo's paths end with a slash (the SDK always sends it); its reference writes
    them without, so both are served."""
    for form in (f"{PREFIX}{path}/", f"{PREFIX}{path}"):
        router.add_api_route(form, endpoint, methods=methods)


async def create_session(
    auth_id: str,
    request: Request,
    session: PlivoSessionDep,
    account: PlivoAccount,
    services: ServicesDep,
) -> JSONResponse:
    fields = await json_body(request, allowed=CREATE_FIELDS)
    parties = [fields.phone_number(name) for name in PARTIES]
    session_expiry = fields.integer(
        "session_expiry", minimum=SESSION_EXPIRY[0], maximum=SESSION_EXPIRY[1]
    )
    call_time_limit = fields.integer(
        "call_time_limit", minimum=CALL_TIME_LIMIT[0], maximum=CALL_TIME_LIMIT[1]
    )
    given = _options(fields, CREATE_OPTIONS, allow_private=services.settings.webhook_allow_private)
    _check_pins(given)
    _refuse_unsupported(given)
    first, second = parties
    if first is None or second is None:
        raise invalid(f"{'first_party' if first is None else 'second_party'} is required")
    if first == second:
        raise invalid("first_party and second_party must be different numbers")
    options = {**render.OPTION_DEFAULTS, **given}
    service = await _service(session, account.id)
    if service is None:
        raise invalid(
            f"no virtual numbers: create a Proxy service named {SERVICE_NAME!r} and add "
            "your virtual numbers to its pool (POST /twilio/v1/Services with "
            f"UniqueName={SERVICE_NAME}, then .../PhoneNumbers)"
        )
    fetched = await _fetch_prompt_audio(services, options)
    saved: list[str] = []
    try:
        options |= await _keep_prompt_audio(session, services, account.id, fetched, saved)
        now = utcnow()
        shared = await create_shared(
            session,
            service,
            first_party=first,
            second_party=second,
            date_expiry=now + dt.timedelta(seconds=session_expiry or SESSION_EXPIRY[2]),
            call_time_limit_s=call_time_limit or CALL_TIME_LIMIT[2],
            plivo_options=_store(options),
            region=region_of(first) if options["geomatch"] else None,
            cooloff_s=options["virtual_number_cooloff_period"],
            now=now,
            pins=_pins(options),
        )
        _with_pins(shared)
        await session.flush()
    except BaseException:
        # Nothing of a refused create is kept: the rows roll back, the files go.
        for file_id in saved:
            services.audio_store.delete(file_id)
        raise
    body = {
        "api_id": api_id(),
        "session_uuid": render.session_uuid(shared.row.sid),
        "virtual_number": shared.virtual_number,
        "message": "Session created",
        "session": render.session(shared),
    }
    return JSONResponse(body, 201)


def _filter(fields: Fields) -> SharedFilter:
    status = fields.choice("status", LIST_STATUSES)
    if status == "in-progress":
        raise not_supported("status=in-progress (a call up now) as a list filter")
    if fields.text("subaccount"):
        raise not_supported("subaccount (callmask accounts have no subaccounts)")

    def times(name: str) -> Bounds:
        bounds: dict[str, Any] = {}
        for suffix in RANGE_SUFFIXES:
            parsed = fields.time(name + suffix)
            if parsed is None:
                continue
            value, step = parsed
            if suffix == "":  # equals: the whole second (minute, day) the value names
                bounds["within"] = (value, value + step)
            else:
                bounds[suffix.removeprefix("__")] = value
        return Bounds(**bounds)

    durations: dict[str, Any] = {
        (suffix.removeprefix("__") or "eq"): fields.integer(f"duration{suffix}")
        for suffix in RANGE_SUFFIXES
    }
    return SharedFilter(
        first_party=fields.phone_number("first_party"),
        second_party=fields.phone_number("second_party"),
        virtual_number=fields.phone_number("virtual_number"),
        open={"active": True, "expired": False}.get(status or "all"),
        created=times("created_time"),
        expiry=times("expiry_time"),
        duration_s=Bounds(**durations),
    )


def _page_uri(auth_id: str, fields: Fields, *, limit: int, offset: int) -> str:
    query = {
        name: str(fields.raw(name)) for name in fields.names() if name not in ("limit", "offset")
    }
    query.update(limit=str(limit), offset=str(offset))
    return f"{render.MOUNT}/v1/Account/{auth_id}/Masking/Session/?{urlencode(query)}"


async def list_sessions(
    auth_id: str, request: Request, session: PlivoSessionDep, account: PlivoAccount
) -> JSONResponse:
    fields = query_fields(request, allowed=LIST_FIELDS)
    where = _filter(fields)
    limit = fields.integer("limit", minimum=LIST_LIMIT[0], maximum=LIST_LIMIT[1]) or LIST_LIMIT[2]
    offset = fields.integer("offset") or 0
    service = await _service(session, account.id)
    found, total = (
        await list_shared(session, service.sid, where, offset=offset, limit=limit)
        if service is not None
        else ([], 0)
    )
    meta = {
        "limit": limit,
        "next": (
            _page_uri(auth_id, fields, limit=limit, offset=offset + limit)
            if offset + limit < total
            else None
        ),
        "offset": offset,
        "previous": (
            _page_uri(auth_id, fields, limit=limit, offset=max(0, offset - limit))
            if offset > 0
            else None
        ),
        "total_count": total,
    }
    objects = [render.session(shared, auth_id=auth_id) for shared in found]
    return JSONResponse({"api_id": api_id(), "response": {"meta": meta, "objects": objects}})


async def get_session(
    auth_id: str,
    session_uuid: str,
    session: PlivoSessionDep,
    account: PlivoAccount,
) -> JSONResponse:
    shared = await _shared(session, account.id, session_uuid)
    return JSONResponse({"api_id": api_id(), "response": render.session(shared)})


async def update_session(
    auth_id: str,
    session_uuid: str,
    request: Request,
    session: PlivoSessionDep,
    account: PlivoAccount,
    services: ServicesDep,
) -> JSONResponse:
    # Known but not updatable (PINs, the first call): named as such, not as unknown.
    fields = await json_body(request, allowed=(*UPDATE_FIELDS, *CREATE_OPTIONS))
    for name in fields.names():
        if name not in UPDATE_FIELDS:
            raise invalid(f"{name} cannot be changed on an existing session")
    named = fields.text("session_uuid", max_length=64)
    if named is not None and render.sid_of(named) != render.sid_of(session_uuid):
        raise invalid("session_uuid in the body names another session than the path")
    parties = {name: fields.phone_number(name) for name in PARTIES}
    session_expiry = fields.integer(
        "session_expiry", minimum=SESSION_EXPIRY[0], maximum=SESSION_EXPIRY[1]
    )
    call_time_limit = fields.integer(
        "call_time_limit", minimum=CALL_TIME_LIMIT[0], maximum=CALL_TIME_LIMIT[1]
    )
    given = _options(fields, UPDATE_OPTIONS, allow_private=services.settings.webhook_allow_private)
    _refuse_unsupported(given)
    shared = await _shared(session, account.id, session_uuid)
    current = {"first_party": shared.first.identifier, "second_party": shared.second.identifier}
    for name, number in parties.items():
        if number is not None and number != current[name]:
            raise invalid(
                f"{name} can be changed only in a session created with "
                "create_session_with_single_party, which callmask does not support yet"
            )
    options = {**render.options_of(shared), **given}
    created = as_utc(shared.row.created_at)
    assert created is not None
    await update_shared(
        session,
        shared,
        # Plivo: "Time in seconds after which the session mapping will expire", counted
        # from the session's creation, as on create.
        date_expiry=(
            created + dt.timedelta(seconds=session_expiry) if session_expiry is not None else None
        ),
        call_time_limit_s=call_time_limit,
        plivo_options=_store(options) if given else None,
    )
    body = {"api_id": api_id(), "message": "Session updated", "session": render.session(shared)}
    return JSONResponse(body)


async def delete_session(
    auth_id: str,
    session_uuid: str,
    session: PlivoSessionDep,
    account: PlivoAccount,
    services: ServicesDep,
) -> JSONResponse:
    shared = await _shared(session, account.id, session_uuid)
    try:
        await end_shared(session, shared)
    except errors.ProxyError as exc:
        raise not_found("session not found or already expired") from exc
    # Ending queues the service's session-closed event: committed before the worker
    # is woken.
    await session.commit()
    services.webhooks.notify()
    return JSONResponse({"api_id": api_id(), "message": "Session Deleted"})


_route("", ["POST"], create_session)
_route("", ["GET"], list_sessions)
_route("/{session_uuid}", ["GET"], get_session)
_route("/{session_uuid}", ["POST"], update_session)
_route("/{session_uuid}", ["DELETE"], delete_session)
