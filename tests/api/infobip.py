"""Helpers for the Infobip dialect tests: stocking the operator's inventory, reading the
store behind the API's back, and checking the Infobip error body."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from callmask.phone import region_of
from callmask.store.database import Database
from callmask.store.models import Base, Number
from callmask.store.repositories import Numbers

# The DID of the reference document's examples.
REFERENCE_DID = "+41793026731"

# The request bodies of the reference document, verbatim.
REFERENCE_ACTION = {
    "type": "VOICE_NUMBER_MASKING",
    "callbackUrl": "http://client.server/1/callback",
    "statusUrl": "http://client.server/1/status",
}


async def stock(database: Database, *e164s: str, account_id: str | None = None) -> list[str]:
    """Put DIDs into the operator's inventory (owned by ``account_id`` if given); return
    their numberKeys in the order given."""
    async with database.session() as session:
        repository = Numbers(session)
        return [
            (await repository.add_to_inventory(e164, region_of(e164), account_id)).number_key
            for e164 in e164s
        ]


async def count(database: Database, table: type[Base]) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def owner_of(database: Database, number_key: str) -> str | None:
    async with database.session() as session:
        number = await session.get(Number, number_key)
        assert number is not None, f"number {number_key} vanished from the inventory"
        return number.account_id


def assert_error(
    reply: httpx.Response, status: int, message_id: str, *, mentions: str | None = None
) -> str:
    """``reply`` is an Infobip error with this status and messageId; return its text."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    body: Any = reply.json()
    assert set(body) == {"requestError"}, body
    assert set(body["requestError"]) == {"serviceException"}, body
    exception = body["requestError"]["serviceException"]
    assert exception["messageId"] == message_id, body
    text = exception["text"]
    assert isinstance(text, str) and text, body
    if mentions is not None:
        assert mentions.lower() in text.lower(), body
    return text


def assert_tata_error(reply: httpx.Response, status: int) -> str:
    assert reply.status_code == status, (reply.status_code, reply.text)
    body: Any = reply.json()
    assert body["success"] is False, body
    assert isinstance(body["message"], str) and body["message"], body
    return str(body["message"])
