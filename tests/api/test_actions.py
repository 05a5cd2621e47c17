"""Number masking actions: every bad request gets a precise 4xx in the Infobip error
shape and leaves the number's routing exactly as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from callmask.node import node_app
from callmask.store.database import Database
from callmask.store.models import Action
from tests.api.infobip import (
    REFERENCE_ACTION,
    REFERENCE_DID,
    assert_error,
    count,
    stock,
)
from tests.conftest import Tenant, make_settings


@pytest.fixture
async def number_key(database: Database, tenant: Tenant) -> str:
    """The reference DID, already bought by ``tenant``."""
    [key] = await stock(database, REFERENCE_DID, account_id=tenant.account_id)
    return key


@pytest.fixture
async def strict_client(
    tmp_path: Path, db_url: str, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as deployed: CALLMASK_WEBHOOK_ALLOW_PRIVATE left at false."""
    settings = make_settings(tmp_path, db_url, webhook_allow_private=False)
    application = node_app(settings, database=database)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://callmask.test") as c:
            yield c


async def _actions(client: httpx.AsyncClient, tenant: Tenant, number_key: str) -> list[Any]:
    reply = await client.get(f"/numbers/1/numbers/{number_key}/actions", headers=tenant.basic)
    assert reply.status_code == 200, reply.text
    actions: list[Any] = reply.json()["actions"]
    return actions


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"callbackUrl": "http://client.server/1/callback"}, "type is required"),
    ({"type": "", "callbackUrl": "http://client.server/1/callback"}, "type is required"),
    ({"type": "VOICE", "callbackUrl": "http://client.server/1/callback"}, "unknown type"),
    (
        {"type": "voice_number_masking", "callbackUrl": "http://client.server/1/callback"},
        "unknown type",
    ),
    ({"type": 7, "callbackUrl": "http://client.server/1/callback"}, "type"),
    ({"type": "VOICE_NUMBER_MASKING"}, "callbackUrl is required"),
    ({"type": "VOICE_NUMBER_MASKING", "callbackUrl": "client.server"}, "callbackUrl"),
    ({"type": "VOICE_NUMBER_MASKING", "callbackUrl": "not a url"}, "callbackUrl"),
    ({"type": "VOICE_NUMBER_MASKING", "callbackUrl": "ftp://client.server/x"}, "http"),
    ({"type": "VOICE_NUMBER_MASKING", "callbackUrl": ["http://a/"]}, "callbackUrl"),
    ({**REFERENCE_ACTION, "statusUrl": "mailto:ops@client.server"}, "statusUrl"),
    ({**REFERENCE_ACTION, "statusUrl": "http://"}, "statusUrl"),
]


async def test_a_customer_sends_an_action_with_a_bad_field(
    client: httpx.AsyncClient,
    database: Database,
    tenant: Tenant,
    number_key: str,
    subtests: pytest.Subtests,
) -> None:
    for body, mentions in BAD_FIELDS:
        with subtests.test(msg=repr(body)):
            reply = await client.post(
                f"/numbers/1/numbers/{number_key}/actions", json=body, headers=tenant.basic
            )
            assert_error(reply, 400, "BAD_REQUEST", mentions=mentions)
    assert await count(database, Action) == 0
    assert await _actions(client, tenant, number_key) == []


NON_PUBLIC_URLS = [
    "http://127.0.0.1/callback",
    "http://127.0.0.1:8080/callback",
    "http://10.0.0.1/callback",
    "http://10.20.30.40:8000/callback",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/callback",
    "http://localhost/callback",
    "http://localhost:8080/callback",
    "http://192.168.0.10/callback",
    "http://2130706433/callback",
]


async def test_a_customer_points_an_action_into_the_operators_network(
    strict_client: httpx.AsyncClient,
    database: Database,
    tenant: Tenant,
    number_key: str,
    subtests: pytest.Subtests,
) -> None:
    for field in ("callbackUrl", "statusUrl"):
        for url in NON_PUBLIC_URLS:
            for path in ("actions", "action"):
                with subtests.test(msg=f"{field}={url} on .../{path}"):
                    reply = await strict_client.post(
                        f"/numbers/1/numbers/{number_key}/{path}",
                        json={**REFERENCE_ACTION, field: url},
                        headers=tenant.basic,
                    )
                    text = assert_error(reply, 400, "BAD_REQUEST", mentions=field)
                    assert "loopback" in text or "non-public" in text, text
    assert await count(database, Action) == 0


async def test_without_the_allow_flag_public_callback_urls_still_work(
    strict_client: httpx.AsyncClient, tenant: Tenant, number_key: str
) -> None:
    body = {**REFERENCE_ACTION, "callbackUrl": "https://93.184.216.34/cb"}
    reply = await strict_client.post(
        f"/numbers/1/numbers/{number_key}/actions", json=body, headers=tenant.basic
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["callbackUrl"] == "https://93.184.216.34/cb"


async def test_the_tata_dialect_type_is_accepted_and_status_url_is_optional(
    client: httpx.AsyncClient, tenant: Tenant, number_key: str
) -> None:
    body = {"type": "ANONYMIZE", "callbackUrl": "https://client.server/users-api"}
    reply = await client.post(
        f"/numbers/1/numbers/{number_key}/actions", json=body, headers=tenant.basic
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["type"] == "ANONYMIZE"
    assert reply.json()["statusUrl"] is None
    assert await _actions(client, tenant, number_key) == [reply.json()]


async def test_a_second_action_on_a_number_is_refused_and_the_first_stays(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, number_key: str
) -> None:
    first = await client.post(
        f"/numbers/1/numbers/{number_key}/actions", json=REFERENCE_ACTION, headers=tenant.basic
    )
    assert first.status_code == 200, first.text
    other = {"type": "ANONYMIZE", "callbackUrl": "http://elsewhere.example/cb"}
    for path in ("actions", "action"):
        reply = await client.post(
            f"/numbers/1/numbers/{number_key}/{path}", json=other, headers=tenant.basic
        )
        text = assert_error(reply, 409, "CONFLICT")
        assert first.json()["actionKey"] in text  # tells the customer what to delete
    assert await _actions(client, tenant, number_key) == [first.json()]
    assert await count(database, Action) == 1


async def test_delete_then_create_replaces_an_action(
    client: httpx.AsyncClient, tenant: Tenant, number_key: str
) -> None:
    base = f"/numbers/1/numbers/{number_key}/actions"
    first = (await client.post(base, json=REFERENCE_ACTION, headers=tenant.basic)).json()
    reply = await client.delete(f"{base}/{first['actionKey']}", headers=tenant.basic)
    assert reply.status_code == 204
    other = {"type": "ANONYMIZE", "callbackUrl": "http://elsewhere.example/cb"}
    second = await client.post(base, json=other, headers=tenant.basic)
    assert second.status_code == 200, second.text
    assert await _actions(client, tenant, number_key) == [second.json()]


async def test_an_action_on_a_number_the_customer_did_not_buy_is_not_found(
    client: httpx.AsyncClient, database: Database, tenant: Tenant
) -> None:
    [available] = await stock(database, "+41793026732")
    for number_key in (available, "6FED0BC540BFADD9B05ED7D89AAC22FA"):
        reply = await client.post(
            f"/numbers/1/numbers/{number_key}/actions", json=REFERENCE_ACTION, headers=tenant.basic
        )
        assert_error(reply, 404, "NOT_FOUND", mentions=number_key)
        reply = await client.get(f"/numbers/1/numbers/{number_key}/actions", headers=tenant.basic)
        assert_error(reply, 404, "NOT_FOUND")
    assert await count(database, Action) == 0


async def test_deleting_an_action_that_does_not_exist_is_not_found(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, number_key: str
) -> None:
    base = f"/numbers/1/numbers/{number_key}/actions"
    action = (await client.post(base, json=REFERENCE_ACTION, headers=tenant.basic)).json()
    [second_number] = await stock(database, "+41793026732", account_id=tenant.account_id)
    for path in (
        f"{base}/6FED0BC540BFADD9BD89AAC22FA",
        # The right actionKey under the wrong number of the same account.
        f"/numbers/1/numbers/{second_number}/actions/{action['actionKey']}",
    ):
        reply = await client.delete(path, headers=tenant.basic)
        assert_error(reply, 404, "NOT_FOUND")
    assert await _actions(client, tenant, number_key) == [action]
    # Deleting twice: the second is a 404, not a second 204.
    assert (
        await client.delete(f"{base}/{action['actionKey']}", headers=tenant.basic)
    ).status_code == 204
    assert_error(
        await client.delete(f"{base}/{action['actionKey']}", headers=tenant.basic), 404, "NOT_FOUND"
    )


@pytest.mark.parametrize(
    "content",
    [
        b'{"type": "VOICE_NUMBER_MASKING", "callbackUrl": ',
        b"type=VOICE_NUMBER_MASKING",
        b"\xff\xfe",
        b'["VOICE_NUMBER_MASKING"]',
        b'"VOICE_NUMBER_MASKING"',
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_bad_request(
    client: httpx.AsyncClient,
    database: Database,
    tenant: Tenant,
    number_key: str,
    content: bytes,
) -> None:
    reply = await client.post(
        f"/numbers/1/numbers/{number_key}/actions",
        content=content,
        headers={**tenant.basic, "Content-Type": "application/json"},
    )
    assert_error(reply, 400, "BAD_REQUEST")
    assert await count(database, Action) == 0
