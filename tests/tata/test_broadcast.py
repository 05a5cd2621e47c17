"""OTP broadcast: lead lists, leads (``POST /v1/broadcast/lead/{lead_id}``), broadcast
keys, and ``POST /v1/c2c_api``, which asks the call engine to call the customer and
speak the OTP.

The call engine is ``RecordingCallControl`` (tests/tata/conftest.py), an in-test
implementation of ``CallControl``: these tests check what the API layer stores,
refuses and asks for. The spoken call itself is tested with SIPp in the interop tests.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from callmask.api.tata.broadcast import announcement_text
from callmask.store.database import Database
from callmask.store.models import TataBroadcastKey, TataLead, TataLeadList
from tests.conftest import Tenant
from tests.tata.conftest import (
    CUSTOMER_E164,
    CUSTOMER_NUMBER,
    DID,
    OTHER_DID,
    SECOND_DID,
    RecordingCallControl,
    assert_failure,
    rows,
    sqlite_only,
    tata,
)

TEMPLATE = "Your one time password is {otp}"


async def new_list(client: httpx.AsyncClient, tenant: Tenant, name: str = "OTP") -> str:
    reply = await client.post("/v1/broadcast/lists", json={"name": name}, headers=tata(tenant))
    assert reply.status_code == 200, reply.text
    lead_list_id: str = reply.json()["lead_list_id"]
    return lead_list_id


async def new_key(
    client: httpx.AsyncClient, tenant: Tenant, list_id: str, **body: object
) -> httpx.Response:
    payload = {"lead_list_id": list_id, "template": TEMPLATE, **body}
    return await client.post("/v1/broadcast/keys", json=payload, headers=tata(tenant))


async def put_lead(
    client: httpx.AsyncClient, tenant: Tenant, lead_list_id: str, **body: object
) -> httpx.Response:
    payload = {"field_0": CUSTOMER_NUMBER, "field_5": "123456", **body}
    return await client.post(
        f"/v1/broadcast/lead/{lead_list_id}", json=payload, headers=tata(tenant)
    )


async def stored_leads(database: Database) -> list[tuple[str, str]]:
    async with database.session() as session:
        leads = await session.scalars(select(TataLead).order_by(TataLead.number))
        return [(lead.number, lead.otp) for lead in leads]


def test_the_otp_is_spoken_digit_by_digit_and_twice() -> None:
    assert announcement_text(TEMPLATE, "1234") == (
        "Your one time password is 1, 2, 3, 4. Again: 1, 2, 3, 4."
    )
    assert announcement_text("Code {otp}. Bye!", "0042") == (
        "Code 0, 0, 4, 2. Bye! Again: 0, 0, 4, 2."
    )


async def test_an_account_stores_a_lead_then_overwrites_its_otp(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    lead_list_id = await new_list(client, tenant)
    reply = await put_lead(client, tenant, lead_list_id, duplicate_option="overwrite")
    assert reply.json() == {"success": True, "message": "Lead added successfully"}
    reply = await put_lead(client, tenant, lead_list_id, field_0="+919876501234", field_5="9999")
    assert reply.json() == {"success": True, "message": "Lead updated successfully"}
    assert await stored_leads(database) == [(CUSTOMER_E164, "9999")]


async def test_duplicate_option_skip_keeps_the_existing_otp(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    lead_list_id = await new_list(client, tenant)
    await put_lead(client, tenant, lead_list_id)
    reply = await put_lead(client, tenant, lead_list_id, field_5="0000", duplicate_option="skip")
    assert reply.status_code == 200
    assert reply.json()["success"] is True
    assert await stored_leads(database) == [(CUSTOMER_E164, "123456")]


async def test_a_lead_for_an_unknown_or_another_accounts_list_is_refused_and_not_stored(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    theirs = await new_list(client, other_tenant)
    assert_failure(await put_lead(client, tenant, "0" * 32), 404, "lead list")
    assert_failure(await put_lead(client, tenant, theirs), 404, "lead list")
    assert await rows(database, TataLead) == 0


@sqlite_only
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"field_0": "98765"}, ["field_0", "10 to 15 digits"]),
        ({"field_0": "+4479460000000"}, ["field_0", "+91 or 0"]),
        ({"field_0": "98765O1234"}, ["field_0"]),
        ({"field_0": None}, ["field_0 is required"]),
        ({"field_5": "123"}, ["field_5", "4 to 10 digits"]),
        ({"field_5": "12345678901"}, ["field_5"]),
        ({"field_5": "12a4"}, ["field_5"]),
        ({"field_5": None}, ["field_5 is required"]),
        ({"duplicate_option": "clone"}, ["duplicate_option"]),
    ],
)
async def test_a_malformed_lead_is_refused_and_not_stored(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    body: dict[str, object],
    words: list[str],
) -> None:
    lead_list_id = await new_list(client, tenant)
    assert_failure(await put_lead(client, tenant, lead_list_id, **body), 400, *words)
    assert await rows(database, TataLead) == 0


async def test_a_broadcast_key_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str], database: Database
) -> None:
    lead_list_id = await new_list(client, tenant)
    reply = await new_key(client, tenant, lead_list_id, caller_id=SECOND_DID)
    assert reply.status_code == 200, reply.text
    created = reply.json()
    assert created["success"] is True
    assert created["caller_id"] == SECOND_DID.removeprefix("+")
    api_key = created["api_key"]
    assert len(api_key) == 32 and int(api_key, 16) >= 0
    async with database.session() as session:
        [key] = (await session.scalars(select(TataBroadcastKey))).all()
    assert api_key not in (key.key_sha256, key.id, key.template)
    listed = (await client.get("/v1/broadcast/keys", headers=tata(tenant))).json()
    assert [k["key_id"] for k in listed] == [created["key_id"]]
    assert "api_key" not in listed[0]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"template": "Your code"}, 400, ["{otp}"]),
        ({"template": None}, 400, ["template is required"]),
        ({"caller_id": OTHER_DID}, 400, ["caller_id", "not one of this account's numbers"]),
        ({"caller_id": "123"}, 400, ["caller_id"]),
        ({"lead_list_id": "f" * 32}, 404, ["lead list"]),
    ],
)
async def test_a_bad_broadcast_key_request_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    tenant: Tenant,
    dids: list[str],
    database: Database,
    body: dict[str, object],
    status: int,
    words: list[str],
) -> None:
    lead_list_id = await new_list(client, tenant)
    assert_failure(await new_key(client, tenant, lead_list_id, **body), status, *words)
    assert await rows(database, TataBroadcastKey) == 0


async def test_an_account_without_a_did_cannot_make_a_broadcast_key(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    lead_list_id = await new_list(client, tenant)
    assert_failure(await new_key(client, tenant, lead_list_id), 400, "buy a number")
    assert await rows(database, TataBroadcastKey) == 0


async def otp_setup(client: httpx.AsyncClient, tenant: Tenant) -> tuple[str, str]:
    lead_list_id = await new_list(client, tenant)
    api_key: str = (await new_key(client, tenant, lead_list_id)).json()["api_key"]
    await put_lead(client, tenant, lead_list_id, field_5="4711")
    return lead_list_id, api_key


async def test_a_customer_with_a_lead_gets_an_otp_call_from_the_accounts_did(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str], calls: RecordingCallControl
) -> None:
    await client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/cdr"}, headers=tata(tenant))
    _, api_key = await otp_setup(client, tenant)
    reply = await client.post(
        "/v1/c2c_api",
        json={"customer_number": "09876501234", "api_key": api_key},
        headers=tata(tenant),
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True
    assert body["message"] == "Originate successfully queued"
    [announcement] = calls.announcements
    assert body["call_id"]
    assert announcement.account_id == tenant.account_id
    assert announcement.customer_number == CUSTOMER_E164
    assert announcement.caller_id == DID
    assert announcement.text == "Your one time password is 4, 7, 1, 1. Again: 4, 7, 1, 1."
    assert announcement.webhook_url == "http://127.0.0.1:9/cdr"


@sqlite_only
@pytest.mark.parametrize(
    ("api_key", "customer_number", "status", "words"),
    [
        ("0" * 32, CUSTOMER_NUMBER, 401, ["invalid api_key"]),
        (None, CUSTOMER_NUMBER, 400, ["api_key is required"]),
        ("right", "9876509999", 404, ["no lead"]),
        ("right", "98765", 400, ["customer_number"]),
        ("right", None, 400, ["customer_number is required"]),
    ],
)
async def test_a_bad_otp_request_places_no_call(
    client: httpx.AsyncClient,
    tenant: Tenant,
    dids: list[str],
    calls: RecordingCallControl,
    database: Database,
    api_key: str | None,
    customer_number: str | None,
    status: int,
    words: list[str],
) -> None:
    _, right_key = await otp_setup(client, tenant)
    body = {
        "customer_number": customer_number,
        "api_key": right_key if api_key == "right" else api_key,
    }
    reply = await client.post("/v1/c2c_api", json=body, headers=tata(tenant))
    assert_failure(reply, status, *words)
    assert calls.announcements == []
    assert await stored_leads(database) == [(CUSTOMER_E164, "4711")]


async def test_another_accounts_broadcast_key_is_not_accepted(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    dids: list[str],
    calls: RecordingCallControl,
) -> None:
    _, api_key = await otp_setup(client, tenant)
    reply = await client.post(
        "/v1/c2c_api",
        json={"customer_number": CUSTOMER_NUMBER, "api_key": api_key},
        headers=tata(other_tenant),
    )
    assert_failure(reply, 401, "invalid api_key")
    assert calls.announcements == []


async def test_a_revoked_broadcast_key_places_no_call(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str], calls: RecordingCallControl
) -> None:
    _, api_key = await otp_setup(client, tenant)
    [key] = (await client.get("/v1/broadcast/keys", headers=tata(tenant))).json()
    reply = await client.delete(f"/v1/broadcast/keys/{key['key_id']}", headers=tata(tenant))
    assert reply.json() == {"success": True, "message": "Broadcast key revoked"}
    reply = await client.post(
        "/v1/c2c_api",
        json={"customer_number": CUSTOMER_NUMBER, "api_key": api_key},
        headers=tata(tenant),
    )
    assert_failure(reply, 401)
    assert calls.announcements == []


async def test_a_key_whose_did_was_released_places_no_call(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str], calls: RecordingCallControl
) -> None:
    _, api_key = await otp_setup(client, tenant)  # bound to DID, the first
    numbers = (await client.get("/numbers/1/numbers", headers=tenant.app_key)).json()
    for number in numbers["numbers"]:
        reply = await client.delete(
            f"/numbers/1/numbers/{number['numberKey']}", headers=tenant.app_key
        )
        assert reply.status_code == 200
    reply = await client.post(
        "/v1/c2c_api",
        json={"customer_number": CUSTOMER_NUMBER, "api_key": api_key},
        headers=tata(tenant),
    )
    assert_failure(reply, 400, "caller_id")
    assert calls.announcements == []


async def test_otp_calls_need_the_call_engine(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str]
) -> None:
    _, api_key = await otp_setup(client, tenant)
    reply = await client.post(
        "/v1/c2c_api",
        json={"customer_number": CUSTOMER_NUMBER, "api_key": api_key},
        headers=tata(tenant),
    )
    assert_failure(reply, 503, "calls are not running")


async def test_lead_lists_are_listed_with_their_lead_counts_and_deleted_with_their_keys(
    client: httpx.AsyncClient, tenant: Tenant, dids: list[str], database: Database
) -> None:
    first, _ = await otp_setup(client, tenant)
    second = await new_list(client, tenant, "empty")
    listed = (await client.get("/v1/broadcast/lists", headers=tata(tenant))).json()
    assert [(item["id"], item["name"], item["leads"]) for item in listed] == [
        (first, "OTP", 1),
        (second, "empty", 0),
    ]
    reply = await client.delete(f"/v1/broadcast/lists/{first}", headers=tata(tenant))
    assert reply.json()["success"] is True
    assert await rows(database, TataLeadList) == 1
    assert await rows(database, TataLead) == 0
    assert await rows(database, TataBroadcastKey) == 0
