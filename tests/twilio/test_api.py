"""The Twilio Proxy v1 API as a Twilio Proxy client meets it, over ASGI with httpx, on
SQLite and PostgreSQL: resources with Twilio's fields, Twilio's paging, Twilio's error
body and codes, bad input that changes nothing, another account's objects as 404, 401
for wrong credentials, and a clear 501 for messaging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from callmask.node import node_app
from callmask.store.database import Database
from tests.conftest import ADMIN_KEY, Tenant, make_settings
from tests.twilio.conftest import (
    FORM,
    META_FIELDS,
    PARTICIPANT_FIELDS,
    PHONE_NUMBER_FIELDS,
    SERVICE_FIELDS,
    SERVICES,
    SESSION_FIELDS,
    SID,
    TIME,
    assert_twilio_error,
    basic,
    buy,
    census,
    twilio_auth,
)

BASE = "http://callmask.test"
POOL = ("+14155550101", "+14155550102", "+14155550103")
ALICE = "+41793026731"
BOB = "+41793026732"
CAROL = "+41793026733"
HOOK = "https://customer.example.com/proxy/callback"


@pytest.fixture
async def http(client: httpx.AsyncClient, tenant: Tenant) -> httpx.AsyncClient:
    """The app over ASGI, authenticated as a Twilio client of ``tenant``."""
    client.auth = twilio_auth(tenant)
    return client


async def create_service(http: httpx.AsyncClient, name: str = "rides", **extra: Any) -> Any:
    reply = await http.post(SERVICES, data={"UniqueName": name, **extra})
    assert reply.status_code == 201, reply.text
    return reply.json()


async def pooled_service(
    http: httpx.AsyncClient, tenant: Tenant, numbers: tuple[str, ...] = POOL
) -> Any:
    """A service whose pool holds ``numbers`` (bought by ``tenant`` first)."""
    await buy(http, tenant, *numbers)
    service = await create_service(http)
    for number in numbers:
        reply = await http.post(service["links"]["phone_numbers"], data={"PhoneNumber": number})
        assert reply.status_code == 201, reply.text
    return service


def participants(*identifiers: str) -> list[tuple[str, str]]:
    return [("Participants", json.dumps({"Identifier": i})) for i in identifiers]


def form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """A form body with repeated fields, as twilio-python sends ``Participants``."""
    return {"content": urlencode(pairs), "headers": FORM}


# -- resources -----------------------------------------------------------------------


async def test_a_service_is_created_fetched_listed_updated_and_deleted(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    service = await create_service(http, DefaultTtl="3600", CallbackUrl=HOOK)
    assert set(service) == SERVICE_FIELDS
    assert SID["KS"].fullmatch(service["sid"]), service
    assert service["account_sid"] == tenant.account_id
    assert (service["unique_name"], service["default_ttl"]) == ("rides", 3600)
    assert service["callback_url"] == HOOK
    assert service["intercept_callback_url"] is None
    assert service["number_selection_behavior"] == "prefer-sticky"
    assert service["geo_match_level"] == "country"
    assert TIME.fullmatch(service["date_created"]), service
    url = f"{BASE}/twilio/v1/Services/{service['sid']}"
    assert service["url"] == url
    assert service["links"] == {
        "sessions": f"{url}/Sessions",
        "phone_numbers": f"{url}/PhoneNumbers",
    }

    assert (await http.get(service["url"])).json() == service
    by_name = await http.get(f"{SERVICES}/rides")
    assert by_name.status_code == 200, by_name.text
    assert by_name.json()["sid"] == service["sid"]

    updated = await http.post(
        service["url"],
        data={"NumberSelectionBehavior": "avoid-sticky", "CallbackUrl": "", "DefaultTtl": "60"},
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["number_selection_behavior"] == "avoid-sticky"
    assert (body["callback_url"], body["default_ttl"]) == (None, 60)
    assert body["unique_name"] == "rides"

    listed = await http.get(SERVICES)
    assert listed.status_code == 200, listed.text
    assert [s["sid"] for s in listed.json()["services"]] == [service["sid"]]

    deleted = await http.delete(service["url"])
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    assert_twilio_error(await http.get(service["url"]), 404, 20404)


async def test_a_pool_number_shows_its_country_capabilities_and_use(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await buy(http, tenant, *POOL)
    service = await create_service(http)
    numbers_url = service["links"]["phone_numbers"]
    reply = await http.post(numbers_url, data={"PhoneNumber": POOL[0]})
    assert reply.status_code == 201, reply.text
    number = reply.json()
    assert set(number) == PHONE_NUMBER_FIELDS
    assert SID["PN"].fullmatch(number["sid"]), number
    assert (number["phone_number"], number["iso_country"]) == (POOL[0], "US")
    assert (number["is_reserved"], number["in_use"]) == (False, 0)
    assert number["capabilities"]["voice"] is True
    assert number["url"] == f"{numbers_url}/{number['sid']}"
    assert (number["service_sid"], number["account_sid"]) == (service["sid"], tenant.account_id)

    reserved = await http.post(numbers_url, data={"PhoneNumber": POOL[1], "IsReserved": "true"})
    assert reserved.status_code == 201, reserved.text
    assert reserved.json()["is_reserved"] is True
    flipped = await http.post(reserved.json()["url"], data={"IsReserved": "false"})
    assert flipped.status_code == 200, flipped.text
    assert flipped.json()["is_reserved"] is False

    assert (await http.get(number["url"])).json() == number
    listed = (await http.get(numbers_url)).json()
    assert sorted(n["phone_number"] for n in listed["phone_numbers"]) == sorted(POOL[:2])

    deleted = await http.delete(number["url"])
    assert deleted.status_code == 204, deleted.text
    assert_twilio_error(await http.get(number["url"]), 404, 20404)


async def test_a_session_with_two_participants_is_closed_and_frees_its_numbers(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    service = await pooled_service(http, tenant)
    reply = await http.post(
        service["links"]["sessions"],
        **form(
            [
                ("UniqueName", "Order #1234"),
                ("Mode", "voice-only"),
                ("Ttl", "600"),
                *participants(ALICE, BOB),
            ]
        ),
    )
    assert reply.status_code == 201, reply.text
    session = reply.json()
    assert set(session) == SESSION_FIELDS
    assert SID["KC"].fullmatch(session["sid"]), session
    assert (session["status"], session["mode"], session["ttl"]) == ("open", "voice-only", 600)
    assert session["unique_name"] == "Order #1234"
    assert session["url"] == f"{service['links']['sessions']}/{session['sid']}"
    assert session["links"] == {
        "interactions": f"{session['url']}/Interactions",
        "participants": f"{session['url']}/Participants",
    }

    listed = (await http.get(session["links"]["participants"])).json()
    assert set(listed["meta"]) == META_FIELDS
    people = listed["participants"]
    assert sorted(p["identifier"] for p in people) == [ALICE, BOB]
    for person in people:
        assert set(person) == PARTICIPANT_FIELDS
        assert SID["KP"].fullmatch(person["sid"]), person
        assert person["proxy_identifier"] in POOL, person
        assert SID["PN"].fullmatch(person["proxy_identifier_sid"]), person
        assert person["date_deleted"] is None
        assert person["links"] == {"message_interactions": f"{person['url']}/MessageInteractions"}
        assert (await http.get(person["url"])).json() == person
    by_name = await http.get(f"{service['links']['sessions']}/{quote('Order #1234')}")
    assert by_name.status_code == 200, by_name.text
    assert by_name.json()["sid"] == session["sid"]
    interactions = (await http.get(session["links"]["interactions"])).json()
    assert (interactions["interactions"], interactions["meta"]["key"]) == ([], "interactions")

    numbers = (await http.get(service["links"]["phone_numbers"])).json()["phone_numbers"]
    in_use = {n["phone_number"]: n["in_use"] for n in numbers}
    assert sum(in_use.values()) >= 1, in_use

    closed = await http.post(session["url"], data={"Status": "closed"})
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    assert TIME.fullmatch(closed.json()["date_ended"]), closed.json()
    numbers = (await http.get(service["links"]["phone_numbers"])).json()["phone_numbers"]
    assert [n["in_use"] for n in numbers] == [0, 0, 0]

    deleted = await http.delete(session["url"])
    assert deleted.status_code == 204, deleted.text
    assert_twilio_error(await http.get(session["url"]), 404, 20404)


async def test_a_participant_is_added_with_a_chosen_number_and_soft_deleted(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    service = await pooled_service(http, tenant)
    created = await http.post(service["links"]["sessions"], data={})
    assert created.status_code == 201, created.text
    session = created.json()
    reply = await http.post(
        session["links"]["participants"],
        data={"Identifier": ALICE, "FriendlyName": "Alice", "ProxyIdentifier": POOL[2]},
    )
    assert reply.status_code == 201, reply.text
    alice = reply.json()
    assert (alice["identifier"], alice["friendly_name"]) == (ALICE, "Alice")
    assert alice["proxy_identifier"] == POOL[2]

    deleted = await http.delete(alice["url"])
    assert deleted.status_code == 204, deleted.text
    after = (await http.get(alice["url"])).json()
    assert TIME.fullmatch(after["date_deleted"] or ""), after
    numbers = (await http.get(service["links"]["phone_numbers"])).json()["phone_numbers"]
    assert [n["in_use"] for n in numbers] == [0, 0, 0]


# -- paging --------------------------------------------------------------------------


async def test_lists_page_the_way_the_sdk_follows_them(http: httpx.AsyncClient) -> None:
    for n in range(5):
        await create_service(http, f"service-{n}")
    seen: list[str] = []
    url: str | None = f"{SERVICES}?PageSize=2"
    pages = []
    for _ in range(5):  # bounded: three pages expected
        if url is None:
            break
        reply = await http.get(url)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert set(body) == {"services", "meta"}
        assert set(body["meta"]) == META_FIELDS
        pages.append(body["meta"])
        seen += [s["unique_name"] for s in body["services"]]
        url = body["meta"]["next_page_url"]
    assert sorted(seen) == [f"service-{n}" for n in range(5)]
    assert [m["page"] for m in pages] == [0, 1, 2]
    assert all(m["page_size"] == 2 and m["key"] == "services" for m in pages)
    first = f"{BASE}/twilio/v1/Services?PageSize=2&Page=0"
    assert [m["first_page_url"] for m in pages] == [first] * 3
    assert pages[0]["url"] == first
    assert pages[0]["previous_page_url"] is None
    assert pages[1]["previous_page_url"] == first
    assert pages[0]["next_page_url"] == f"{first[:-1]}1&PageToken=PT2"
    assert pages[2]["previous_page_url"] == pages[1]["url"] == pages[0]["next_page_url"]
    assert pages[2]["next_page_url"] is None
    # A page asked for by number alone.
    third = (await http.get(SERVICES, params={"PageSize": "2", "Page": "2"})).json()
    assert len(third["services"]) == 1
    default = (await http.get(SERVICES)).json()["meta"]
    assert (default["page"], default["page_size"]) == (0, 50)


@pytest.mark.parametrize(
    "query",
    [
        {"PageSize": "0"},
        {"PageSize": "1001"},
        {"PageSize": "ten"},
        {"Page": "-1"},
        {"Page": "1000000000"},
        {"PageToken": "PTzz"},
        {"PageToken": "12"},
    ],
)
async def test_a_bad_paging_parameter_is_20001(
    http: httpx.AsyncClient, query: dict[str, str]
) -> None:
    assert_twilio_error(await http.get(SERVICES, params=query), 400, 20001)


# -- bad input changes nothing -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mentions"),
    [
        ({}, "UniqueName"),
        ({"UniqueName": ""}, "UniqueName"),
        ({"UniqueName": "x" * 192}, "UniqueName"),
        ({"UniqueName": "a", "DefaultTtl": "an hour"}, "DefaultTtl"),
        ({"UniqueName": "a", "DefaultTtl": "-1"}, "DefaultTtl"),
        ({"UniqueName": "a", "NumberSelectionBehavior": "sticky"}, "NumberSelectionBehavior"),
        ({"UniqueName": "a", "GeoMatchLevel": "planet"}, "GeoMatchLevel"),
        ({"UniqueName": "a", "CallbackUrl": "ftp://customer.example.com/"}, "CallbackUrl"),
        ({"UniqueName": "a", "InterceptCallbackUrl": "not a url"}, "InterceptCallbackUrl"),
        ({"UniqueName": "a", "ChatInstanceSid": "IS123"}, "ChatInstanceSid"),
    ],
)
async def test_a_bad_service_parameter_is_20001_and_changes_nothing(
    http: httpx.AsyncClient, database: Database, data: dict[str, str], mentions: str
) -> None:
    service = await create_service(http, "kept")
    before = await census(database)
    assert_twilio_error(await http.post(SERVICES, data=data), 400, 20001, mentions=mentions)
    update = {k: v for k, v in data.items() if k != "UniqueName"} or {"UniqueName": ""}
    reply = await http.post(service["url"], data=update)
    assert_twilio_error(reply, 400, 20001, mentions=mentions)
    assert await census(database) == before
    assert (await http.get(service["url"])).json() == service


async def test_a_private_callback_url_is_refused_as_the_other_apis_refuse_it(
    tmp_path: Path, database: Database, tenant: Tenant
) -> None:
    settings = make_settings(tmp_path, database.url, webhook_allow_private=False)
    application = node_app(settings, database=database)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url=BASE,
            auth=twilio_auth(tenant),
        ) as http,
    ):
        for url in ("http://127.0.0.1:8080/hook", "http://169.254.169.254/latest/meta-data"):
            reply = await http.post(SERVICES, data={"UniqueName": "a", "CallbackUrl": url})
            assert_twilio_error(reply, 400, 20001, mentions="CallbackUrl")
        assert (await census(database))["proxy_services"] == 0


async def test_a_body_that_is_not_form_encoded_is_refused(http: httpx.AsyncClient) -> None:
    reply = await http.post(SERVICES, json={"UniqueName": "a"})
    assert_twilio_error(reply, 400, 20001, mentions="form-encoded")
    reply = await http.post(SERVICES, content=b"UniqueName=%ff", headers=FORM)
    assert_twilio_error(reply, 400, 20001, mentions="malformed")


@pytest.mark.parametrize(
    ("data", "mentions"),
    [
        ({"PhoneNumber": "not a number"}, "phone number"),
        ({"PhoneNumber": "+14155550199"}, None),  # in the inventory of nobody
        ({"PhoneNumber": "+14155550198"}, None),  # another account's
        ({}, "Sid or PhoneNumber"),
        ({"Sid": "PN123"}, "Sid"),
        ({"PhoneNumber": POOL[0], "IsReserved": "maybe"}, "IsReserved"),
    ],
)
async def test_a_pool_number_the_account_cannot_use_is_refused_and_changes_nothing(
    http: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    data: dict[str, str],
    mentions: str | None,
) -> None:
    await buy(http, tenant, POOL[0])
    await buy(http, other_tenant, "+14155550198")
    stocked = await http.post(
        "/admin/numbers",
        json={"numbers": ["+14155550199"]},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        auth=None,
    )
    assert stocked.status_code == 200, stocked.text
    service = await create_service(http)
    before = await census(database)
    reply = await http.post(service["links"]["phone_numbers"], data=data)
    assert 400 <= reply.status_code < 500, reply.text
    body = reply.json()
    assert set(body) == {"code", "message", "more_info", "status"}, body
    if mentions is not None:
        assert_twilio_error(reply, 400, 20001, mentions=mentions)
    assert await census(database) == before


@pytest.mark.parametrize(
    ("data", "mentions"),
    [
        ([("Participants", "{not json")], "Participants[0]"),
        ([("Participants", '["+41793026731"]')], "JSON object"),
        (participants(ALICE, BOB, CAROL), "at most 2"),
        ([("Participants", json.dumps({"Identifer": ALICE}))], "unknown key"),
        ([("Participants", json.dumps({"FriendlyName": "no number"}))], "Identifier"),
        (participants("12ab"), None),
        ([("Mode", "message-only")], "calls only"),
        ([("Mode", "video")], "Mode"),
        ([("Status", "paused")], "Status"),
        ([("Ttl", "soon")], "Ttl"),
        ([("DateExpiry", "30/07/2015")], "DateExpiry"),
        ([("UniqueName", "x" * 192)], "UniqueName"),
    ],
)
async def test_a_bad_session_is_refused_and_leaves_nothing_behind(
    http: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    data: list[tuple[str, str]],
    mentions: str | None,
) -> None:
    service = await pooled_service(http, tenant)
    before = await census(database)
    reply = await http.post(service["links"]["sessions"], **form(data))
    assert_twilio_error(reply, 400, 20001, mentions=mentions)
    assert await census(database) == before


async def test_an_exhausted_pool_is_twilios_error_and_leaves_no_session(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    service = await pooled_service(http, tenant, POOL[:1])
    first = await http.post(service["links"]["sessions"], **form(participants(ALICE, BOB)))
    assert first.status_code == 201, first.text
    before = await census(database)
    # Alice holds the only number in an open session: a second one cannot be masked.
    second = await http.post(service["links"]["sessions"], **form(participants(ALICE, CAROL)))
    assert second.status_code == 400, second.text
    body = second.json()
    assert body["code"] in (80207, 80208), body
    assert await census(database) == before


async def test_a_bad_session_update_changes_nothing(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    service = await pooled_service(http, tenant)
    created = await http.post(service["links"]["sessions"], **form(participants(ALICE, BOB)))
    session = created.json()
    for data in ({"Status": "paused"}, {"Ttl": "-5"}, {"DateExpiry": "tomorrow"}):
        assert_twilio_error(await http.post(session["url"], data=data), 400, 20001)
    assert (await http.get(session["url"])).json() == session


# -- tenancy and credentials ---------------------------------------------------------


async def test_another_accounts_objects_are_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    client.auth = twilio_auth(tenant)
    service = await pooled_service(client, tenant)
    session = (
        await client.post(service["links"]["sessions"], **form(participants(ALICE, BOB)))
    ).json()
    people = (await client.get(session["links"]["participants"])).json()["participants"]
    number = (await client.get(service["links"]["phone_numbers"])).json()["phone_numbers"][0]
    before = await census(database)

    client.auth = twilio_auth(other_tenant)
    for url in (
        service["url"],
        f"{SERVICES}/{service['unique_name']}",
        number["url"],
        session["url"],
        session["links"]["participants"],
        session["links"]["interactions"],
        people[0]["url"],
        service["links"]["sessions"],
        service["links"]["phone_numbers"],
    ):
        assert_twilio_error(await client.get(url), 404, 20404)
    for url in (service["url"], number["url"], session["url"]):
        assert_twilio_error(await client.post(url, data={}), 404, 20404)
    for url in (people[0]["url"], session["url"], number["url"], service["url"]):
        assert_twilio_error(await client.delete(url), 404, 20404)
    reply = await client.post(session["links"]["participants"], data={"Identifier": CAROL})
    assert_twilio_error(reply, 404, 20404)
    reply = await client.post(service["links"]["phone_numbers"], data={"PhoneNumber": POOL[0]})
    assert_twilio_error(reply, 404, 20404)
    assert (await client.get(SERVICES)).json()["services"] == []
    assert await census(database) == before


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic bm90IGJhc2U2NA"},
        {"Authorization": "Bearer {key}"},
        {"Authorization": "App {key}"},
    ],
    ids=["none", "malformed", "bearer", "app"],
)
async def test_anything_but_basic_account_and_key_is_401(
    client: httpx.AsyncClient, tenant: Tenant, headers: dict[str, str]
) -> None:
    headers = {k: v.format(key=tenant.api_key) for k, v in headers.items()}
    reply = await client.get(SERVICES, headers=headers)
    assert_twilio_error(reply, 401, 20003, mentions="Authenticate")
    assert reply.headers["www-authenticate"].startswith("Basic")


async def test_a_wrong_key_or_another_accounts_key_is_401(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    for headers in (
        basic(tenant.account_id, "not-the-key"),
        basic(tenant.account_id, other_tenant.api_key),
        basic(other_tenant.account_id, tenant.api_key),
    ):
        reply = await client.post(SERVICES, data={"UniqueName": "a"}, headers=headers)
        assert_twilio_error(reply, 401, 20003)
    assert (await census(database))["proxy_services"] == 0


# -- what is not there ---------------------------------------------------------------


async def test_unknown_paths_and_methods_answer_in_twilios_shape(http: httpx.AsyncClient) -> None:
    assert_twilio_error(await http.get("/twilio/v1/Nothing"), 404, 20404)
    assert_twilio_error(await http.get("/twilio/v2/Services"), 404, 20404)
    reply = await http.put(SERVICES, data={"UniqueName": "a"})
    assert_twilio_error(reply, 405, 20004)
    assert reply.headers["allow"] == "GET, POST"
    reply = await http.patch(f"{SERVICES}/KS{'0' * 32}")
    assert_twilio_error(reply, 405, 20004)
    assert reply.headers["allow"] == "DELETE, GET, POST"


async def test_messaging_is_a_clear_501(
    http: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    service = await pooled_service(http, tenant)
    session = (
        await http.post(service["links"]["sessions"], **form(participants(ALICE, BOB)))
    ).json()
    person = (await http.get(session["links"]["participants"])).json()["participants"][0]
    messages = person["links"]["message_interactions"]
    before = await census(database)
    for reply in (
        await http.post(messages, data={"Body": "hello"}),
        await http.get(messages),
        await http.get(f"{messages}/KI{'0' * 32}"),
        await http.get(f"{service['url']}/ShortCodes"),
    ):
        assert_twilio_error(reply, 501, 501, mentions="calls only")
    assert await census(database) == before
    unauthenticated = await http.get(messages, auth=None)
    assert_twilio_error(unauthenticated, 401, 20003)


async def test_a_duplicate_unique_name_is_refused(http: httpx.AsyncClient) -> None:
    await create_service(http, "rides")
    reply = await http.post(SERVICES, data={"UniqueName": "rides"})
    assert 400 <= reply.status_code < 500, reply.text
    assert set(reply.json()) == {"code", "message", "more_info", "status"}
    listed = (await http.get(SERVICES)).json()["services"]
    assert [s["unique_name"] for s in listed] == ["rides"]
