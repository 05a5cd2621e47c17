"""The account's Tata webhook URL (``/v1/webhook`` and the operator's
``/admin/accounts/{id}/webhook``), where call details with ``custom_identifier`` go."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from callmask.node import node_app
from callmask.store.database import Database
from tests.conftest import ADMIN_KEY, Tenant, make_settings
from tests.tata.conftest import assert_failure, tata

ADMIN = {"Authorization": f"App {ADMIN_KEY}"}


async def test_an_account_sets_reads_and_clears_its_webhook(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert (await client.get("/v1/webhook", headers=tata(tenant))).json() == {
        "success": True,
        "url": None,
    }
    reply = await client.put(
        "/v1/webhook", json={"url": "https://crm.example.com/calls"}, headers=tata(tenant)
    )
    assert reply.json() == {
        "success": True,
        "message": "Webhook updated",
        "url": "https://crm.example.com/calls",
    }
    assert (await client.get("/v1/webhook", headers=tata(tenant))).json()["url"] == (
        "https://crm.example.com/calls"
    )
    assert (await client.get("/v1/webhook", headers=tata(other_tenant))).json()["url"] is None
    reply = await client.delete("/v1/webhook", headers=tata(tenant))
    assert reply.json() == {"success": True, "message": "Webhook removed", "url": None}
    assert (await client.get("/v1/webhook", headers=tata(tenant))).json()["url"] is None


@pytest.mark.parametrize(
    "url", ["ftp://crm.example.com/x", "not a url", "https://user:pw@crm.example.com/"]
)
async def test_a_bad_webhook_url_is_refused_and_the_old_one_kept(
    client: httpx.AsyncClient, tenant: Tenant, url: str
) -> None:
    await client.put("/v1/webhook", json={"url": "https://a.example/"}, headers=tata(tenant))
    assert_failure(await client.put("/v1/webhook", json={"url": url}, headers=tata(tenant)), 400)
    assert (await client.get("/v1/webhook", headers=tata(tenant))).json()["url"] == (
        "https://a.example/"
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_webhook_into_the_operators_network_is_refused_without_the_allow_flag(
    tmp_path: Path, db_url: str, database: Database, tenant: Tenant
) -> None:
    app = node_app(make_settings(tmp_path, db_url, webhook_allow_private=False), database=database)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://callmask.test"
        ) as http,
    ):
        for url in ("http://127.0.0.1:8080/x", "http://169.254.169.254/", "http://10.0.0.1/"):
            reply = await http.put("/v1/webhook", json={"url": url}, headers=tata(tenant))
            assert_failure(reply, 400)
        assert (await http.get("/v1/webhook", headers=tata(tenant))).json()["url"] is None


async def test_the_operator_sets_an_accounts_webhook(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    path = f"/admin/accounts/{tenant.account_id}/webhook"
    reply = await client.put(path, json={"url": "https://crm.example.com/"}, headers=ADMIN)
    assert reply.status_code == 200, reply.text
    assert (await client.get("/v1/webhook", headers=tata(tenant))).json()["url"] == (
        "https://crm.example.com/"
    )
    assert (await client.get(path, headers=ADMIN)).json()["url"] == "https://crm.example.com/"
    assert (await client.delete(path, headers=ADMIN)).json()["url"] is None
    assert (await client.get("/v1/webhook", headers=tata(tenant))).json()["url"] is None


async def test_the_operator_webhook_routes_need_the_operator_key_and_a_real_account(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    path = f"/admin/accounts/{tenant.account_id}/webhook"
    reply = await client.put(path, json={"url": "https://x.example/"}, headers=tata(tenant))
    assert reply.status_code == 401
    reply = await client.put(
        "/admin/accounts/nosuchaccount/webhook", json={"url": "https://x.example/"}, headers=ADMIN
    )
    assert reply.status_code == 404
    assert reply.json()["requestError"]["serviceException"]["messageId"] == "NOT_FOUND"
    assert (await client.get("/v1/webhook", headers=tata(tenant))).json()["url"] is None
