"""Recordings: ``/v1/Account/{auth_id}/Recording/[{recording_id}/]``, list (GET with
``call_uuid`` and ``add_time`` filters), get and delete, as plivo-python's
``Recordings`` calls them (``plivo/resources/recordings.py``) and its fixtures answer
(``recordingGetResponse.json``, ``recordingListResponse.json``); and the file itself at
the object's ``recording_url``, ``.../Recording/{recording_id}.{mp3|wav}``, served to
the account that owns it only (the same Basic auth).

A recording callmask could not make is listed too, with ``recording_status`` ``failed``
and its ``failure_reason`` (fields Plivo's objects do not have), and no
``recording_url``: a recording asked for is never silently absent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import ColumnElement, delete, func, select

from callmask.api.deps import ServicesDep
from callmask.api.plivo import render
from callmask.api.plivo.auth import PlivoAccount
from callmask.api.plivo.errors import PlivoRoute, PlivoSessionDep, api_id, invalid, not_found
from callmask.api.plivo.params import Fields, query_fields
from callmask.config import Settings
from callmask.recordings import calls
from callmask.recordings.worker import recording_path
from callmask.store.models import Recording

PREFIX = "/plivo/v1/Account/{auth_id}/Recording"
router = APIRouter(route_class=PlivoRoute, include_in_schema=False)
LIST_LIMIT = (1, 20, 20)
RANGE_SUFFIXES = ("", "__lt", "__lte", "__gt", "__gte")
LIST_FIELDS = (
    "call_uuid",
    *(f"add_time{suffix}" for suffix in RANGE_SUFFIXES),
    "limit",
    "offset",
    "subaccount",
)
MEDIA_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}


def _epoch_ms(value: dt.datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return f"{aware.timestamp() * 1000:.5f}"


def _add_time(value: dt.datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return str(aware.astimezone(dt.UTC))  # 2014-08-05 10:45:15.852059+00:00, as Plivo's


def resource_uri(auth_id: str, recording_id: str) -> str:
    return f"{render.MOUNT}/v1/Account/{auth_id}/Recording/{recording_id}/"


def recording_url(settings: Settings, auth_id: str, row: Recording) -> str:
    if row.status != calls.COMPLETED:
        return ""
    return (
        f"{settings.effective_public_url}{render.MOUNT}/v1/Account/{auth_id}/Recording/"
        f"{row.id}.{row.file_format}"
    )


def recording_object(settings: Settings, auth_id: str, row: Recording) -> dict[str, Any]:
    """The Recording object (fields of plivo-python's fixtures; amounts 0: callmask
    charges nothing), with callmask's ``recording_status``, ``failure_reason`` and the
    ``session_uuid`` of the masking session the call belonged to."""
    duration_ms = row.duration_ms or 0
    return {
        "add_time": _add_time(row.created_at),
        "call_uuid": row.call_id,
        "conference_name": "",
        "monthly_recording_storage_amount": 0,
        "recording_duration_ms": f"{duration_ms:.5f}",
        "recording_end_ms": _epoch_ms(row.ended_at),
        "recording_format": row.file_format,
        "recording_id": row.id,
        "recording_start_ms": _epoch_ms(row.started_at),
        "recording_storage_duration": 0,
        "recording_storage_rate": 0,
        "recording_type": "call",
        "recording_url": recording_url(settings, auth_id, row),
        "resource_uri": resource_uri(auth_id, row.id),
        "rounded_recording_duration": math.ceil(duration_ms / 60000) * 60,
        "recording_status": row.status,
        "failure_reason": row.failure_reason or "",
        "session_uuid": render.session_uuid(row.session_sid) if row.session_sid else "",
    }


def callback_payload(settings: Settings, auth_id: str, row: Recording) -> dict[str, Any]:
    """What ``recording_callback_url`` is told once the recording is settled."""
    return {"event": "recording", **recording_object(settings, auth_id, row)}


def _route(path: str, methods: list[str], endpoint: Any) -> None:
    for form in (f"{PREFIX}{path}/", f"{PREFIX}{path}"):
        router.add_api_route(form, endpoint, methods=methods)


def _conditions(fields: Fields, account_id: str) -> list[ColumnElement[bool]]:
    if fields.text("subaccount"):
        raise invalid("subaccount is not supported by callmask yet")
    where: list[ColumnElement[bool]] = [Recording.account_id == account_id]
    call_uuid = fields.text("call_uuid", max_length=64)
    if call_uuid is not None:
        where.append(Recording.call_id == call_uuid)
    for suffix in RANGE_SUFFIXES:
        parsed = fields.time(f"add_time{suffix}")
        if parsed is None:
            continue
        value, step = parsed
        column = Recording.created_at
        match suffix:
            case "":
                where += [column >= value, column < value + step]
            case "__lt":
                where.append(column < value)
            case "__lte":
                where.append(column <= value)
            case "__gt":
                where.append(column > value)
            case "__gte":
                where.append(column >= value)
    return where


def _page_uri(auth_id: str, fields: Fields, *, limit: int, offset: int) -> str:
    query = {
        name: str(fields.raw(name)) for name in fields.names() if name not in ("limit", "offset")
    }
    query.update(limit=str(limit), offset=str(offset))
    return f"{render.MOUNT}/v1/Account/{auth_id}/Recording/?{urlencode(query)}"


async def list_recordings(
    auth_id: str,
    request: Request,
    session: PlivoSessionDep,
    account: PlivoAccount,
    services: ServicesDep,
) -> JSONResponse:
    fields = query_fields(request, allowed=LIST_FIELDS)
    where = _conditions(fields, account.id)
    limit = fields.integer("limit", minimum=LIST_LIMIT[0], maximum=LIST_LIMIT[1]) or LIST_LIMIT[2]
    offset = fields.integer("offset") or 0
    total = await session.scalar(select(func.count()).select_from(Recording).where(*where)) or 0
    rows = (
        await session.scalars(
            select(Recording)
            .where(*where)
            .order_by(Recording.created_at.desc(), Recording.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
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
    objects = [recording_object(services.settings, auth_id, row) for row in rows]
    return JSONResponse({"api_id": api_id(), "meta": meta, "objects": objects})


async def _owned(session: PlivoSessionDep, account_id: str, recording_id: str) -> Recording:
    row = await session.get(Recording, recording_id)
    if row is None or row.account_id != account_id:
        raise not_found("recording not found")
    return row


async def get_recording(
    auth_id: str,
    recording_id: str,
    session: PlivoSessionDep,
    account: PlivoAccount,
    services: ServicesDep,
) -> Response:
    settings = services.settings
    stem, dot, extension = recording_id.rpartition(".")
    if dot and extension in MEDIA_TYPES:
        # The file at recording_url.
        row = await _owned(session, account.id, stem)
        if row.status != calls.COMPLETED or row.file_format != extension:
            raise not_found("recording file not found")
        path = recording_path(settings.recordings_dir, row.account_id, row.id, row.file_format)
        if not path.is_file():
            raise not_found("recording file not found")
        return FileResponse(path, media_type=MEDIA_TYPES[extension], filename=path.name)
    row = await _owned(session, account.id, recording_id)
    return JSONResponse({"api_id": api_id(), **recording_object(settings, auth_id, row)})


async def delete_recording(
    auth_id: str,
    recording_id: str,
    session: PlivoSessionDep,
    account: PlivoAccount,
    services: ServicesDep,
) -> Response:
    row = await _owned(session, account.id, recording_id)
    if row.status == calls.IN_PROGRESS:
        raise invalid("the recording is still being made; delete it once it is completed")
    path = recording_path(services.settings.recordings_dir, row.account_id, row.id, row.file_format)
    await session.execute(delete(Recording).where(Recording.id == row.id))
    await session.commit()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return Response(status_code=204)


_route("", ["GET"], list_recordings)
_route("/{recording_id}", ["GET"], get_recording)
_route("/{recording_id}", ["DELETE"], delete_recording)
