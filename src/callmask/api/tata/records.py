"""Call records (reference tata-cpaas-anonymize.txt, ``GET /v1/call/records``): the
account's CDRs, newest first, one page at a time, with every filter of the reference.

Reply: ``{"count": <matching records>, "limit", "page", "size": <records on this page>,
"results": [<RecordOut>...]}``. Record times (``date``, ``time``, ``end_stamp``) are UTC;
``from_date``/``to_date`` are read as UTC unless they carry an offset
(``2021-03-10 17:16:18+05:30``).

Filters (query string): ``from_date``, ``to_date`` (``YYYY-MM-DD hh:mm:ss``, or
``YYYY-MM-DD``: from the start / to the end of that day), ``page`` (from 1), ``limit``
(1..100, larger values are capped at 100), ``call_id``, ``agents`` (agent ids, comma
separated), ``department`` and ``ivr`` (repeatable or comma separated; also
``department[]``), ``call_type`` (``c`` answered, ``m`` missed), ``callerid`` (the
client's number: the caller of an inbound call, the called party of an outbound one),
``destination`` (the number the call went to), ``direction`` (``inbound`` |
``outbound``), ``duration`` (seconds, INVITE to end) with ``operator`` one of
``>``, ``<``, ``>=``, ``<=``, ``!=`` (URL-encoded; no operator means equal), ``services``
(comma separated: ``Number Masking``, ``Anonymize``, ``Click to Call``, ``Broadcast``,
any case, spaces optional). Anything else malformed (bad date, ``from_date`` after
``to_date``, unknown operator or call type, ``page`` < 1) -> 400 ``success: false``.

Cost: ``count`` is exact. For filters made only of dates, direction, services and
call type it adds up per-day counts that triggers keep (``call_record_daily_counts``)
and counts rows only in the partial days at the ends of the range; other filters count
through their own indexes (see ``callmask.store.tata_repositories.CallRecords.count``).
bench/records.py measures both over 1,000,000 CDRs.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

from fastapi import APIRouter, Query

from callmask.api.deps import CurrentAccount, ServicesDep, SessionDep
from callmask.api.tata.numbers import shown, spellings, stamp
from callmask.api.tata.schemas import MissedAgentOut, RecordOut, RecordsOut
from callmask.errors import InvalidInput
from callmask.phone import digits
from callmask.store.models import CallRecord, TataAgent
from callmask.store.tata_repositories import Agents, CallRecords, DurationOperator, RecordFilter

router = APIRouter(prefix="/v1", tags=["tata: call records"])

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_LIST_ITEMS = 50  # values in one list filter (agents, services...)
MAX_CALL_ID_LENGTH = 40  # call_records.call_id

# The reference's allowed set; equality is what a duration without operator means.
OPERATORS = {o.value: o for o in DurationOperator if o is not DurationOperator.EQ}

# The call engine's service codes and the names the reference's ``services`` uses.
SERVICE_NAMES = {
    "number_masking": "Number Masking",
    "anonymize": "Anonymize",
    "click_to_call": "Click to Call",
    "broadcast": "Broadcast",
}


def _service_key(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


SERVICE_BY_KEY = {
    **{_service_key(code): code for code in SERVICE_NAMES},
    **{_service_key(name): code for code, name in SERVICE_NAMES.items()},
}


def service_name(code: str) -> str:
    return SERVICE_NAMES.get(code, code)


def _when(raw: str, field: str, *, end_of_day: bool) -> tuple[dt.datetime, bool]:
    """A query date as UTC, and whether it was a bare date (then ``to_date`` means
    "before the next day")."""
    text = raw.strip()
    if len(text) < 10 or text[4:5] != "-":
        raise InvalidInput(f"{field} must look like YYYY-MM-DD hh:mm:ss (got {raw!r})")
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            if end_of_day:
                day += dt.timedelta(days=1)
            return dt.datetime.combine(day, dt.time(), dt.UTC), True
        moment = dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"{field} must look like YYYY-MM-DD hh:mm:ss (got {raw!r})") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC), False


def _items(*raws: str | list[str] | None, field: str) -> tuple[str, ...]:
    values: list[str] = []
    for raw in raws:
        for part in [raw] if isinstance(raw, str) else raw or []:
            values.extend(p.strip() for p in part.split(",") if p.strip())
    if len(values) > MAX_LIST_ITEMS:
        raise InvalidInput(f"{field} takes at most {MAX_LIST_ITEMS} values")
    return tuple(dict.fromkeys(values))


def _call_id(raw: str | None) -> str | None:
    text = (raw or "").strip()
    if len(text) > MAX_CALL_ID_LENGTH:
        raise InvalidInput(f"call_id is longer than {MAX_CALL_ID_LENGTH} characters")
    return text or None


def _positive(raw: str | None, field: str, default: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    if not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise InvalidInput(f"{field} must be a whole number from 1 (got {raw!r})")
    return int(text)


def parse_filter(
    *,
    region: str | None,
    from_date: str | None = None,
    to_date: str | None = None,
    call_id: str | None = None,
    agents: str | None = None,
    departments: tuple[str, ...] = (),
    ivrs: tuple[str, ...] = (),
    call_type: str | None = None,
    callerid: str | None = None,
    destination: str | None = None,
    direction: str | None = None,
    duration: str | None = None,
    operator: str | None = None,
    services: str | None = None,
) -> RecordFilter:
    """The query string's filters, validated; every mistake is an ``InvalidInput``."""
    from_at = to_at = None
    to_exclusive = False
    if from_date:
        from_at, _ = _when(from_date, "from_date", end_of_day=False)
    if to_date:
        to_at, to_exclusive = _when(to_date, "to_date", end_of_day=True)
    if from_at is not None and to_at is not None and from_at > to_at:
        raise InvalidInput("from_date is after to_date")

    agent_ids: list[int] = []
    for item in _items(agents, field="agents"):
        if not item.isdigit() or len(item) > 18:
            raise InvalidInput(f"agents must be agent ids separated by commas (got {item!r})")
        agent_ids.append(int(item))

    answered: bool | None = None
    match (call_type or "").strip().lower():
        case "":
            pass
        case "c":
            answered = True
        case "m":
            answered = False
        case _:
            raise InvalidInput("call_type must be c (answered) or m (missed)")

    normal_direction = (direction or "").strip().lower() or None
    if normal_direction not in (None, "inbound", "outbound"):
        raise InvalidInput("direction must be inbound or outbound")

    duration_s: int | None = None
    duration_operator = DurationOperator.EQ
    if duration is not None and duration.strip():
        text = duration.strip()
        if not text.isdigit() or len(text) > 9:
            raise InvalidInput(f"duration must be whole seconds (got {duration!r})")
        duration_s = int(text)
    if operator is not None and operator.strip():
        chosen = OPERATORS.get(operator.strip())
        if chosen is None:
            allowed = ", ".join(OPERATORS)
            raise InvalidInput(f"operator must be one of {allowed} (got {operator!r})")
        duration_operator = chosen
        if duration_s is None:
            raise InvalidInput("operator needs a duration")

    service_codes: list[str] = []
    for item in _items(services, field="services"):
        code = SERVICE_BY_KEY.get(_service_key(item))
        if code is None:
            known = ", ".join(SERVICE_NAMES.values())
            raise InvalidInput(f"unknown service {item!r} (one of {known})")
        service_codes.append(code)

    return RecordFilter(
        from_at=from_at,
        to_at=to_at,
        to_exclusive=to_exclusive,
        call_id=_call_id(call_id),
        agent_ids=tuple(agent_ids),
        departments=departments,
        ivrs=ivrs,
        answered=answered,
        client_numbers=spellings(callerid.strip(), region) if callerid and callerid.strip() else (),
        destinations=(
            spellings(destination.strip(), region) if destination and destination.strip() else ()
        ),
        direction=normal_direction,
        duration_s=duration_s,
        duration_operator=duration_operator,
        services=tuple(dict.fromkeys(service_codes)),
    )


def record_out(record: CallRecord, agent: TataAgent | None) -> RecordOut:
    answered = record.status == "answered"
    client = record.caller if record.direction == "inbound" else record.callee
    return RecordOut(
        id=record.id,
        call_id=record.call_id,
        uuid=record.id,
        date=(stamp(record.invited_at) or "")[:10],
        time=(stamp(record.invited_at) or "")[11:],
        end_stamp=stamp(record.ended_at) or "",
        direction=record.direction,
        call_duration=record.call_duration_s,
        answered_seconds=record.duration_s,
        minutes_consumed=math.ceil(record.duration_s / 60),
        status="answered" if answered else "missed",
        hangup_cause=record.hangup_cause,
        did_number=shown(record.did),
        missed_agents=(
            [MissedAgentOut(name=agent.name, number=digits(agent.follow_me_number))]
            if agent is not None and not answered
            else []
        ),
        broadcast_id=record.broadcast_id,
        client_number=shown(client),
        destination=shown(record.callee),
        department=[record.department] if record.department else [],
        services=service_name(record.service),
        agent_id=record.agent_id,
        agent_name=None if agent is None else agent.name,
        agent_number=None if agent is None else digits(agent.follow_me_number),
        custom_identifier=record.custom_identifier,
    )


Text = Annotated[str | None, Query(max_length=100)]


@router.get("/call/records")
async def call_records(
    session: SessionDep,
    account: CurrentAccount,
    services: ServicesDep,
    from_date: Text = None,
    to_date: Text = None,
    page: Text = None,
    limit: Text = None,
    call_id: Text = None,
    agents: Annotated[str | None, Query(max_length=1000)] = None,
    department: Annotated[list[str] | None, Query()] = None,
    department_brackets: Annotated[list[str] | None, Query(alias="department[]")] = None,
    ivr: Annotated[list[str] | None, Query()] = None,
    ivr_brackets: Annotated[list[str] | None, Query(alias="ivr[]")] = None,
    call_type: Text = None,
    callerid: Text = None,
    destination: Text = None,
    direction: Text = None,
    duration: Text = None,
    operator: Text = None,
    services_filter: Annotated[str | None, Query(alias="services", max_length=1000)] = None,
) -> RecordsOut:
    where = parse_filter(
        region=services.settings.default_region,
        from_date=from_date,
        to_date=to_date,
        call_id=call_id,
        agents=agents,
        departments=_items(department, department_brackets, field="department"),
        ivrs=_items(ivr, ivr_brackets, field="ivr"),
        call_type=call_type,
        callerid=callerid,
        destination=destination,
        direction=direction,
        duration=duration,
        operator=operator,
        services=services_filter,
    )
    page_number = _positive(page, "page", 1)
    page_size = min(_positive(limit, "limit", DEFAULT_LIMIT), MAX_LIMIT)
    rows, total = await CallRecords(session).page(
        account.id, where, limit=page_size, offset=(page_number - 1) * page_size
    )
    agent_ids = {r.agent_id for r in rows if r.agent_id is not None}
    agents_by_id = await Agents(session).by_ids(account.id, agent_ids)
    results = [
        record_out(r, agents_by_id.get(r.agent_id) if r.agent_id is not None else None)
        for r in rows
    ]
    return RecordsOut(
        count=total, limit=page_size, page=page_number, size=len(results), results=results
    )
