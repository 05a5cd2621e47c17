"""Operator API (``/admin/``, ``CALLMASK_ADMIN_KEY``): the same actions as the CLI —
create accounts, add trunk DIDs to the inventory, list them."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel, Field

from callmask import accounts
from callmask.api.deps import AdminDep, ServicesDep, SessionDep
from callmask.phone import digits, normalise, region_of
from callmask.store.repositories import Accounts, Numbers
from callmask.webhooks.repository import as_utc

router = APIRouter(prefix="/admin", tags=["operator"], dependencies=[AdminDep])


class AccountIn(BaseModel):
    # No control characters: they are no use in a name, and PostgreSQL refuses NUL.
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")


class AccountCreatedOut(BaseModel):
    accountId: str
    name: str
    apiKey: str


class AccountOut(BaseModel):
    accountId: str
    name: str
    createdAt: dt.datetime


class InventoryIn(BaseModel):
    numbers: list[str] = Field(min_length=1, max_length=1000)
    # Account ids are hex; checked before the lookup, which PostgreSQL would answer
    # with an error for a NUL character.
    accountId: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,32}$")


class InventoryNumberOut(BaseModel):
    numberKey: str
    number: str
    country: str
    accountId: str | None


@router.post("/accounts")
async def create_account(body: AccountIn, session: SessionDep) -> AccountCreatedOut:
    account, api_key = await accounts.create_account(session, body.name)
    return AccountCreatedOut(accountId=account.id, name=account.name, apiKey=api_key)


@router.get("/accounts")
async def list_accounts(session: SessionDep) -> list[AccountOut]:
    return [
        # SQLite hands times back without their zone; RFC 3339 needs one.
        AccountOut(accountId=a.id, name=a.name, createdAt=as_utc(a.created_at))
        for a in await Accounts(session).list()
    ]


@router.post("/numbers")
async def add_numbers(
    body: InventoryIn, session: SessionDep, services: ServicesDep
) -> list[InventoryNumberOut]:
    region = services.settings.default_region
    # Validate everything first so that one bad number adds none.
    e164s = [normalise(raw, region) for raw in body.numbers]
    if body.accountId is not None:
        await Accounts(session).get(body.accountId)
    repository = Numbers(session)
    added = [await repository.add_to_inventory(e, region_of(e), body.accountId) for e in e164s]
    return [
        InventoryNumberOut(
            numberKey=n.number_key, number=digits(n.e164), country=n.country, accountId=n.account_id
        )
        for n in added
    ]


@router.get("/numbers")
async def list_inventory(session: SessionDep) -> list[InventoryNumberOut]:
    return [
        InventoryNumberOut(
            numberKey=n.number_key, number=digits(n.e164), country=n.country, accountId=n.account_id
        )
        for n in await Numbers(session).inventory()
    ]
