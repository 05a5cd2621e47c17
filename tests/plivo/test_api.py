"""The Plivo masking-session API as a Plivo client meets it, over ASGI with httpx, on
SQLite and PostgreSQL: sessions with Plivo's fields on the same store and allocator as
Twilio's (both parties on one pool number), list filters and paging, Plivo's error body,
bad input and features callmask does not carry out yet that change nothing, another
account's sessions as 404, 401 for wrong credentials."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from typing import Any

import httpx
import pytest

from callmask.store.database import Database
from callmask.store.models import AudioFile, ProxyPoolExhaustion, ProxySession
from tests.conftest import Tenant
from tests.plivo.conftest import (
    META_FIELDS,
    SESSION_FIELDS,
    assert_plivo_error,
    auth_id,
    basic,
    census,
    plivo_auth,
    plivo_pool,
    session_path,
    sessions_path,
    stored,
)
from tests.support.receiver import Receiver, Reply
from tests.twilio.conftest import count

POOL = ("+41793026701", "+41793026702", "+41793026703")
ALICE = "+41793026711"
BOB = "+41793026712"
CAROL = "+41793026713"
DAVE = "+41793026714"
# plivo-python's update_masking_session keywords among the refused features.
UPDATABLE = {
    "recording_callback_method",
    "create_session_with_single_party",
    "first_party_play_url",
    "second_party_play_url",
    "subaccount",
}
PLIVO_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})? \+0000 UTC")


@pytest.fixture
async def http(client: httpx.AsyncClient, tenant: Tenant) -> httpx.AsyncClient:
    """The app over ASGI, authenticated as a Plivo client of ``tenant``."""
    client.auth = plivo_auth(tenant)
    return client


async def create(http: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    reply = await http.post(sessions_path(tenant), json=body)
    assert reply.status_code == 201, reply.text
    created: dict[str, Any] = reply.json()
    return created


def parse_time(value: str) -> dt.datetime:
    """Plivo's (Go's) time: the fraction has no trailing zeros, or is left out."""
    stamp = value.removesuffix(" +0000 UTC")
    whole, _, fraction = stamp.partition(".")
    parsed = dt.datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    return parsed + dt.timedelta(microseconds=int(fraction.ljust(6, "0") or 0))


# -- create, get, update, delete ---------------------------------------------------


async def test_a_session_gives_both_parties_one_virtual_number(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, *POOL)
    body = await create(http, tenant, first_party=ALICE.removeprefix("+"), second_party=BOB)
    assert set(body) == {"api_id", "session_uuid", "virtual_number", "message", "session"}
    uuid.UUID(body["api_id"])
    assert body["message"] == "Session created"
    assert body["virtual_number"] in POOL
    session = body["session"]
    assert set(session) == SESSION_FIELDS
    assert session["session_uuid"] == body["session_uuid"]
    assert (session["first_party"], session["second_party"]) == (ALICE[1:], BOB[1:])
    assert session["virtual_number"] == body["virtual_number"][1:]
    assert session["status"] == "active"
    # Plivo's defaults.
    assert (session["duration"], session["call_time_limit"], session["ring_timeout"]) == (
        3600,
        3600,
        120,
    )
    assert (session["record"], session["record_file_format"]) == (False, "mp3")
    assert (session["callback_method"], session["recording_callback_method"]) == ("POST", "POST")
    assert (session["pin_retry"], session["geomatch"]) == (1, True)
    assert (session["total_call_count"], session["last_interaction_time"]) == (0, "")
    assert session["interaction"] is None
    for name in ("created_time", "modified_time", "expiry_time"):
        assert PLIVO_TIME.fullmatch(session[name]), session
    lasts = parse_time(session["expiry_time"]) - parse_time(session["created_time"])
    assert lasts == dt.timedelta(seconds=3600)

    row, participants = await stored(database, body["session_uuid"])
    assert row.status == "open" and row.ttl == 0, "an absolute end, not a sliding ttl"
    assert row.call_time_limit_s == 3600
    assert json.loads(row.plivo_options or "null") == {}, "defaults are not stored"
    assert {p.identifier for p in participants} == {ALICE, BOB}
    assert {p.proxy_identifier for p in participants} == {body["virtual_number"]}
    assert all(p.active for p in participants)

    got = await http.get(session_path(tenant, body["session_uuid"]))
    assert got.status_code == 200, got.text
    assert set(got.json()) == {"api_id", "response"}
    assert got.json()["response"] == session


async def test_fields_are_stored_updated_and_shown(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, *POOL)
    body = await create(
        http,
        tenant,
        first_party=ALICE,
        second_party=BOB,
        session_expiry=600,
        call_time_limit=120,
        record_file_format="wav",
        callback_url="https://customer.example.com/plivo/events",
        callback_method="get",
        ring_timeout=45,
        first_party_pin="1234",
        second_party_pin="4321",
        pin_retry=3,
        pin_retry_wait=10,
        generate_pin_length=6,
        geomatch=True,
        virtual_number_cooloff_period=30,
    )
    session = body["session"]
    assert session["duration"] == 600
    assert (session["call_time_limit"], session["ring_timeout"]) == (120, 45)
    assert session["record_file_format"] == "wav"
    assert session["callback_method"] == "GET"
    assert (session["first_party_pin"], session["second_party_pin"]) == ("1234", "4321")
    assert (session["pin_retry"], session["pin_retry_wait"]) == (3, 10)
    row, _ = await stored(database, body["session_uuid"])
    assert row.call_time_limit_s == 120
    assert json.loads(row.plivo_options or "{}")["callback_url"].endswith("/plivo/events")

    path = session_path(tenant, body["session_uuid"])
    updated = await http.post(
        path,
        json={
            "session_uuid": body["session_uuid"],  # the SDK sends it in the body too
            "session_expiry": 7200,
            "call_time_limit": 300,
            "record_file_format": "mp3",
            "callback_url": "",
        },
    )
    assert updated.status_code == 200, updated.text
    assert set(updated.json()) == {"api_id", "message", "session"}
    assert updated.json()["message"] == "Session updated"
    after = updated.json()["session"]
    assert after["duration"] == 7200, "session_expiry counts from the session's creation"
    assert after["created_time"] == session["created_time"]
    assert (after["call_time_limit"], after["record_file_format"]) == (300, "mp3")
    assert after["callback_url"] == ""
    assert (after["first_party_pin"], after["ring_timeout"]) == ("1234", 45), "others kept"
    assert (await http.get(path)).json()["response"] == after
    row, _ = await stored(database, body["session_uuid"])
    assert row.call_time_limit_s == 300
    assert row.expires_at is not None


async def test_a_deleted_session_expires_and_frees_its_number(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, POOL[0])
    body = await create(http, tenant, first_party=ALICE, second_party=BOB)
    path = session_path(tenant, body["session_uuid"])
    deleted = await http.delete(path)
    assert deleted.status_code == 200, deleted.text
    assert set(deleted.json()) == {"api_id", "message"}
    assert deleted.json()["message"] == "Session Deleted"
    after = (await http.get(path)).json()["response"]
    assert after["status"] == "expired"
    row, participants = await stored(database, body["session_uuid"])
    assert row.status == "closed"
    assert not any(p.active for p in participants)
    assert_plivo_error(await http.delete(path), 404)
    assert_plivo_error(await http.post(path, json={"call_time_limit": 60}), 400, mentions="ended")
    # The one number is free again: the same pair gets it.
    again = await create(http, tenant, first_party=ALICE, second_party=BOB)
    assert again["virtual_number"] == POOL[0]


async def test_paths_without_the_trailing_slash_work_too(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await plivo_pool(http, tenant, *POOL)
    reply = await http.post(
        sessions_path(tenant).rstrip("/"), json={"first_party": ALICE, "second_party": BOB}
    )
    assert reply.status_code == 201, reply.text
    got = await http.get(session_path(tenant, reply.json()["session_uuid"]).rstrip("/"))
    assert got.status_code == 200, got.text


# -- the pool --------------------------------------------------------------------


async def test_one_number_serves_many_pairs(http: httpx.AsyncClient, tenant: Tenant) -> None:
    await plivo_pool(http, tenant, POOL[0])
    first = await create(http, tenant, first_party=ALICE, second_party=BOB)
    other_pair = await create(http, tenant, first_party=CAROL, second_party=DAVE)
    assert first["virtual_number"] == other_pair["virtual_number"] == POOL[0]


async def test_a_party_never_holds_one_number_in_two_open_sessions(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await plivo_pool(http, tenant, *POOL)
    first = await create(http, tenant, first_party=ALICE, second_party=BOB)
    other_pair = await create(http, tenant, first_party=CAROL, second_party=DAVE)
    # Alice again, with Carol: a number neither of them holds already.
    mixed = await create(http, tenant, first_party=ALICE, second_party=CAROL)
    assert mixed["virtual_number"] not in {first["virtual_number"], other_pair["virtual_number"]}


async def test_an_exhausted_pool_is_plivos_error_and_writes_nothing(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, POOL[0])
    await create(http, tenant, first_party=ALICE, second_party=BOB)
    before = await census(database)
    reply = await http.post(
        sessions_path(tenant), json={"first_party": ALICE, "second_party": CAROL}
    )
    assert_plivo_error(reply, 400, mentions="in use")
    assert await census(database) == before
    # ... except the exhaustion event the console's pool view shows.
    assert await count(database, ProxyPoolExhaustion) == 1


async def test_geomatch_takes_a_number_of_the_first_partys_country(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, "+14155550101")
    before = await census(database)
    reply = await http.post(sessions_path(tenant), json={"first_party": ALICE, "second_party": BOB})
    assert_plivo_error(reply, 400, mentions="country")
    assert await census(database) == before
    body = await create(http, tenant, first_party=ALICE, second_party=BOB, geomatch=False)
    assert body["virtual_number"] == "+14155550101"


async def test_the_cooloff_keeps_a_released_number_from_the_same_parties(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await plivo_pool(http, tenant, POOL[0])
    body = await create(http, tenant, first_party=ALICE, second_party=BOB)
    assert (await http.delete(session_path(tenant, body["session_uuid"]))).status_code == 200
    reply = await http.post(
        sessions_path(tenant),
        json={"first_party": ALICE, "second_party": BOB, "virtual_number_cooloff_period": 600},
    )
    assert_plivo_error(reply, 400)
    assert (await create(http, tenant, first_party=ALICE, second_party=BOB))[
        "virtual_number"
    ] == POOL[0]


async def test_concurrent_creates_share_numbers_without_conflicts(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, *POOL)
    # The same two parties, in both orders, 12 times at once over a 3-number pool.
    bodies = [
        {"first_party": ALICE, "second_party": BOB}
        if i % 2
        else {"first_party": BOB, "second_party": ALICE}
        for i in range(12)
    ]
    replies = await asyncio.gather(*(http.post(sessions_path(tenant), json=b) for b in bodies))
    created = [r.json() for r in replies if r.status_code == 201]
    refused = [r for r in replies if r.status_code != 201]
    assert len(created) == len(POOL), [r.text for r in replies]
    assert sorted(c["virtual_number"] for c in created) == sorted(POOL)
    for reply in refused:
        assert_plivo_error(reply, 400, mentions="in use")
    for body in created:
        _, participants = await stored(database, body["session_uuid"])
        assert {p.proxy_identifier for p in participants} == {body["virtual_number"]}
        assert len(participants) == 2
    counts = await census(database)
    assert counts["proxy_sessions"] == len(POOL), "no session left without its parties"
    assert counts["proxy_participants"] == 2 * len(POOL)


# -- list ------------------------------------------------------------------------


async def test_list_filters_and_pages_as_plivo_does(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, *POOL)
    a_b = await create(http, tenant, first_party=ALICE, second_party=BOB, session_expiry=600)
    c_d = await create(http, tenant, first_party=CAROL, second_party=DAVE, session_expiry=1200)
    a_c = await create(http, tenant, first_party=ALICE, second_party=CAROL, session_expiry=1800)
    ended = await create(http, tenant, first_party=BOB, second_party=DAVE)
    assert (await http.delete(session_path(tenant, ended["session_uuid"]))).status_code == 200
    path = sessions_path(tenant)

    async def uuids(**query: Any) -> list[str]:
        reply = await http.get(path, params=query)
        assert reply.status_code == 200, reply.text
        assert set(reply.json()) == {"api_id", "response"}
        return [o["session_uuid"] for o in reply.json()["response"]["objects"]]

    newest_first = [ended, a_c, c_d, a_b]
    assert await uuids() == [s["session_uuid"] for s in newest_first]
    assert await uuids(first_party=ALICE[1:]) == [a_c["session_uuid"], a_b["session_uuid"]]
    assert await uuids(second_party=CAROL) == [a_c["session_uuid"]]
    assert await uuids(virtual_number=a_b["virtual_number"]) == [
        s["session_uuid"] for s in newest_first if s["virtual_number"] == a_b["virtual_number"]
    ]
    assert await uuids(status="expired") == [ended["session_uuid"]]
    assert await uuids(status="active") == [
        a_c["session_uuid"],
        c_d["session_uuid"],
        a_b["session_uuid"],
    ]
    assert await uuids(status="all") == await uuids()
    assert await uuids(duration=1200) == [c_d["session_uuid"]]
    assert await uuids(duration__gte=1200, status="active") == [
        a_c["session_uuid"],
        c_d["session_uuid"],
    ]
    assert await uuids(duration__lt=1200, duration__gt=0, status="active") == [a_b["session_uuid"]]
    assert await uuids(duration__lte=600, status="active") == [a_b["session_uuid"]]

    row, _ = await stored(database, c_d["session_uuid"])
    created = row.created_at.replace(tzinfo=None)
    stamp = created.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert c_d["session_uuid"] in await uuids(created_time=stamp)
    assert await uuids(created_time__gte=stamp, created_time__lte=stamp) == [c_d["session_uuid"]]
    assert c_d["session_uuid"] not in await uuids(created_time__gt=stamp)
    assert c_d["session_uuid"] not in await uuids(created_time__lt=stamp)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=900)).strftime("%Y-%m-%d %H:%M")
    assert await uuids(expiry_time__lt=soon, status="active") == [a_b["session_uuid"]]
    assert await uuids(expiry_time__gte=soon, status="active") == [
        a_c["session_uuid"],
        c_d["session_uuid"],
    ]

    page = (await http.get(path, params={"limit": 2})).json()["response"]
    assert set(page["meta"]) == META_FIELDS
    assert page["meta"]["limit"] == 2 and page["meta"]["offset"] == 0
    assert page["meta"]["total_count"] == 4 and page["meta"]["previous"] is None
    assert (
        page["meta"]["next"]
        == f"/plivo/v1/Account/{auth_id(tenant)}/Masking/Session/?limit=2&offset=2"
    )
    for obj in page["objects"]:
        assert set(obj) == SESSION_FIELDS | {"resource_uri"}
        assert obj["resource_uri"] == session_path(tenant, obj["session_uuid"])
    second = (await http.get(path, params={"limit": 2, "offset": 2, "status": "all"})).json()[
        "response"
    ]
    assert [o["session_uuid"] for o in second["objects"]] == [
        c_d["session_uuid"],
        a_b["session_uuid"],
    ]
    assert second["meta"]["next"] is None
    assert second["meta"]["previous"] == (
        f"/plivo/v1/Account/{auth_id(tenant)}/Masking/Session/?status=all&limit=2&offset=0"
    )
    full = (await http.get(path)).json()["response"]["meta"]
    assert (full["limit"], full["next"]) == (20, None)


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "21"},
        {"limit": "0"},
        {"offset": "-1"},
        {"status": "closed"},
        {"status": "in-progress"},
        {"duration__gte": "long"},
        {"created_time__gt": "yesterday"},
        {"first_party": "not-a-number"},
        {"subaccount": "SAOWRKMGU3YZCTZJXXXX"},
        {"colour": "blue"},
    ],
)
async def test_a_bad_list_filter_is_plivos_400(
    http: httpx.AsyncClient, tenant: Tenant, query: dict[str, str]
) -> None:
    await plivo_pool(http, tenant, POOL[0])
    assert_plivo_error(await http.get(sessions_path(tenant), params=query), 400)


# -- bad input and what callmask does not do yet ------------------------------------


@pytest.mark.parametrize(
    ("extra", "mentions"),
    [
        ({"first_party_pin": "123"}, "first_party_pin"),
        ({"second_party_pin": "1234567890123456"}, "second_party_pin"),
        ({"first_party_pin": "12a4"}, "first_party_pin"),
        ({"first_party_pin": "1234", "second_party_pin": "1234"}, "different"),
        ({"generate_pin_length": 3}, "generate_pin_length"),
        ({"generate_pin_length": 16}, "generate_pin_length"),
        ({"record_file_format": "ogg"}, "record_file_format"),
        ({"pin_retry": 6}, "pin_retry"),
        ({"pin_retry": -1}, "pin_retry"),
        ({"pin_retry_wait": 0}, "pin_retry_wait"),
        ({"virtual_number_cooloff_period": 3601}, "virtual_number_cooloff_period"),
        ({"session_expiry": 0}, "session_expiry"),
        ({"call_time_limit": "ten"}, "call_time_limit"),
        ({"ring_timeout": True}, "ring_timeout"),
        ({"callback_method": "PUT"}, "callback_method"),
        ({"recording_callback_method": "DELETE"}, "recording_callback_method"),
        ({"callback_url": "ftp://customer.example.com/x"}, "callback_url"),
        ({"geomatch": "maybe"}, "geomatch"),
        ({"first_party": "not-a-number"}, "first_party"),
        ({"second_party": "+1"}, "second_party"),
        ({"second_party": ALICE}, "different"),
        ({"second_party": None}, "second_party is required"),
        ({"recording_callback_metod": "GET"}, "unknown parameter"),
    ],
)
async def test_bad_input_is_plivos_400_and_writes_nothing(
    http: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    extra: dict[str, Any],
    mentions: str,
) -> None:
    await plivo_pool(http, tenant, *POOL)
    before = await census(database)
    body = {"first_party": ALICE, "second_party": BOB, **extra}
    body = {k: v for k, v in body.items() if v is not None}
    reply = await http.post(sessions_path(tenant), json=body)
    assert_plivo_error(reply, 400, mentions=mentions)
    assert await census(database) == before


@pytest.mark.parametrize(
    "extra",
    [
        {"record": True, "recording_callback_method": "GET"},
        {"unknown_caller_play": "https://customer.example.com/who.mp3"},
        {"force_pin_authentication": True},
        {"initiate_call_to_first_party": True},
        {"create_session_with_single_party": True},
        {"first_party_play_url": "https://customer.example.com/agent.mp3"},
        {"second_party_play_url": "https://customer.example.com/customer.wav"},
        {"subaccount": "SAOWRKMGU3YZCTZJXXXX"},
    ],
)
async def test_what_callmask_does_not_do_yet_is_refused_not_stored(
    http: httpx.AsyncClient, tenant: Tenant, database: Database, extra: dict[str, Any]
) -> None:
    await plivo_pool(http, tenant, *POOL)
    before = await census(database)
    reply = await http.post(
        sessions_path(tenant), json={"first_party": ALICE, "second_party": BOB, **extra}
    )
    assert_plivo_error(reply, 400, mentions="not supported by callmask yet")
    assert await census(database) == before
    # The same on an update, which changes nothing either.
    body = await create(http, tenant, first_party=ALICE, second_party=BOB)
    path = session_path(tenant, body["session_uuid"])
    updatable = {k: v for k, v in extra.items() if k in UPDATABLE}
    if updatable:
        assert_plivo_error(await http.post(path, json=updatable), 400, mentions="not supported")
        assert (await http.get(path)).json()["response"] == body["session"]


async def test_an_update_refuses_what_plivo_does_not_update(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, *POOL)
    body = await create(http, tenant, first_party=ALICE, second_party=BOB)
    path = session_path(tenant, body["session_uuid"])
    for change in (
        {"first_party": CAROL},
        {"first_party_pin": "1234"},
        {"initiate_call_to_first_party": False},
        {"pin_retry": 6},
        {"session_expiry": -5},
        {"record_file_format": "flac"},
        {"session_uuid": str(uuid.uuid4())},
        {"callback_url": "javascript:alert(1)"},
    ):
        assert_plivo_error(await http.post(path, json=change), 400)
    # Giving the parties it already has is no change.
    same = await http.post(path, json={"first_party": ALICE[1:], "second_party": BOB})
    assert same.status_code == 200, same.text
    assert (await http.get(path)).json()["response"]["call_time_limit"] == 3600


async def test_a_body_that_is_not_a_json_object_is_plivos_400(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await plivo_pool(http, tenant, *POOL)
    path = sessions_path(tenant)
    assert_plivo_error(
        await http.post(path, content=b"{", headers={"Content-Type": "application/json"}), 400
    )
    assert_plivo_error(await http.post(path, json=[ALICE, BOB]), 400)
    assert_plivo_error(
        await http.post(path, data={"first_party": ALICE, "second_party": BOB}),
        400,
        mentions="JSON",
    )


async def test_without_a_plivo_service_create_says_what_to_do(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    before = await census(database)
    reply = await http.post(sessions_path(tenant), json={"first_party": ALICE, "second_party": BOB})
    assert_plivo_error(reply, 400, mentions="'plivo'")
    assert await census(database) == before
    listed = await http.get(sessions_path(tenant))
    assert listed.status_code == 200, listed.text
    assert listed.json()["response"]["objects"] == []
    assert listed.json()["response"]["meta"]["total_count"] == 0
    assert_plivo_error(await http.get(session_path(tenant, str(uuid.uuid4()))), 404)


# -- who may see what --------------------------------------------------------------


async def test_another_accounts_session_is_not_found(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, *POOL)
    body = await create(http, tenant, first_party=ALICE, second_party=BOB)
    other = plivo_auth(other_tenant)
    theirs = session_path(other_tenant, body["session_uuid"])
    assert_plivo_error(await http.get(theirs, auth=other), 404)
    assert_plivo_error(await http.post(theirs, json={"call_time_limit": 60}, auth=other), 404)
    assert_plivo_error(await http.delete(theirs, auth=other), 404)
    listed = await http.get(sessions_path(other_tenant), auth=other)
    assert listed.json()["response"]["objects"] == []
    # The owner's path with the other account's credentials: not theirs either.
    mine = session_path(tenant, body["session_uuid"])
    assert_plivo_error(await http.get(mine, auth=other), 404)
    assert_plivo_error(await http.delete(mine, auth=other), 404)
    row, _ = await stored(database, body["session_uuid"])
    assert row.status == "open" and row.call_time_limit_s == 3600
    assert_plivo_error(await http.get(session_path(tenant, "not-a-uuid")), 404)


async def test_wrong_credentials_are_plivos_401(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await plivo_pool(http, tenant, *POOL)
    path = sessions_path(tenant)
    for headers in (
        basic(auth_id(tenant), "wrong-token"),
        basic(auth_id(tenant), other_tenant.api_key),
        basic(tenant.account_id.upper(), tenant.api_key),  # neither form of the id
        basic("MA" + tenant.account_id.upper() + "XX", tenant.api_key),
        basic("SA" + tenant.account_id.upper() + "XX", tenant.api_key),
        {"Authorization": f"Bearer {tenant.api_key}"},
        {},
    ):
        reply = await http.get(path, headers=headers, auth=None)
        assert_plivo_error(reply, 401)
        reply = await http.post(
            path, json={"first_party": ALICE, "second_party": BOB}, headers=headers, auth=None
        )
        assert_plivo_error(reply, 401)


async def test_other_paths_and_methods_answer_in_plivos_shape(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert_plivo_error(await http.get(f"/plivo/v1/Account/{auth_id(tenant)}/Call/"), 404)
    reply = await http.put(sessions_path(tenant), json={})
    assert_plivo_error(reply, 405)
    assert "POST" in reply.headers["allow"]


async def test_a_twilio_session_in_the_plivo_service_is_not_a_plivo_session(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    service_sid = await plivo_pool(http, tenant, *POOL)
    from tests.twilio.conftest import twilio_auth

    reply = await http.post(
        f"/twilio/v1/Services/{service_sid}/Sessions",
        data={"Participants": json.dumps({"Identifier": ALICE})},
        auth=twilio_auth(tenant),
    )
    assert reply.status_code == 201, reply.text
    listed = await http.get(sessions_path(tenant))
    assert listed.json()["response"]["objects"] == []
    async with database.session() as session:
        row = await session.get(ProxySession, reply.json()["sid"])
        assert row is not None
        uuid_text = str(uuid.UUID(hex=row.sid[2:]))
    assert_plivo_error(await http.get(session_path(tenant, uuid_text)), 404)


async def test_a_client_other_than_the_sdk_may_use_the_bare_account_id(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await plivo_pool(http, tenant, *POOL)
    bare = httpx.BasicAuth(tenant.account_id, tenant.api_key)
    path = f"/plivo/v1/Account/{tenant.account_id}/Masking/Session/"
    reply = await http.post(path, json={"first_party": ALICE, "second_party": BOB}, auth=bare)
    assert reply.status_code == 201, reply.text
    got = await http.get(session_path(tenant, reply.json()["session_uuid"]), auth=bare)
    assert got.status_code == 200, got.text
    elsewhere = f"/plivo/v1/Account/{other_tenant.account_id}/Masking/Session/"
    assert_plivo_error(await http.get(elsewhere, auth=bare), 404)


async def test_generated_pins_have_the_length_asked_differ_and_are_not_reused_on_the_number(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await plivo_pool(http, tenant, POOL[0])  # one virtual number: every session shares it
    pins: list[str] = []
    for first, second in (
        (ALICE, BOB),
        ("+41793026721", "+41793026722"),
        ("+41793026723", "+41793026724"),
    ):
        body = await create(
            http,
            tenant,
            first_party=first,
            second_party=second,
            is_pin_authentication_required=True,
            generate_pin=True,
            generate_pin_length=6,
        )
        session = body["session"]
        assert len(session["first_party_pin"]) == 6 and session["first_party_pin"].isdigit()
        assert session["first_party_pin"] != session["second_party_pin"]
        pins += [session["first_party_pin"], session["second_party_pin"]]
    assert len(set(pins)) == len(pins), pins


async def test_pin_sessions_share_a_number_a_party_holds_only_under_different_pins(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    # A clinic: one number, one doctor (BOB), patients calling in with their own PIN.
    await plivo_pool(http, tenant, POOL[0])
    shared: list[dict[str, Any]] = []
    for patient, pin in ((ALICE, "1111"), (CAROL, "2222"), (DAVE, "3333")):
        shared.append(
            await create(
                http,
                tenant,
                first_party=patient,
                second_party=BOB,
                is_pin_authentication_required=True,
                first_party_pin=pin,
                second_party_pin=f"9{pin}",
            )
        )
    assert {body["virtual_number"] for body in shared} == {POOL[0]}
    # The doctor's PIN must tell the doctor's sessions on the number apart.
    same_pin = await http.post(
        sessions_path(tenant),
        json={
            "first_party": "+41793026731",
            "second_party": BOB,
            "is_pin_authentication_required": True,
            "first_party_pin": "4444",
            "second_party_pin": "91111",
        },
    )
    assert_plivo_error(same_pin, 400)
    # A session without a PIN cannot share: a call could not say which session it is.
    no_pin = await http.post(
        sessions_path(tenant), json={"first_party": "+41793026732", "second_party": BOB}
    )
    assert_plivo_error(no_pin, 400, mentions="already in use")
    # Generated PINs on a shared number are new to the number.
    generated = await create(
        http,
        tenant,
        first_party="+41793026733",
        second_party=BOB,
        is_pin_authentication_required=True,
        generate_pin=True,
        generate_pin_length=4,
    )
    session = generated["session"]
    assert generated["virtual_number"] == POOL[0]
    used = {"1111", "2222", "3333", "91111", "92222", "93333"}
    assert not {session["first_party_pin"], session["second_party_pin"]} & used


@pytest.mark.parametrize(
    ("reply", "mentions"),
    [
        (Reply(body=b"<html>not audio</html>"), "not a valid MP3"),
        (Reply(status=404), "HTTP 404"),
    ],
)
async def test_prompt_audio_that_is_not_an_mp3_is_refused_and_nothing_is_kept(
    http: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    receiver: Receiver,
    reply: Reply,
    mentions: str,
) -> None:
    await plivo_pool(http, tenant, *POOL)
    receiver.always("/pin.mp3", reply)
    before = await census(database)
    refused = await http.post(
        sessions_path(tenant),
        json={
            "first_party": ALICE,
            "second_party": BOB,
            "is_pin_authentication_required": True,
            "first_party_pin": "1234",
            "second_party_pin": "5678",
            "pin_prompt_play": receiver.url("/pin.mp3"),
        },
    )
    assert_plivo_error(refused, 400, mentions=mentions)
    assert await census(database) == before
    assert await count(database, AudioFile) == 0


async def test_a_recorded_session_shows_its_recording_settings(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await plivo_pool(http, tenant, *POOL)
    body = await create(
        http,
        tenant,
        first_party=ALICE,
        second_party=BOB,
        record=True,
        record_file_format="wav",
        recording_callback_url="https://customer.example.com/recordings",
    )
    session = body["session"]
    assert (session["record"], session["record_file_format"]) == (True, "wav")
    assert session["recording_callback_url"] == "https://customer.example.com/recordings"


async def test_a_pin_session_without_pins_or_generate_pin_is_refused(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await plivo_pool(http, tenant, *POOL)
    before = await census(database)
    reply = await http.post(
        sessions_path(tenant),
        json={"first_party": ALICE, "second_party": BOB, "is_pin_authentication_required": True},
    )
    assert_plivo_error(reply, 400, mentions="first_party_pin and second_party_pin")
    assert await census(database) == before
