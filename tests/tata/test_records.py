"""Call records (``GET /v1/call/records``): every filter of the reference, paging, the
record fields mapped from the CDR, tenant isolation, and bad filters answered 400 (never
500). The CDRs are written straight into the store, as the call engine writes them."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update

from callmask.api.tata.records import parse_filter
from callmask.store.database import Database
from callmask.store.models import CallRecord
from callmask.store.tata_repositories import CallRecords, RecordFilter
from tests.conftest import Tenant
from tests.tata.conftest import AGENT_E164, DID, assert_failure, cdr, tata

AGENT_ID = 123456789012


@pytest.fixture
async def records(database: Database, tenant: Tenant, other_tenant: Tenant) -> None:
    """Six calls of the tenant on 1-6 November 2026, one of another account."""
    me = tenant.account_id
    async with database.session() as session:
        session.add_all(
            [
                cdr(me, "r1", "2026-11-01 09:00:00", 100, department="sales", ivr="main"),
                cdr(
                    me,
                    "r2",
                    "2026-11-02 10:00:00",
                    20,
                    status="busy",
                    caller="09876501234",  # as the carrier sent it: national form
                    callee="+919876543211",
                    hangup_cause="busy here",
                    sip_code=486,
                ),
                cdr(
                    me,
                    "r3",
                    "2026-11-03 11:00:00",
                    60,
                    direction="outbound",
                    service="click_to_call",
                    caller=AGENT_E164,
                    callee="+919876501234",
                    agent_id=AGENT_ID,
                    custom_identifier="order-1",
                ),
                cdr(
                    me,
                    "r4",
                    "2026-11-04 12:00:00",
                    30,
                    direction="outbound",
                    service="click_to_call",
                    status="no answer",
                    caller=AGENT_E164,
                    callee="+919876509999",
                    agent_id=AGENT_ID,
                ),
                cdr(
                    me,
                    "r5",
                    "2026-11-05 13:00:00",
                    15,
                    direction="outbound",
                    service="broadcast",
                    caller=DID,
                    callee="+919876501234",
                    broadcast_id="k1",
                ),
                cdr(
                    me,
                    "r6",
                    "2026-11-06 14:00:00",
                    200,
                    service="number_masking",
                    caller="+41793026727",
                    callee="+41793026785",
                    department="support",
                    ivr="night",
                ),
                cdr(other_tenant.account_id, "r7", "2026-11-03 11:00:00", 60),
            ]
        )


async def fetch(client: httpx.AsyncClient, tenant: Tenant, params: Any = None) -> dict[str, Any]:
    reply = await client.get("/v1/call/records", params=params, headers=tata(tenant))
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "r6 r5 r4 r3 r2 r1"),
        ({"from_date": "2026-11-03 00:00:00"}, "r6 r5 r4 r3"),
        ({"to_date": "2026-11-02"}, "r2 r1"),
        ({"from_date": "2026-11-02 10:00:00", "to_date": "2026-11-04 12:00:00"}, "r4 r3 r2"),
        ({"from_date": "2026-11-03 16:30:00+05:30"}, "r6 r5 r4 r3"),
        ({"call_id": "r3"}, "r3"),
        ({"call_id": "r7"}, ""),
        ({"agents": str(AGENT_ID)}, "r4 r3"),
        ({"agents": f"{AGENT_ID},42"}, "r4 r3"),
        ({"department": "sales"}, "r1"),
        ({"department": "sales,support"}, "r6 r1"),
        ([("department[]", "sales"), ("department[]", "support")], "r6 r1"),
        ([("department", "sales"), ("department", "support")], "r6 r1"),
        ({"ivr": "night"}, "r6"),
        ({"call_type": "c"}, "r6 r5 r3 r1"),
        ({"call_type": "m"}, "r4 r2"),
        ({"callerid": "9876501234"}, "r5 r3 r2 r1"),
        ({"callerid": "+919876501234"}, "r5 r3 r2 r1"),
        ({"callerid": "41793026727"}, "r6"),
        ({"destination": "9876543210"}, "r1"),
        ({"direction": "outbound"}, "r5 r4 r3"),
        ({"direction": "Inbound"}, "r6 r2 r1"),
        ({"duration": "100"}, "r1"),
        ({"duration": "60", "operator": ">"}, "r6 r1"),
        ({"duration": "60", "operator": ">="}, "r6 r3 r1"),
        ({"duration": "30", "operator": "<"}, "r5 r2"),
        ({"duration": "30", "operator": "<="}, "r5 r4 r2"),
        ({"duration": "100", "operator": "!="}, "r6 r5 r4 r3 r2"),
        ({"services": "Click to Call"}, "r4 r3"),
        ({"services": "click_to_call,Broadcast"}, "r5 r4 r3"),
        ({"services": "anonymize"}, "r2 r1"),
        ({"services": "NumberMasking"}, "r6"),
        ({"direction": "outbound", "call_type": "c", "services": "Click to Call"}, "r3"),
    ],
)
async def test_each_filter_of_the_reference_selects_the_matching_records(
    client: httpx.AsyncClient,
    tenant: Tenant,
    records: None,
    params: Any,
    expected: str,
) -> None:
    body = await fetch(client, tenant, params)
    call_ids = [r["call_id"] for r in body["results"]]
    assert " ".join(call_ids) == expected
    assert body["count"] == body["size"] == len(call_ids)


async def test_the_operator_arrives_url_encoded_as_the_reference_asks(
    client: httpx.AsyncClient, tenant: Tenant, records: None
) -> None:
    reply = await client.get(
        "/v1/call/records?duration=60&operator=%3E%3D&from_date=2026-11-01%2000%3A00%3A00",
        headers=tata(tenant),
    )
    assert [r["call_id"] for r in reply.json()["results"]] == ["r6", "r3", "r1"]


async def test_a_record_carries_the_reference_fields_mapped_from_the_cdr(
    client: httpx.AsyncClient, tenant: Tenant, records: None, database: Database
) -> None:
    body = await fetch(client, tenant, {"call_id": "r1"})
    [record] = body["results"]
    assert record == {
        "id": record["id"],
        "call_id": "r1",
        "uuid": record["id"],
        "date": "2026-11-01",
        "time": "09:00:00",
        "end_stamp": "2026-11-01 09:01:40",
        "direction": "inbound",
        "call_duration": 100,
        "answered_seconds": 90,
        "minutes_consumed": 2,
        "status": "answered",
        "hangup_cause": "normal clearing",
        "did_number": "918069000001",
        "missed_agents": [],
        "recording_url": None,
        "broadcast_id": None,
        "dtmf_input": None,
        "client_number": "919876501234",
        "destination": "919876543210",
        "department": ["sales"],
        "services": "Anonymize",
        "notes": None,
        "contact_details": None,
        "agent_id": None,
        "agent_name": None,
        "agent_number": None,
        "custom_identifier": None,
    }
    assert len(record["id"]) == 32


async def test_a_missed_click_to_call_names_the_agent_who_missed_it(
    client: httpx.AsyncClient, tenant: Tenant, records: None, database: Database
) -> None:
    body = await fetch(client, tenant, {"agents": str(AGENT_ID)})
    assert all(r["agent_name"] is None for r in body["results"])  # no such agent (any more)
    reply = await client.post(
        "/v1/agent",
        json={"name": "Asha", "follow_me_number": AGENT_E164},
        headers=tata(tenant),
    )
    agent_id = int(reply.json()["agent_id"])
    # The CDRs name AGENT_ID; let them name the agent just added instead.
    async with database.session() as session:
        await session.execute(
            update(CallRecord).where(CallRecord.agent_id == AGENT_ID).values(agent_id=agent_id)
        )
    missed, answered = (await fetch(client, tenant, {"agents": str(agent_id)}))["results"]
    assert missed["status"] == "missed"
    assert missed["missed_agents"] == [{"name": "Asha", "number": "919876543210"}]
    assert missed["client_number"] == "919876509999"
    assert answered["missed_agents"] == []
    assert answered["custom_identifier"] == "order-1"
    assert (answered["agent_name"], answered["agent_number"]) == ("Asha", "919876543210")


async def test_pages_run_newest_first_and_the_limit_is_capped(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    async with database.session() as session:
        session.add_all(
            cdr(
                tenant.account_id,
                f"p{i:03d}",
                (start + dt.timedelta(minutes=i)).isoformat()[:19],
                5,
            )
            for i in range(105)
        )
    body = await fetch(client, tenant, {"limit": "10", "page": "3"})
    assert (body["count"], body["limit"], body["page"], body["size"]) == (105, 10, 3, 10)
    assert [r["call_id"] for r in body["results"]] == [f"p{i:03d}" for i in range(84, 74, -1)]
    body = await fetch(client, tenant, {"limit": "1000"})
    assert (body["limit"], body["size"]) == (100, 100)
    body = await fetch(client, tenant, {"limit": "50", "page": "3"})
    assert [r["call_id"] for r in body["results"]] == ["p004", "p003", "p002", "p001", "p000"]
    body = await fetch(client, tenant, {"page": "99"})
    assert (body["count"], body["size"], body["results"]) == (105, 0, [])


@pytest.mark.usefixtures("records")
@pytest.mark.parametrize(
    ("limit", "pages"),
    [("1", ["r5", "r3", "r2", "r1", ""]), ("3", ["r5 r3 r2", "r1", ""])],
)
async def test_a_customers_calls_page_through_both_directions_newest_first(
    client: httpx.AsyncClient, tenant: Tenant, limit: str, pages: list[str]
) -> None:
    """The customer 9876501234 called in (r1, r2) and was called (r3, r5): a page of its
    calls is cut from the newest of each direction, so every page, offsets included,
    interleaves the two in time order."""
    for number, expected in enumerate(pages, start=1):
        params = {"callerid": "9876501234", "limit": limit, "page": str(number)}
        body = await fetch(client, tenant, params)
        assert body["count"] == 4
        assert " ".join(r["call_id"] for r in body["results"]) == expected, number


async def test_another_accounts_records_are_never_listed(
    client: httpx.AsyncClient, other_tenant: Tenant, tenant: Tenant, records: None
) -> None:
    body = await fetch(client, other_tenant)
    assert [r["call_id"] for r in body["results"]] == ["r7"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"duration": "30", "operator": "=>"}, ["operator must be one of"]),
        ({"duration": "30", "operator": "=="}, ["operator"]),
        ({"duration": "30", "operator": "<>"}, ["operator"]),
        ({"duration": "30", "operator": "LIKE"}, ["operator"]),
        ({"operator": ">"}, ["operator needs a duration"]),
        ({"duration": "abc"}, ["duration must be whole seconds"]),
        ({"duration": "-5"}, ["duration"]),
        ({"from_date": "2021/03/10 17:16:18"}, ["from_date", "YYYY-MM-DD hh:mm:ss"]),
        ({"from_date": "10-03-2021 17:16:18"}, ["from_date"]),
        ({"from_date": "2021-13-01 00:00:00"}, ["from_date"]),
        ({"to_date": "2021-02-30"}, ["to_date"]),
        ({"to_date": "yesterday"}, ["to_date"]),
        ({"from_date": "2021-04-10 17:16:18", "to_date": "2021-03-10 17:16:18"}, ["after"]),
        ({"page": "0"}, ["page"]),
        ({"page": "-1"}, ["page"]),
        ({"page": "two"}, ["page"]),
        ({"limit": "0"}, ["limit"]),
        ({"limit": "9999999999"}, ["limit"]),
        ({"call_type": "x"}, ["call_type must be c"]),
        ({"direction": "sideways"}, ["direction must be inbound or outbound"]),
        ({"services": "Fax"}, ["unknown service 'Fax'"]),
        ({"agents": "a,b"}, ["agents must be agent ids"]),
        ({"agents": ",".join(str(i) for i in range(60))}, ["at most 50"]),
        ({"from_date": "2" * 101}, ["from_date"]),
        ({"call_id": "r1" + "0" * 39}, ["call_id is longer than 40"]),
    ],
)
async def test_a_bad_filter_gets_a_400_never_a_500(
    client: httpx.AsyncClient,
    tenant: Tenant,
    records: None,
    params: dict[str, str],
    words: list[str],
) -> None:
    reply = await client.get("/v1/call/records", params=params, headers=tata(tenant))
    assert_failure(reply, 400, *words)


async def test_records_need_the_account_key(client: httpx.AsyncClient) -> None:
    assert_failure(await client.get("/v1/call/records"), 401)


async def test_the_cdr_gets_its_total_duration_from_its_own_times(
    database: Database, tenant: Tenant
) -> None:
    record = cdr(tenant.account_id, "d1", "2026-11-01 09:00:00", 0)
    record.ended_at = record.invited_at + dt.timedelta(seconds=65, milliseconds=600)
    async with database.session() as session:
        session.add(record)
    async with database.session() as session:
        stored = await session.get(CallRecord, record.id)
        assert stored is not None
        assert stored.call_duration_s == 66


DAY_EDGE_TIMES = ["00:00:00", "00:00:01", "09:30:00", "23:59:59"]


def _matches(record: CallRecord, where: RecordFilter) -> bool:
    """The filter, in Python, for the fields the daily counts know."""
    invited = record.invited_at
    if where.from_at is not None and invited < where.from_at:
        return False
    if where.to_at is not None and (
        invited >= where.to_at if where.to_exclusive else invited > where.to_at
    ):
        return False
    if where.direction is not None and record.direction != where.direction:
        return False
    if where.services and record.service not in where.services:
        return False
    return where.answered is None or (record.status == "answered") == where.answered


async def test_counts_from_whole_days_and_edge_rows_equal_counting_every_row(
    database: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    """Counts that add up the trigger-kept daily counts and count rows only at partial
    days agree with the filter applied to every row, for ranges that start and end on
    and off midnight, after CDRs are changed and deleted too."""
    rng = random.Random(7)
    written: list[CallRecord] = []
    for n in range(240):
        day = dt.date(2026, 11, 1) + dt.timedelta(days=rng.randrange(6))
        at = (
            f"{day} {rng.choice(DAY_EDGE_TIMES)}"
            if n % 3
            else f"{day} {rng.randrange(24):02d}:17:00"
        )
        written.append(
            cdr(
                tenant.account_id if n % 10 else other_tenant.account_id,
                f"c{n}",
                at,
                rng.randrange(1, 90),
                direction=rng.choice(("inbound", "outbound")),
                service=rng.choice(("anonymize", "click_to_call", "broadcast")),
                status=rng.choice(("answered", "answered", "busy", "no answer")),
            )
        )
    async with database.session() as session:
        session.add_all(written)

    bounds = [None, *(f"2026-11-0{d} {t}" for d in (1, 2, 4, 7) for t in DAY_EDGE_TIMES)]

    async def check(records: list[CallRecord], cases: int) -> None:
        mine = [r for r in records if r.account_id == tenant.account_id]
        async with database.session() as session:
            repository = CallRecords(session)
            for _ in range(cases):
                from_date, to_date = rng.choice(bounds), rng.choice(bounds)
                if from_date and to_date and from_date > to_date:
                    from_date, to_date = to_date, from_date
                where = parse_filter(
                    region="IN",
                    from_date=from_date if rng.random() < 0.8 else (from_date or "")[:10] or None,
                    to_date=to_date if rng.random() < 0.8 else (to_date or "")[:10] or None,
                    direction=rng.choice((None, "inbound", "outbound")),
                    services=rng.choice((None, "Click to Call", "anonymize,Broadcast")),
                    call_type=rng.choice((None, "c", "m")),
                )
                expected = sum(_matches(r, where) for r in mine)
                assert await repository.count(tenant.account_id, where) == expected, where

    # Stored values come back naive on SQLite; compare in UTC throughout.
    for record in written:
        record.invited_at = record.invited_at.replace(tzinfo=dt.UTC)
    await check(written, 150)

    changed = written[1:40]
    async with database.session() as session:
        for record in changed:
            await session.execute(
                update(CallRecord)
                .where(CallRecord.id == record.id)
                .values(status="busy", invited_at=record.invited_at + dt.timedelta(days=1))
            )
        await session.execute(
            delete(CallRecord).where(CallRecord.id.in_([r.id for r in written[40:80]]))
        )
    for record in changed:
        record.status = "busy"
        record.invited_at += dt.timedelta(days=1)
    await check(written[:40] + written[80:], 100)
