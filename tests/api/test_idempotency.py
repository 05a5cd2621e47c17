"""Idempotency-Key on POSTs: a client that retries after a lost answer gets the first
answer and the work is done once, on SQLite and on PostgreSQL, across a restart, per
account; misuse of a key is refused in the dialect's error shape and changes nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from starlette.middleware import Middleware

from callmask.api.deps import CurrentAccount
from callmask.api.idempotency import IdempotencyKeys
from callmask.config import Settings
from callmask.node import node_app
from callmask.store.database import Database
from callmask.store.models import (
    Account,
    Action,
    IdempotentRequest,
    TataAgent,
    TataLeadList,
    utcnow,
)
from tests.api.infobip import REFERENCE_ACTION, assert_error, assert_tata_error, count, stock
from tests.conftest import ADMIN_KEY, Tenant

DIDS = ["+41793026731", "+41793026732", "+41793026733", "+41793026734", "+41793026735"]
OTHER_DID = "+41793026739"
AGENT = {"name": "Test Agent", "follow_me_number": "+919876543210"}


def actions_path(number_key: str) -> str:
    return f"/numbers/1/numbers/{number_key}/actions"


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def tata(tenant: Tenant, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": tenant.api_key}
    return headers if key is None else keyed(headers, key)


async def rows(database: Database) -> list[IdempotentRequest]:
    async with database.session() as session:
        return list((await session.scalars(select(IdempotentRequest))).all())


def assert_replay_of(first: httpx.Response, retry: httpx.Response) -> None:
    assert "idempotent-replayed" not in first.headers
    assert retry.headers.get("idempotent-replayed") == "true"
    assert retry.status_code == first.status_code
    assert retry.content == first.content
    assert retry.headers["content-type"] == first.headers["content-type"]
    assert retry.headers["content-length"] == first.headers["content-length"]


@dataclass
class Clock:
    now: dt.datetime = field(default_factory=utcnow)

    def __call__(self) -> dt.datetime:
        return self.now


def with_idempotency(application: FastAPI, **options: Any) -> None:
    """Give the app's IdempotencyKeys middleware other options (a clock, a smaller
    answer limit) before its first request builds the middleware stack."""
    assert application.middleware_stack is None, "set options before the first request"
    [index] = [
        i
        for i, m in enumerate(application.user_middleware)
        if m.cls == IdempotencyKeys  # type: ignore[comparison-overlap]
    ]
    application.user_middleware[index] = Middleware(IdempotencyKeys, **options)


@pytest.fixture
async def number_key(database: Database, tenant: Tenant) -> str:
    [key] = await stock(database, DIDS[0], account_id=tenant.account_id)
    return key


async def test_a_retried_infobip_action_create_gets_the_first_answer_and_one_action(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, number_key: str
) -> None:
    headers = keyed(tenant.basic, "create-action-1")
    first = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=headers)
    assert first.status_code == 200, first.text
    for _ in range(2):
        retry = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=headers)
        assert_replay_of(first, retry)
    assert await count(database, Action) == 1
    [row] = await rows(database)
    assert (row.scope, row.key, row.status_code) == (tenant.account_id, "create-action-1", 200)


async def test_a_retried_tata_post_gets_the_first_answer_and_one_agent(
    client: httpx.AsyncClient, database: Database, tenant: Tenant
) -> None:
    first = await client.post("/v1/agent", json=AGENT, headers=tata(tenant, "agent-1"))
    assert first.status_code == 200, first.text
    retry = await client.post("/v1/agent", json=AGENT, headers=tata(tenant, "agent-1"))
    assert_replay_of(first, retry)
    assert retry.json()["agent_id"] == first.json()["agent_id"]
    assert await count(database, TataAgent) == 1


async def test_the_operator_key_is_its_own_scope(
    client: httpx.AsyncClient, database: Database, tenant: Tenant
) -> None:
    headers = {"Authorization": f"App {ADMIN_KEY}", "Idempotency-Key": "new-account"}
    first = await client.post("/admin/accounts", json={"name": "initech"}, headers=headers)
    assert first.status_code == 200, first.text
    retry = await client.post("/admin/accounts", json={"name": "initech"}, headers=headers)
    assert_replay_of(first, retry)
    assert await count(database, Account) == 2  # the tenant's and initech
    [row] = await rows(database)
    assert row.scope == "operator"


async def test_the_same_key_with_another_body_or_path_is_422_and_changes_nothing(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, number_key: str
) -> None:
    headers = keyed(tenant.basic, "action")
    first = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=headers)
    assert first.status_code == 200, first.text
    other_body = {**REFERENCE_ACTION, "statusUrl": "http://client.server/2/status"}
    reply = await client.post(actions_path(number_key), json=other_body, headers=headers)
    assert_error(reply, 422, "BAD_REQUEST", mentions="another request body")
    # The reference's own alias of the same route is another target all the same.
    alias = f"/numbers/1/numbers/{number_key}/action"
    reply = await client.post(alias, json=REFERENCE_ACTION, headers=headers)
    used_for = f"was used for POST {actions_path(number_key)}"
    assert_error(reply, 422, "BAD_REQUEST", mentions=used_for)
    [action] = (await client.get(actions_path(number_key), headers=tenant.basic)).json()["actions"]
    assert action == first.json()
    assert await count(database, Action) == 1
    # The first answer is still what a true retry gets.
    retry = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=headers)
    assert_replay_of(first, retry)

    # Tata clients get Tata's error body.
    assert (await client.post("/v1/agent", json=AGENT, headers=tata(tenant, "a"))).is_success
    other_agent = {**AGENT, "name": "Another Agent"}
    reply = await client.post("/v1/agent", json=other_agent, headers=tata(tenant, "a"))
    assert "another request body" in assert_tata_error(reply, 422)
    assert await count(database, TataAgent) == 1


async def test_concurrent_duplicates_run_once(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, subtests: pytest.Subtests
) -> None:
    number_keys = await stock(database, *DIDS, account_id=tenant.account_id)
    for round_, number_key in enumerate(number_keys):
        with subtests.test(round=round_):
            headers = keyed(tenant.basic, f"concurrent-{round_}")
            replies = await asyncio.gather(
                *(
                    client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=headers)
                    for _ in range(2)
                )
            )
            [first] = [
                r
                for r in replies
                if r.status_code == 200 and not r.headers.get("idempotent-replayed")
            ]
            [other] = [r for r in replies if r is not first]
            if other.status_code == 409:
                assert_error(other, 409, "CONFLICT", mentions="still being answered")
                assert other.headers["retry-after"] == "1"
            else:
                assert_replay_of(first, other)
            async with database.session() as session:
                actions = await session.scalars(
                    select(Action).where(Action.number_key == number_key)
                )
                assert len(actions.all()) == 1


async def test_two_accounts_with_the_same_key_are_independent(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    [mine] = await stock(database, DIDS[0], account_id=tenant.account_id)
    [theirs] = await stock(database, OTHER_DID, account_id=other_tenant.account_id)
    first_mine = await client.post(
        actions_path(mine), json=REFERENCE_ACTION, headers=keyed(tenant.basic, "shared")
    )
    first_theirs = await client.post(
        actions_path(theirs), json=REFERENCE_ACTION, headers=keyed(other_tenant.basic, "shared")
    )
    assert first_mine.status_code == first_theirs.status_code == 200
    assert "idempotent-replayed" not in first_theirs.headers
    assert first_mine.json()["actionKey"] != first_theirs.json()["actionKey"]
    # The other account replaying my exact request is not my answer: the route runs
    # for them, and my number is not theirs.
    reply = await client.post(
        actions_path(mine), json=REFERENCE_ACTION, headers=keyed(other_tenant.basic, "again")
    )
    assert_error(reply, 404, "NOT_FOUND")
    retry_mine = await client.post(
        actions_path(mine), json=REFERENCE_ACTION, headers=keyed(tenant.app_key, "shared")
    )
    assert_replay_of(first_mine, retry_mine)
    retry_theirs = await client.post(
        actions_path(theirs), json=REFERENCE_ACTION, headers=keyed(other_tenant.basic, "shared")
    )
    assert_replay_of(first_theirs, retry_theirs)
    assert await count(database, Action) == 2
    scopes = sorted((row.scope, row.key) for row in await rows(database))
    assert scopes == sorted(
        [
            (tenant.account_id, "shared"),
            (other_tenant.account_id, "shared"),
            (other_tenant.account_id, "again"),
        ]
    )


async def test_a_key_survives_a_restart_on_the_same_database(
    client: httpx.AsyncClient, database: Database, settings: Settings, tenant: Tenant
) -> None:
    first = await client.post("/v1/broadcast/lists", json={"name": "x"}, headers=tata(tenant, "k"))
    assert first.status_code == 200, first.text
    # Another node (or this one restarted): its own app and its own store connections.
    restarted_database = Database(settings.effective_database_url)
    application = node_app(settings, database=restarted_database)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://node2") as other:
                retry = await other.post(
                    "/v1/broadcast/lists", json={"name": "x"}, headers=tata(tenant, "k")
                )
    finally:
        await restarted_database.close()
    assert_replay_of(first, retry)
    assert await count(database, TataLeadList) == 1


@pytest.fixture
async def clocked(
    settings: Settings, database: Database
) -> AsyncIterator[tuple[httpx.AsyncClient, Clock]]:
    clock = Clock()
    application = node_app(settings, database=database)
    with_idempotency(application, clock=clock)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://callmask.test") as c:
            yield c, clock


async def test_a_key_expires_after_24_hours(
    clocked: tuple[httpx.AsyncClient, Clock], database: Database, tenant: Tenant
) -> None:
    client, clock = clocked

    async def post_list() -> httpx.Response:
        return await client.post(
            "/v1/broadcast/lists", json={"name": "daily"}, headers=tata(tenant, "daily")
        )

    first = await post_list()
    assert first.status_code == 200, first.text
    clock.now += dt.timedelta(hours=23, minutes=59)
    retry = await post_list()
    assert_replay_of(first, retry)
    assert await count(database, TataLeadList) == 1
    clock.now += dt.timedelta(minutes=2)
    again = await post_list()
    assert again.status_code == 200, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["lead_list_id"] != first.json()["lead_list_id"]
    assert await count(database, TataLeadList) == 2
    [row] = await rows(database)  # the expired row was replaced
    assert row.response_body == again.content


async def test_rows_older_than_24_hours_are_purged(
    client: httpx.AsyncClient, database: Database, settings: Settings, tenant: Tenant
) -> None:
    for key in ("old", "recent"):
        reply = await client.post("/v1/agent", json=AGENT, headers=tata(tenant, key))
        assert reply.status_code in (200, 409), reply.text
    async with database.session() as session:
        await session.execute(
            update(IdempotentRequest)
            .where(IdempotentRequest.key == "old")
            .values(created_at=utcnow() - dt.timedelta(hours=24, seconds=1))
        )
    # A fresh node sweeps at its first keyed POST.
    application = node_app(settings, database=database)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://node2") as other:
            reply = await other.post(
                "/v1/broadcast/lists", json={"name": "x"}, headers=tata(tenant, "new")
            )
            assert reply.status_code == 200, reply.text
    assert sorted(row.key for row in await rows(database)) == ["new", "recent"]


async def test_a_post_without_the_key_is_unchanged(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, number_key: str
) -> None:
    first = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=tenant.basic)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=tenant.basic)
    assert_error(again, 409, "CONFLICT")  # one action per number, as always
    assert "idempotent-replayed" not in again.headers
    assert await count(database, Action) == 1
    assert await rows(database) == []


async def test_a_5xx_leaves_no_row_and_a_retry_runs_again(
    client: httpx.AsyncClient, database: Database, tenant: Tenant
) -> None:
    # This node serves the API without calls: a hangup is 503, nothing was done.
    for _ in range(2):
        reply = await client.post(
            "/v1/call/hangup", json={"call_id": "1700000000.000001"}, headers=tata(tenant, "h")
        )
        assert_tata_error(reply, 503)
        assert "idempotent-replayed" not in reply.headers
        assert await rows(database) == []


async def test_an_exception_in_a_route_leaves_no_row(
    app: FastAPI, database: Database, tenant: Tenant
) -> None:
    calls = 0

    async def broken(account: CurrentAccount) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"broken for {account.id}")

    app.add_api_route("/numbers/1/broken", broken, methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://callmask.test") as client:
        for attempt in (1, 2):
            reply = await client.post(
                "/numbers/1/broken", json={}, headers=keyed(tenant.basic, "boom")
            )
            assert_error(reply, 500, "GENERAL_ERROR")
            assert calls == attempt  # the retry ran again
            assert await rows(database) == []


@pytest.mark.parametrize(
    "key",
    [b"", b"a" * 256, b"caf\xc3\xa9", b"tab\there"],
    ids=["empty", "256 chars", "not ascii", "control character"],
)
async def test_a_malformed_key_is_400_and_changes_nothing(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, number_key: str, key: bytes
) -> None:
    headers = [
        (b"Authorization", tenant.basic["Authorization"].encode()),
        (b"Idempotency-Key", key),
    ]
    reply = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=headers)
    assert_error(reply, 400, "BAD_REQUEST", mentions="Idempotency-Key")
    headers = [(b"Authorization", tenant.api_key.encode()), (b"Idempotency-Key", key)]
    reply = await client.post("/v1/agent", json=AGENT, headers=headers)
    assert "Idempotency-Key" in assert_tata_error(reply, 400)
    assert await count(database, Action) == 0
    assert await count(database, TataAgent) == 0
    assert await rows(database) == []


async def test_two_key_headers_are_400_and_a_255_character_key_works(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, number_key: str
) -> None:
    auth = ("Authorization", tenant.basic["Authorization"])
    reply = await client.post(
        actions_path(number_key),
        json=REFERENCE_ACTION,
        headers=[auth, ("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
    )
    assert_error(reply, 400, "BAD_REQUEST", mentions="one Idempotency-Key")
    longest = "~ " + "k" * 253
    headers = [auth, ("Idempotency-Key", longest)]
    first = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=headers)
    assert first.status_code == 200, first.text
    retry = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=headers)
    assert_replay_of(first, retry)


async def test_an_unauthenticated_keyed_post_is_the_routes_own_401(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, number_key: str
) -> None:
    for headers in (
        {"Idempotency-Key": "k"},
        {"Authorization": "App wrong-key", "Idempotency-Key": "k"},
        {"Authorization": "App wrong-key", "Idempotency-Key": "a" * 300},
    ):
        reply = await client.post(actions_path(number_key), json=REFERENCE_ACTION, headers=headers)
        assert_error(reply, 401, "UNAUTHORIZED")
    # A key of this account under another account id in Basic: the route's 401, and
    # the answer is not kept, so the corrected retry runs.
    wrong_id = Tenant("0000000000000000", tenant.api_key).basic
    reply = await client.post(
        actions_path(number_key), json=REFERENCE_ACTION, headers=keyed(wrong_id, "fix-me")
    )
    assert_error(reply, 401, "UNAUTHORIZED")
    assert await rows(database) == []
    reply = await client.post(
        actions_path(number_key), json=REFERENCE_ACTION, headers=keyed(tenant.basic, "fix-me")
    )
    assert reply.status_code == 200, reply.text
    assert "idempotent-replayed" not in reply.headers


async def test_an_answer_too_large_to_keep_is_not_run_again(
    settings: Settings, database: Database, tenant: Tenant
) -> None:
    application = node_app(settings, database=database)
    with_idempotency(application, max_stored_bytes=64)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://callmask.test") as c:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Idempotency-Key": "big"}
            body = {"numbers": DIDS, "accountId": tenant.account_id}
            first = await c.post("/admin/numbers", json=body, headers=headers)
            assert first.status_code == 200, first.text
            assert len(first.content) > 64
            retry = await c.post("/admin/numbers", json=body, headers=headers)
            assert_error(retry, 409, "CONFLICT", mentions="not run again")
            [row] = await rows(database)
            assert (row.status_code, row.response_body) == (200, None)


async def test_twilio_and_plivo_clients_get_their_own_error_bodies(
    client: httpx.AsyncClient, database: Database, tenant: Tenant
) -> None:
    # The middleware sees every path, whichever router answers it.
    services = "/twilio/v1/Services"
    reply = await client.post(
        services, data={"UniqueName": "a"}, headers=keyed(tenant.basic, "x" * 256)
    )
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert set(body) == {"code", "message", "more_info", "status"}, body
    assert (body["code"], body["status"]) == (20001, 400)
    assert "Idempotency-Key" in body["message"]
    headers = keyed(tenant.basic, "service")
    await client.post(services, data={"UniqueName": "a"}, headers=headers)
    reply = await client.post(services, data={"UniqueName": "b"}, headers=headers)
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert (body["code"], body["status"]) == (20001, 422)
    assert "another request body" in body["message"]

    sessions = "/plivo/v1/Account/MA0123456789ABCDEFGH/Masking/Session/"
    headers = keyed(tenant.basic, "session")
    await client.post(sessions, json={"first_party": "+919876543210"}, headers=headers)
    reply = await client.post(sessions, json={"first_party": "+919876500000"}, headers=headers)
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert set(body) == {"api_id", "error"}, body
    assert "another request body" in body["error"]
