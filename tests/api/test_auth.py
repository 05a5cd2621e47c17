"""Credentials: each accepted form works, everything else is a 401 in the Infobip
error shape, on every customer route, and changes nothing."""

from __future__ import annotations

import base64
import re

import httpx
import pytest

from callmask.store.database import Database
from callmask.store.models import Action
from tests.api.infobip import (
    REFERENCE_ACTION,
    REFERENCE_DID,
    assert_error,
    assert_tata_error,
    count,
    stock,
)
from tests.conftest import Tenant


def _basic(user_pass: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user_pass).decode()}


# Routes anyone may call: the load balancer's health check.
PUBLIC_PATHS = {"/healthz"}


async def documented_routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """(method, path) of every route the API documents, path parameters filled in,
    plus the undocumented ``.../action`` alias of the reference example."""
    reply = await client.get("/openapi.json")
    assert reply.status_code == 200, reply.text
    routes = [("POST", "/numbers/1/numbers/{numberKey}/action")]
    for path, operations in reply.json()["paths"].items():
        if path not in PUBLIC_PATHS:
            routes.extend((method.upper(), path) for method in sorted(operations))
    return [
        (method, re.sub(r"\{[^}]+\}", "6FED0BC540BFADD9B05ED7D89AAC22FA", path))
        for method, path in routes
    ]


async def test_every_route_but_the_health_check_wants_credentials(
    client: httpx.AsyncClient, subtests: pytest.Subtests
) -> None:
    routes = await documented_routes(client)
    # The reference's numbers, actions and files routes and the operator's, at least.
    assert len([r for r in routes if r[1].startswith(("/numbers/", "/admin/"))]) >= 14, routes
    for method, path in routes:
        with subtests.test(msg=f"{method} {path}"):
            body = {} if method in ("POST", "PUT", "PATCH") else None
            reply = await client.request(method, path, json=body)
            if path.startswith("/v1/"):
                assert_tata_error(reply, 401)
            else:
                assert_error(reply, 401, "UNAUTHORIZED")
                assert reply.headers["www-authenticate"].lower().startswith("basic")


@pytest.mark.parametrize("form", ["basic", "app", "bearer"])
async def test_each_documented_credential_form_works(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, form: str
) -> None:
    [number_key] = await stock(database, REFERENCE_DID, account_id=tenant.account_id)
    headers = {
        "basic": tenant.basic,
        "app": {"Authorization": f"App {tenant.api_key}"},
        "bearer": {"Authorization": f"Bearer {tenant.api_key}"},
    }[form]
    reply = await client.get("/numbers/1/numbers", headers=headers)
    assert reply.status_code == 200, reply.text
    assert [n["numberKey"] for n in reply.json()["numbers"]] == [number_key]
    reply = await client.post(
        f"/numbers/1/numbers/{number_key}/actions", json=REFERENCE_ACTION, headers=headers
    )
    assert reply.status_code == 200, reply.text


async def test_scheme_names_are_case_insensitive(client: httpx.AsyncClient, tenant: Tenant) -> None:
    token = base64.b64encode(f"{tenant.account_id}:{tenant.api_key}".encode()).decode()
    for header in (f"basic {token}", f"BASIC {token}", f"app {tenant.api_key}"):
        reply = await client.get("/numbers/1/numbers", headers={"Authorization": header})
        assert reply.status_code == 200, (header, reply.text)


async def test_wrong_credentials_are_refused_and_change_nothing(
    client: httpx.AsyncClient,
    database: Database,
    tenant: Tenant,
    other_tenant: Tenant,
    subtests: pytest.Subtests,
) -> None:
    [number_key] = await stock(database, REFERENCE_DID, account_id=tenant.account_id)
    wrong: dict[str, dict[str, str]] = {
        "no header": {},
        "empty header": {"Authorization": ""},
        "Basic, wrong key": _basic(f"{tenant.account_id}:not-the-key".encode()),
        "Basic, right key, another account's id": _basic(
            f"{other_tenant.account_id}:{tenant.api_key}".encode()
        ),
        "Basic, right key, unknown account id": _basic(f"nobody:{tenant.api_key}".encode()),
        "Basic, the reference's Aladdin": {"Authorization": "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="},
        "Basic, key only": _basic(tenant.api_key.encode()),
        "Basic, empty account": _basic(f":{tenant.api_key}".encode()),
        "Basic, empty key": _basic(f"{tenant.account_id}:".encode()),
        "Basic, not base64": {"Authorization": "Basic !!not-base64!!"},
        "Basic, not UTF-8": _basic(b"\xff\xfe:\xff"),
        "Basic, nothing after": {"Authorization": "Basic"},
        "App, wrong key": {"Authorization": "App not-the-key"},
        "App, nothing after": {"Authorization": "App"},
        "Bearer, wrong key": {"Authorization": "Bearer not-the-key"},
        "Bearer, empty": {"Authorization": "Bearer   "},
        "unknown scheme": {"Authorization": f"Token {tenant.api_key}"},
        "bare key outside /v1/": {"Authorization": tenant.api_key},
        "garbage": {"Authorization": "\x01\x02 garbage ;;; ==="},
        "oversized": {"Authorization": "Bearer " + "k" * 10_000},
    }
    for name, headers in wrong.items():
        with subtests.test(msg=name):
            reply = await client.post(
                f"/numbers/1/numbers/{number_key}/actions", json=REFERENCE_ACTION, headers=headers
            )
            assert_error(reply, 401, "UNAUTHORIZED")
            reply = await client.get("/numbers/1/numbers", headers=headers)
            assert_error(reply, 401, "UNAUTHORIZED")
    assert await count(database, Action) == 0


async def test_an_api_key_is_not_a_password_prefix(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for key in (tenant.api_key[:-1], tenant.api_key + "x", tenant.api_key.upper()):
        reply = await client.get("/numbers/1/numbers", headers={"Authorization": f"App {key}"})
        assert_error(reply, 401, "UNAUTHORIZED")


async def test_a_bare_key_is_tata_only_and_unknown_tata_paths_answer_in_tata_shape(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # DESIGN.md: the bare key is accepted under /v1/ (Tata clients send the token as is)
    # and nowhere else.
    reply = await client.get("/v1/agents", headers={"Authorization": tenant.api_key})
    assert reply.status_code == 200, reply.text
    reply = await client.get("/v1/agents", headers={"Authorization": "not-the-key"})
    assert_tata_error(reply, 401)
    reply = await client.get("/v1/no-such-route", headers={"Authorization": tenant.api_key})
    assert_tata_error(reply, 404)
    reply = await client.get("/numbers/1/numbers", headers={"Authorization": tenant.api_key})
    assert_error(reply, 401, "UNAUTHORIZED")
