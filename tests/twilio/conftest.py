"""Helpers of the Twilio Proxy API tests: DIDs bought the way a customer buys them (the
operator stocks them through ``/admin/numbers``, the account buys them through
``/numbers/1/numbers``), Twilio's Basic credentials, and the Twilio error body."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
from sqlalchemy import func, select

from callmask.store.database import Database
from callmask.store.models import (
    Base,
    PoolNumber,
    ProxyInteraction,
    ProxyParticipant,
    ProxyService,
    ProxySession,
)
from tests.conftest import ADMIN_KEY, Tenant

SERVICES = "/twilio/v1/Services"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SID = {prefix: re.compile(rf"{prefix}[0-9a-f]{{32}}") for prefix in ("KS", "KC", "KP", "PN", "KI")}
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

# Field sets of each resource, as twilio_proxy_v1.json lists them.
SERVICE_FIELDS = {
    "sid",
    "unique_name",
    "account_sid",
    "chat_instance_sid",
    "callback_url",
    "default_ttl",
    "number_selection_behavior",
    "geo_match_level",
    "intercept_callback_url",
    "out_of_session_callback_url",
    "date_created",
    "date_updated",
    "url",
    "links",
}
PHONE_NUMBER_FIELDS = {
    "sid",
    "account_sid",
    "service_sid",
    "date_created",
    "date_updated",
    "phone_number",
    "friendly_name",
    "iso_country",
    "capabilities",
    "url",
    "is_reserved",
    "in_use",
}
SESSION_FIELDS = {
    "sid",
    "service_sid",
    "account_sid",
    "date_started",
    "date_ended",
    "date_last_interaction",
    "date_expiry",
    "unique_name",
    "status",
    "closed_reason",
    "ttl",
    "mode",
    "date_created",
    "date_updated",
    "url",
    "links",
}
PARTICIPANT_FIELDS = {
    "sid",
    "session_sid",
    "service_sid",
    "account_sid",
    "friendly_name",
    "identifier",
    "proxy_identifier",
    "proxy_identifier_sid",
    "date_deleted",
    "date_created",
    "date_updated",
    "url",
    "links",
}
META_FIELDS = {
    "page",
    "page_size",
    "first_page_url",
    "previous_page_url",
    "next_page_url",
    "url",
    "key",
}


def basic(account_id: str, token: str) -> dict[str, str]:
    """The header twilio-python sends for ``Client(account_id, token)``."""
    encoded = base64.b64encode(f"{account_id}:{token}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def twilio_auth(tenant: Tenant) -> httpx.BasicAuth:
    return httpx.BasicAuth(tenant.account_id, tenant.api_key)


async def buy(client: httpx.AsyncClient, tenant: Tenant, *e164s: str) -> None:
    """The operator stocks the DIDs, the tenant buys them, both through the APIs."""
    stocked = await client.post(
        "/admin/numbers",
        json={"numbers": list(e164s)},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        auth=None,
    )
    assert stocked.status_code == 200, stocked.text
    for number in stocked.json():
        bought = await client.post(
            "/numbers/1/numbers",
            json={"numberKey": number["numberKey"]},
            headers=tenant.app_key,
            auth=None,
        )
        assert bought.status_code == 200, bought.text


def assert_twilio_error(
    reply: httpx.Response, status: int, code: int, *, mentions: str | None = None
) -> str:
    """``reply`` is Twilio's error body with this status and code; its message."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    body: Any = reply.json()
    assert set(body) == {"code", "message", "more_info", "status"}, body
    assert (body["code"], body["status"]) == (code, status), body
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}", body
    if mentions is not None:
        assert mentions.lower() in body["message"].lower(), body
    message: str = body["message"]
    return message


async def count(database: Database, table: type[Base]) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def census(database: Database) -> dict[str, int]:
    """How many rows each sessions table holds: "changes nothing" means this is equal
    before and after."""
    tables: list[type[Base]] = [
        ProxyService,
        PoolNumber,
        ProxySession,
        ProxyParticipant,
        ProxyInteraction,
    ]
    return {table.__tablename__: await count(database, table) for table in tables}
