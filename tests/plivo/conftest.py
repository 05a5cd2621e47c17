"""Helpers of the Plivo masking-session tests: the account's ``plivo`` Proxy service
with a pool of bought DIDs (made through the Twilio API, as the README tells a user to),
Plivo's Basic credentials and paths, Plivo's error body, and what the store holds."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from callmask.store.database import Database
from callmask.store.models import ProxyParticipant, ProxySession
from tests.conftest import Tenant
from tests.twilio.conftest import buy, census, twilio_auth

__all__ = ["census"]

# The session object's fields: plivo-python's fixtures (maskingSessionCreateResponse,
# ...GetResponse) and the PIN fields of Plivo's reference, plus the options callmask
# stores and shows.
SESSION_FIELDS = {
    "first_party",
    "second_party",
    "virtual_number",
    "status",
    "initiate_call_to_first_party",
    "session_uuid",
    "callback_url",
    "callback_method",
    "created_time",
    "modified_time",
    "expiry_time",
    "duration",
    "amount",
    "call_time_limit",
    "ring_timeout",
    "first_party_play_url",
    "second_party_play_url",
    "record",
    "record_file_format",
    "recording_callback_url",
    "recording_callback_method",
    "is_pin_authentication_required",
    "generate_pin",
    "generate_pin_length",
    "first_party_pin",
    "second_party_pin",
    "pin_prompt_play",
    "pin_retry",
    "pin_retry_wait",
    "incorrect_pin_play",
    "unknown_caller_play",
    "geomatch",
    "create_session_with_single_party",
    "force_pin_authentication",
    "virtual_number_cooloff_period",
    "subaccount",
    "interaction",
    "total_call_amount",
    "total_call_count",
    "total_call_billed_duration",
    "total_session_amount",
    "last_interaction_time",
}
META_FIELDS = {"limit", "next", "offset", "previous", "total_count"}


def auth_id(tenant: Tenant) -> str:
    """The tenant's Plivo auth_id, as the README derives it from the account id."""
    return "MACM" + tenant.account_id.upper()


def plivo_auth(tenant: Tenant) -> httpx.BasicAuth:
    return httpx.BasicAuth(auth_id(tenant), tenant.api_key)


def basic(user: str, token: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{token}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def sessions_path(tenant: Tenant) -> str:
    return f"/plivo/v1/Account/{auth_id(tenant)}/Masking/Session/"


def session_path(tenant: Tenant, session_uuid: str) -> str:
    return f"{sessions_path(tenant)}{session_uuid}/"


async def plivo_pool(http: httpx.AsyncClient, tenant: Tenant, *numbers: str) -> str:
    """The tenant buys ``numbers`` and lends them to its ``plivo`` service's pool,
    through the Twilio Proxy API; returns the service's sid."""
    await buy(http, tenant, *numbers)
    auth = twilio_auth(tenant)
    created = await http.post("/twilio/v1/Services", data={"UniqueName": "plivo"}, auth=auth)
    assert created.status_code == 201, created.text
    service: dict[str, Any] = created.json()
    for number in numbers:
        added = await http.post(
            service["links"]["phone_numbers"], data={"PhoneNumber": number}, auth=auth
        )
        assert added.status_code == 201, added.text
    sid: str = service["sid"]
    return sid


def assert_plivo_error(reply: httpx.Response, status: int, *, mentions: str | None = None) -> str:
    """``reply`` is Plivo's error body with this status; its message."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    body: Any = reply.json()
    assert set(body) == {"api_id", "error"}, body
    uuid.UUID(body["api_id"])
    assert isinstance(body["error"], str) and body["error"], body
    if mentions is not None:
        assert mentions.lower() in body["error"].lower(), body
    message: str = body["error"]
    return message


def sid_of(session_uuid: str) -> str:
    return "KC" + uuid.UUID(session_uuid).hex


async def stored(
    database: Database, session_uuid: str
) -> tuple[ProxySession, list[ProxyParticipant]]:
    """The session row behind a Plivo session and its participants."""
    sid = sid_of(session_uuid)
    async with database.session() as session:
        row = await session.get(ProxySession, sid)
        assert row is not None, sid
        participants = list(
            (
                await session.scalars(
                    select(ProxyParticipant).where(ProxyParticipant.session_sid == sid)
                )
            ).all()
        )
    return row, participants
