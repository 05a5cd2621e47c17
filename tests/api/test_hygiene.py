"""API hygiene: unknown routes, wrong methods, malformed bodies and oversized requests
all answer in the Infobip error shape; /healthz and the OpenAPI docs are served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from callmask.config import Settings
from callmask.node import node_app
from callmask.store.database import Database
from callmask.store.models import Action, AudioFile
from tests.api.infobip import REFERENCE_ACTION, REFERENCE_DID, assert_error, count, owner_of, stock
from tests.conftest import ADMIN_KEY, Tenant, create_tenant, make_settings
from tests.support.receiver import free_port, serve_app


async def test_the_health_check_answers_without_credentials(client: httpx.AsyncClient) -> None:
    reply = await client.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


async def test_the_api_documents_itself(client: httpx.AsyncClient) -> None:
    reply = await client.get("/docs")
    assert reply.status_code == 200
    assert "swagger" in reply.text.lower()
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/numbers/1/numbers/available",
        "/numbers/1/numbers",
        "/numbers/1/numbers/{number_key}",
        "/numbers/1/numbers/{number_key}/actions",
        "/numbers/1/numbers/{number_key}/actions/{action_key}",
        "/numbers/1/files",
    ):
        assert path in paths, sorted(paths)


@pytest.mark.parametrize(
    "path", ["/", "/numbers/2/numbers", "/numbers/1/nothing", "/numbers/1/numbers/a/b/c/d"]
)
async def test_an_unknown_route_is_a_404_in_infobip_shape(
    client: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    assert_error(await client.get(path, headers=tenant.basic), 404, "NOT_FOUND")
    assert_error(await client.get(path), 404, "NOT_FOUND")


async def test_a_wrong_method_is_a_405_in_infobip_shape(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    reply = await client.put("/numbers/1/files", json={}, headers=tenant.basic)
    assert_error(reply, 405, "METHOD_NOT_ALLOWED")
    # RFC 9110, 15.5.6: a 405 names the methods the resource does support.
    assert "POST" in reply.headers["allow"]


@pytest.mark.parametrize(
    "path",
    ["/numbers/1/numbers", "/numbers/1/files", "/numbers/1/numbers/{key}/actions"],
)
async def test_malformed_json_is_a_400_and_changes_nothing(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, path: str
) -> None:
    [number_key] = await stock(database, REFERENCE_DID, account_id=tenant.account_id)
    reply = await client.post(
        path.format(key=number_key),
        content=b'{"type": "VOICE_NUMBER_MASKING",,}',
        headers={**tenant.basic, "Content-Type": "application/json"},
    )
    assert_error(reply, 400, "BAD_REQUEST")
    assert await count(database, Action) == 0
    assert await count(database, AudioFile) == 0


async def test_a_body_over_the_request_cap_is_a_413(
    client: httpx.AsyncClient, database: Database, settings: Settings, tenant: Tenant
) -> None:
    cap = settings.max_request_bytes
    body = b'{"content": "' + b"A" * cap + b'"}'
    reply = await client.post(
        "/numbers/1/files",
        content=body,
        headers={**tenant.basic, "Content-Type": "application/json"},
    )
    assert_error(reply, 413, "PAYLOAD_TOO_LARGE", mentions=str(cap))
    assert await count(database, AudioFile) == 0


async def test_a_chunked_body_over_the_request_cap_is_a_413(
    client: httpx.AsyncClient, database: Database, settings: Settings, tenant: Tenant
) -> None:
    # No Content-Length: the cap must hold while the body streams in.
    cap = settings.max_request_bytes
    chunk = b"A" * 65536

    async def stream() -> AsyncIterator[bytes]:
        yield b'{"content": "'
        for _ in range(cap // len(chunk) + 2):
            yield chunk
        yield b'"}'

    reply = await client.post(
        "/numbers/1/files",
        content=stream(),
        headers={**tenant.basic, "Content-Type": "application/json"},
    )
    assert "content-length" not in reply.request.headers
    assert_error(reply, 413, "PAYLOAD_TOO_LARGE", mentions=str(cap))
    assert await count(database, AudioFile) == 0


async def test_a_chunked_body_under_the_cap_is_read_normally(
    client: httpx.AsyncClient, database: Database, tenant: Tenant
) -> None:
    [number_key] = await stock(database, REFERENCE_DID)

    async def stream() -> AsyncIterator[bytes]:
        yield b'{"numberKey": '
        yield f'"{number_key}"}}'.encode()

    reply = await client.post(
        "/numbers/1/numbers",
        content=stream(),
        headers={**tenant.basic, "Content-Type": "application/json"},
    )
    assert reply.status_code == 200, reply.text
    assert await owner_of(database, number_key) == tenant.account_id


async def test_numbers_queries_with_bad_parameters_are_400s(
    client: httpx.AsyncClient, tenant: Tenant, subtests: pytest.Subtests
) -> None:
    for query in (
        "limit=0",
        "limit=1001",
        "limit=ten",
        "page=-1",
        "number=41abc",
        "country=CHE",
        "country=C%00",
        "country=1A",
    ):
        with subtests.test(msg=query):
            reply = await client.get(f"/numbers/1/numbers/available?{query}", headers=tenant.basic)
            assert_error(reply, 400, "BAD_REQUEST", mentions=query.split("=")[0])


async def test_available_numbers_are_filtered_and_paged(
    client: httpx.AsyncClient, database: Database, tenant: Tenant
) -> None:
    keys = await stock(database, "+41793026731", "+41793026732", "+919876543210", "+12025550143")
    await stock(database, "+41793026733", account_id=tenant.account_id)  # bought: not offered

    async def available(**params: Any) -> Any:
        reply = await client.get(
            "/numbers/1/numbers/available", params=params, headers=tenant.basic
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    everything = await available()
    assert everything["numberCount"] == 4
    assert sorted(n["numberKey"] for n in everything["numbers"]) == sorted(keys)
    swiss = await available(country="ch")
    assert [n["number"] for n in swiss["numbers"]] == ["41793026731", "41793026732"]
    assert (await available(number="+91"))["numberCount"] == 1
    assert (await available(number="302673"))["numberCount"] == 2
    page = await available(limit=3, page=1)
    assert page["numberCount"] == 4
    assert len(page["numbers"]) == 1


async def test_purchase_needs_a_number_key_of_an_available_number(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for body in ({}, {"numberKey": ""}, {"numberKey": None}):
        reply = await client.post("/numbers/1/numbers", json=body, headers=tenant.basic)
        assert_error(reply, 400, "BAD_REQUEST", mentions="numberKey")
    reply = await client.post(
        "/numbers/1/numbers",
        json={"numberKey": "6FED0BC540BFADD9B05ED7D89AAC22FA"},
        headers=tenant.basic,
    )
    assert_error(reply, 404, "NOT_FOUND")


async def test_a_real_server_answers_413_to_an_oversized_upload_while_it_streams(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, sqlite_url, max_request_bytes=100_000)
    database = Database(sqlite_url)
    try:
        tenant = await create_tenant(database)
        port = free_port()

        async def stream() -> AsyncIterator[bytes]:
            yield b'{"content": "'
            for _ in range(40):  # 40 x 64 KiB: well past the 100 kB cap
                yield b"A" * 65536
            yield b'"}'

        async with (
            serve_app(node_app(settings, database=database), port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
        ):
            for content in (stream(), b'{"content": "' + b"A" * 200_000 + b'"}'):
                reply = await http.post(
                    "/numbers/1/files",
                    content=content,
                    headers={**tenant.basic, "Content-Type": "application/json"},
                )
                assert_error(reply, 413, "PAYLOAD_TOO_LARGE", mentions="100000")
            # The server is still fine afterwards.
            assert (await http.get("/healthz")).status_code == 200
        assert await count(database, AudioFile) == 0
    finally:
        await database.close()


async def test_a_key_that_cannot_name_anything_is_a_400_not_a_server_error(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, subtests: pytest.Subtests
) -> None:
    # PostgreSQL refuses NUL characters with an error of its own; such a key must be
    # turned away before any query, on every route that takes a key.
    [number_key] = await stock(database, REFERENCE_DID, account_id=tenant.account_id)
    operator = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for junk in ("%00abc", "abc%00", "a%20b", "x" * 65):
        requests: list[tuple[str, str, Any, dict[str, str]]] = [
            ("GET", f"/numbers/1/numbers/{junk}", None, tenant.basic),
            ("DELETE", f"/numbers/1/numbers/{junk}", None, tenant.basic),
            ("GET", f"/numbers/1/numbers/{junk}/actions", None, tenant.basic),
            ("POST", f"/numbers/1/numbers/{junk}/actions", REFERENCE_ACTION, tenant.basic),
            ("POST", f"/numbers/1/numbers/{junk}/action", REFERENCE_ACTION, tenant.basic),
            ("DELETE", f"/numbers/1/numbers/{number_key}/actions/{junk}", None, tenant.basic),
            ("GET", f"/numbers/1/files/{junk}", None, tenant.basic),
            ("DELETE", f"/numbers/1/files/{junk}", None, tenant.basic),
        ]
        raw = unquote(junk)
        requests += [
            ("POST", "/numbers/1/numbers", {"numberKey": raw}, tenant.basic),
            ("POST", "/admin/numbers", {"numbers": [REFERENCE_DID], "accountId": raw}, operator),
        ]
        for method, path, body, headers in requests:
            with subtests.test(msg=f"{method} {path} {body}"):
                reply = await client.request(method, path, json=body, headers=headers)
                assert_error(reply, 400, "BAD_REQUEST")
    assert await owner_of(database, number_key) == tenant.account_id
    assert await count(database, Action) == 0
