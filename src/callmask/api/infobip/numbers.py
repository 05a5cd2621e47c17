"""Infobip Numbers API over the operator's DID inventory: list what is free, buy, list
and show one's own, release."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from callmask.api.deps import CurrentAccount, SessionDep
from callmask.api.infobip.schemas import KeyPath, NumberListOut, NumberOut, PurchaseNumberIn
from callmask.errors import InvalidInput
from callmask.store.repositories import Numbers

router = APIRouter(prefix="/numbers/1/numbers", tags=["numbers"])

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
# The row offset (page x limit) must fit the store's 64-bit integers: a page past that
# was a 500 (SQLite OverflowError). Nine digits, as the Tata records' page.
MAX_PAGE = 999_999_999
Page = Annotated[int, Query(ge=0, le=MAX_PAGE, description="page number, from 0")]


@router.get("/available")
async def available_numbers(
    session: SessionDep,
    _account: CurrentAccount,
    number: Annotated[str | None, Query(max_length=20, pattern=r"^\+?[0-9]*$")] = None,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")] = None,
    limit: Limit = 50,
    page: Page = 0,
) -> NumberListOut:
    rows, total = await Numbers(session).available(
        contains=number.lstrip("+") if number else None,
        country=country,
        limit=limit,
        offset=page * limit,
    )
    return NumberListOut(numbers=[NumberOut.of(n) for n in rows], numberCount=total)


@router.post("")
async def purchase_number(
    body: PurchaseNumberIn, session: SessionDep, account: CurrentAccount
) -> NumberOut:
    if not body.numberKey:
        raise InvalidInput("numberKey is required")
    return NumberOut.of(await Numbers(session).purchase(account.id, body.numberKey))


@router.get("")
async def list_numbers(
    session: SessionDep, account: CurrentAccount, limit: Limit = 50, page: Page = 0
) -> NumberListOut:
    rows, total = await Numbers(session).owned(account.id, limit=limit, offset=page * limit)
    return NumberListOut(numbers=[NumberOut.of(n) for n in rows], numberCount=total)


@router.get("/{number_key}")
async def get_number(
    number_key: KeyPath, session: SessionDep, account: CurrentAccount
) -> NumberOut:
    return NumberOut.of(await Numbers(session).get_owned(account.id, number_key))


@router.delete("/{number_key}")
async def release_number(
    number_key: KeyPath, session: SessionDep, account: CurrentAccount
) -> NumberOut:
    """Give the number back to the inventory; its masking action goes with it."""
    return NumberOut.of(await Numbers(session).release(account.id, number_key))
