"""Acceptance (issue 12, item 5): the official ``plivo`` package, pointed at a running
callmask (uvicorn on a loopback port) the way a Plivo user points it, creates, gets,
updates, lists with filters and deletes masking sessions; both parties share the
virtual number in the store; bad input raises the SDK's own ValidationError and changes
nothing; another account's session is ResourceNotFoundError. On SQLite and PostgreSQL.

The SDK is pointed at callmask as its own source allows (plivo 4.63.0,
``plivo/rest/client.py``): every masking-session request is a voice request, whose
base URI ``Client.request`` takes from the module constant ``API_VOICE_BASE_URI`` (and,
after a 5xx, from ``API_VOICE_BASE_URI_FALLBACK_1`` / ``_2``), so those three are
patched, with ``PLIVO_API_BASE_URI`` for the client's initial value. The SDK is
synchronous (requests), so its calls run in a thread while uvicorn serves on the
test's event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from plivo.exceptions import AuthenticationError, ResourceNotFoundError, ValidationError
from plivo.rest import client as rest_client
from plivo.rest.client import Client

from callmask.node import node_app
from callmask.store.database import Database
from tests.conftest import Tenant, create_tenant, make_settings
from tests.plivo.conftest import auth_id, census, plivo_pool, stored
from tests.support.receiver import free_port, serve_app

POOL = ("+41793026801", "+41793026802")
CUSTOMER = "+41793026811"
AGENT = "+41793026812"
OTHER_AGENT = "+41793026813"

T = TypeVar("T")


async def sdk(call: Callable[[], T]) -> T:
    """One SDK call, off the event loop that serves it."""
    return await asyncio.to_thread(call)


def point_the_sdk_at(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    accounts = f"{base_url}/plivo/v1/Account"
    for name in (
        "PLIVO_API_BASE_URI",
        "API_VOICE_BASE_URI",
        "API_VOICE_BASE_URI_FALLBACK_1",
        "API_VOICE_BASE_URI_FALLBACK_2",
    ):
        monkeypatch.setattr(rest_client, name, accounts)


@pytest.fixture
async def served(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, Database, Tenant]]:
    for name in ("PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    database = Database(db_url)
    try:
        tenant = await create_tenant(database, "clinic")
        port = free_port()
        async with serve_app(node_app(make_settings(tmp_path, db_url), database=database), port):
            base_url = f"http://127.0.0.1:{port}"
            point_the_sdk_at(base_url, monkeypatch)
            yield base_url, database, tenant
    finally:
        await database.close()


def client_of(tenant: Tenant) -> Client:
    return Client(auth_id(tenant), tenant.api_key, timeout=10)


async def test_the_plivo_sdk_runs_masking_sessions_against_callmask(
    served: tuple[str, Database, Tenant],
) -> None:
    base_url, database, tenant = served
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await plivo_pool(http, tenant, *POOL)
    client = client_of(tenant)
    masking = client.masking_sessions

    created: Any = await sdk(
        lambda: masking.create_masking_session(
            first_party=CUSTOMER.removeprefix("+"),
            second_party=AGENT,
            session_expiry=900,
            call_time_limit=600,
            record_file_format="wav",
            callback_url="https://clinic.example.com/plivo/events",
            callback_method="POST",
            ring_timeout=30,
        )
    )
    assert created.message == "Session created"
    assert created.virtual_number in POOL
    uuid_text = created.session_uuid
    assert created.session.session_uuid == uuid_text
    assert created.session.virtual_number == created.virtual_number.removeprefix("+")
    assert created.session.status == "active"
    assert (created.session.duration, created.session.call_time_limit) == (900, 600)

    # The store: a callmask session whose two participants share the virtual number.
    row, participants = await stored(database, uuid_text)
    assert row.call_time_limit_s == 600
    assert {(p.identifier, p.proxy_identifier) for p in participants} == {
        (CUSTOMER, created.virtual_number),
        (AGENT, created.virtual_number),
    }

    got: Any = await sdk(lambda: masking.get_masking_session(uuid_text))
    assert got.response.session_uuid == uuid_text
    assert (got.response.first_party, got.response.second_party) == (CUSTOMER[1:], AGENT[1:])
    assert got.response.record_file_format == "wav"
    assert got.response.callback_url == "https://clinic.example.com/plivo/events"

    updated: Any = await sdk(
        lambda: masking.update_masking_session(
            session_uuid=uuid_text, session_expiry=1800, call_time_limit=1200, ring_timeout=60
        )
    )
    assert updated.message == "Session updated"
    assert (updated.session.duration, updated.session.call_time_limit) == (1800, 1200)
    assert updated.session.ring_timeout == 60

    second: Any = await sdk(
        lambda: masking.create_masking_session(first_party=CUSTOMER, second_party=OTHER_AGENT)
    )
    assert second.virtual_number != created.virtual_number, "the customer holds each once"

    listed: Any = await sdk(lambda: masking.list_masking_session())
    assert listed.response.meta.total_count == 2
    assert [o.session_uuid for o in listed.response.objects] == [second.session_uuid, uuid_text]
    by_agent: Any = await sdk(lambda: masking.list_masking_session(second_party=AGENT))
    assert [o.session_uuid for o in by_agent.response.objects] == [uuid_text]
    by_number: Any = await sdk(
        lambda: masking.list_masking_session(virtual_number=second.virtual_number)
    )
    assert [o.session_uuid for o in by_number.response.objects] == [second.session_uuid]
    longer: Any = await sdk(
        lambda: masking.list_masking_session(duration__gte=3600, status="active")
    )
    assert [o.session_uuid for o in longer.response.objects] == [second.session_uuid]
    since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=5)
    recent: Any = await sdk(
        lambda: masking.list_masking_session(created_time__gte=since.strftime("%Y-%m-%d %H:%M"))
    )
    assert recent.response.meta.total_count == 2
    one: Any = await sdk(lambda: masking.list_masking_session(limit=1))
    assert one.response.meta.next.endswith("limit=1&offset=1")
    assert len(one.response.objects) == 1

    deleted: Any = await sdk(lambda: masking.delete_masking_session(uuid_text))
    assert deleted.message == "Session Deleted"
    after: Any = await sdk(lambda: masking.get_masking_session(uuid_text))
    assert after.response.status == "expired"
    expired: Any = await sdk(lambda: masking.list_masking_session(status="expired"))
    assert [o.session_uuid for o in expired.response.objects] == [uuid_text]
    _, participants = await stored(database, uuid_text)
    assert not any(p.active for p in participants), "its number is free again"


@pytest.mark.parametrize(
    "extra",
    [
        {"first_party_pin": "123", "second_party_pin": "4567"},
        {"first_party_pin": "1234", "second_party_pin": "1234"},
        {"record_file_format": "ogg"},
        {"pin_retry": 6},
        {"second_party": "+1 not a number"},
        {"record": True, "recording_callback_method": "GET"},
    ],
)
async def test_bad_input_raises_the_sdks_validation_error_and_writes_nothing(
    served: tuple[str, Database, Tenant], extra: dict[str, Any]
) -> None:
    base_url, database, tenant = served
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await plivo_pool(http, tenant, *POOL)
    masking = client_of(tenant).masking_sessions
    before = await census(database)
    arguments = {"first_party": CUSTOMER, "second_party": AGENT, **extra}
    with pytest.raises(ValidationError) as raised:
        await sdk(lambda: masking.create_masking_session(**arguments))
    assert str(raised.value), "the SDK carries Plivo's error text"
    assert await census(database) == before


async def test_another_accounts_session_is_resource_not_found(
    served: tuple[str, Database, Tenant],
) -> None:
    base_url, database, tenant = served
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await plivo_pool(http, tenant, *POOL)
    other = await create_tenant(database, "rival")
    created: Any = await sdk(
        lambda: client_of(tenant).masking_sessions.create_masking_session(
            first_party=CUSTOMER, second_party=AGENT
        )
    )
    theirs = client_of(other).masking_sessions
    for attempt in (
        lambda: theirs.get_masking_session(created.session_uuid),
        lambda: theirs.update_masking_session(created.session_uuid, call_time_limit=5),
        lambda: theirs.delete_masking_session(created.session_uuid),
    ):
        with pytest.raises(ResourceNotFoundError):
            await sdk(attempt)
    row, _ = await stored(database, created.session_uuid)
    assert (row.status, row.call_time_limit_s) == ("open", 3600)
    wrong = Client(auth_id(tenant), "not-the-token", timeout=10)
    with pytest.raises(AuthenticationError):
        await sdk(lambda: wrong.masking_sessions.get_masking_session(created.session_uuid))
