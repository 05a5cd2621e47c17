"""Operator API (/admin/, CALLMASK_ADMIN_KEY): the operator creates accounts and adds
trunk DIDs, all or none; nobody else can."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from callmask.node import node_app
from callmask.store.database import Database
from callmask.store.models import Account, Number
from tests.api.infobip import assert_error, count
from tests.conftest import ADMIN_KEY, Tenant, make_settings

OPERATOR = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def _client_for(
    tmp_path: Path, db_url: str, database: Database, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    application = node_app(make_settings(tmp_path, db_url, **overrides), database=database)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://callmask.test") as c:
            yield c


@pytest.fixture
async def swiss_client(
    tmp_path: Path, db_url: str, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """An operator in Switzerland: CALLMASK_DEFAULT_REGION=CH."""
    async for c in _client_for(tmp_path, db_url, database, default_region="CH"):
        yield c


async def test_the_operator_api_wants_the_operator_key(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, subtests: pytest.Subtests
) -> None:
    requests = [
        ("GET", "/admin/accounts", None),
        ("POST", "/admin/accounts", {"name": "intruder"}),
        ("GET", "/admin/numbers", None),
        ("POST", "/admin/numbers", {"numbers": ["+41793026731"]}),
    ]
    wrong = {
        "no header": {},
        "wrong key": {"Authorization": "Bearer not-the-operator-key"},
        "a customer's key": {"Authorization": f"Bearer {tenant.api_key}"},
        "a customer's Basic credentials": tenant.basic,
        "the key bare": {"Authorization": ADMIN_KEY},
        "the key with a suffix": {"Authorization": f"Bearer {ADMIN_KEY}x"},
    }
    for name, headers in wrong.items():
        for method, path, body in requests:
            with subtests.test(msg=f"{name}: {method} {path}"):
                reply = await client.request(method, path, json=body, headers=headers)
                assert_error(reply, 401, "UNAUTHORIZED")
    assert await count(database, Account) == 1  # the tenant only
    assert await count(database, Number) == 0


async def test_without_an_operator_key_configured_the_operator_api_is_closed(
    tmp_path: Path, db_url: str, database: Database
) -> None:
    async for client in _client_for(tmp_path, db_url, database, admin_key=None):
        for headers in ({}, OPERATOR, {"Authorization": "Bearer "}):
            reply = await client.get("/admin/accounts", headers=headers)
            assert_error(reply, 401, "UNAUTHORIZED", mentions="CALLMASK_ADMIN_KEY")


async def test_the_operator_creates_an_account_whose_key_works_at_once(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.post("/admin/accounts", json={"name": "demo"}, headers=OPERATOR)
    assert reply.status_code == 200, reply.text
    created = reply.json()
    assert set(created) == {"accountId", "name", "apiKey"}
    assert created["name"] == "demo"
    for form in ("App", "Bearer"):
        reply = await client.get(
            "/numbers/1/numbers", headers={"Authorization": f"{form} {created['apiKey']}"}
        )
        assert reply.status_code == 200, reply.text
    reply = await client.get(
        "/numbers/1/numbers", auth=httpx.BasicAuth(created["accountId"], created["apiKey"])
    )
    assert reply.status_code == 200, reply.text

    reply = await client.get("/admin/accounts", headers=OPERATOR)
    assert [(a["accountId"], a["name"]) for a in reply.json()] == [(created["accountId"], "demo")]
    assert created["apiKey"] not in reply.text  # shown once, at creation


@pytest.mark.parametrize("name", ["", "x" * 201, "a\x00b", "line\nbreak"])
async def test_an_account_needs_a_sensible_name(
    client: httpx.AsyncClient, database: Database, name: str
) -> None:
    reply = await client.post("/admin/accounts", json={"name": name}, headers=OPERATOR)
    assert_error(reply, 400, "BAD_REQUEST", mentions="name")
    assert await count(database, Account) == 0


async def test_the_operator_adds_dids_for_an_account_and_the_customer_sees_them(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    reply = await client.post(
        "/admin/numbers",
        json={"numbers": ["+41793026731", "41793026732"], "accountId": tenant.account_id},
        headers=OPERATOR,
    )
    assert reply.status_code == 200, reply.text
    added = reply.json()
    assert [(n["number"], n["country"], n["accountId"]) for n in added] == [
        ("41793026731", "CH", tenant.account_id),
        ("41793026732", "CH", tenant.account_id),
    ]
    reply = await client.get("/numbers/1/numbers", headers=tenant.basic)
    assert sorted(n["numberKey"] for n in reply.json()["numbers"]) == sorted(
        n["numberKey"] for n in added
    )


async def test_the_operator_adds_dids_to_the_free_inventory(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    reply = await client.post(
        "/admin/numbers", json={"numbers": ["+919876543210"]}, headers=OPERATOR
    )
    assert reply.status_code == 200, reply.text
    [added] = reply.json()
    assert added["accountId"] is None
    reply = await client.get("/numbers/1/numbers/available", headers=tenant.basic)
    assert [n["numberKey"] for n in reply.json()["numbers"]] == [added["numberKey"]]
    reply = await client.get("/admin/numbers", headers=OPERATOR)
    assert [(n["number"], n["country"]) for n in reply.json()] == [("919876543210", "IN")]


async def test_national_numbers_are_read_in_the_operators_region(
    swiss_client: httpx.AsyncClient,
) -> None:
    reply = await swiss_client.post(
        "/admin/numbers",
        json={"numbers": ["079 302 67 31", "0793026732", "+919876543210"]},
        headers=OPERATOR,
    )
    assert reply.status_code == 200, reply.text
    assert [(n["number"], n["country"]) for n in reply.json()] == [
        ("41793026731", "CH"),
        ("41793026732", "CH"),
        ("919876543210", "IN"),
    ]


async def test_national_numbers_without_a_region_are_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    reply = await client.post("/admin/numbers", json={"numbers": ["0793026731"]}, headers=OPERATOR)
    assert_error(reply, 400, "BAD_REQUEST", mentions="CALLMASK_DEFAULT_REGION")
    assert await count(database, Number) == 0


async def test_one_bad_number_adds_none(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, subtests: pytest.Subtests
) -> None:
    reply = await client.post(
        "/admin/numbers", json={"numbers": ["+41793026739"]}, headers=OPERATOR
    )
    assert reply.status_code == 200, reply.text
    batches: list[tuple[str, dict[str, Any], int, str]] = [
        ("an invalid number last", {"numbers": ["+41793026731", "12345"]}, 400, "BAD_REQUEST"),
        ("an invalid number first", {"numbers": ["abc", "+41793026731"]}, 400, "BAD_REQUEST"),
        (
            "a number already in the inventory",
            {"numbers": ["+41793026731", "+41793026739"]},
            409,
            "CONFLICT",
        ),
        ("the same number twice", {"numbers": ["+41793026731", "41793026731"]}, 409, "CONFLICT"),
        (
            "an unknown account",
            {"numbers": ["+41793026731"], "accountId": "0123456789abcdef"},
            404,
            "NOT_FOUND",
        ),
        ("no numbers", {"numbers": []}, 400, "BAD_REQUEST"),
        ("not a list", {"numbers": "+41793026731"}, 400, "BAD_REQUEST"),
    ]
    for name, body, status, message_id in batches:
        with subtests.test(msg=name):
            reply = await client.post("/admin/numbers", json=body, headers=OPERATOR)
            assert_error(reply, status, message_id)
    reply = await client.get("/admin/numbers", headers=OPERATOR)
    assert [n["number"] for n in reply.json()] == ["41793026739"]
    assert await count(database, Number) == 1


async def test_the_operator_adds_a_non_geographic_did(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # Universal freephone (+800) and global services (+882) have no country; they are
    # filed under ZZ ("unknown region"), never phonenumbers' three-character "001".
    reply = await client.post(
        "/admin/numbers",
        json={"numbers": ["+800 1234 5678", "+882 16 0000 0000"], "accountId": tenant.account_id},
        headers=OPERATOR,
    )
    assert reply.status_code == 200, reply.text
    assert [(n["number"], n["country"]) for n in reply.json()] == [
        ("80012345678", "ZZ"),
        ("8821600000000", "ZZ"),
    ]
    reply = await client.get("/numbers/1/numbers", headers=tenant.basic)
    assert {n["country"] for n in reply.json()["numbers"]} == {"ZZ"}
