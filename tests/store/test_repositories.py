"""Store rules that hold under concurrency and at rest: one owner per number, one action
per number, API keys kept only as hashes. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import inspect, select

from callmask.accounts import create_account
from callmask.errors import Conflict, NotFound
from callmask.store.database import Database
from callmask.store.models import ApiKey, Base
from callmask.store.repositories import Accounts, Actions, Numbers, hash_api_key
from tests.api.infobip import REFERENCE_ACTION, owner_of, stock
from tests.conftest import Tenant

RACES = 8  # numbers raced for; one lost race in any of them is a failure


async def _purchase(database: Database, account_id: str, number_key: str) -> str:
    try:
        async with database.session() as session:
            await Numbers(session).purchase(account_id, number_key)
        return "won"
    except NotFound:
        return "lost"


async def test_two_accounts_buying_the_same_number_at_once_one_wins(
    database: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    keys = await stock(database, *(f"+4179302670{i}" for i in range(RACES)))
    for number_key in keys:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                _purchase(database, tenant.account_id, number_key),
                _purchase(database, other_tenant.account_id, number_key),
            ),
            timeout=30,
        )
        assert sorted(outcomes) == ["lost", "won"], (number_key, outcomes)
        winner = tenant if outcomes[0] == "won" else other_tenant
        assert await owner_of(database, number_key) == winner.account_id


async def test_two_customers_buying_the_same_number_over_the_api_one_wins(
    client: httpx.AsyncClient, database: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    keys = await stock(database, *(f"+4179302671{i}" for i in range(RACES)))
    for number_key in keys:
        replies = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.post(
                        "/numbers/1/numbers", json={"numberKey": number_key}, headers=who.basic
                    )
                    for who in (tenant, other_tenant)
                )
            ),
            timeout=30,
        )
        assert sorted(r.status_code for r in replies) == [200, 404], [r.text for r in replies]
        winner = tenant if replies[0].status_code == 200 else other_tenant
        assert await owner_of(database, number_key) == winner.account_id
        # The loser's listing does not show it; the winner's does.
        for who in (tenant, other_tenant):
            listing = (await client.get("/numbers/1/numbers", headers=who.basic)).json()
            mine = number_key in {n["numberKey"] for n in listing["numbers"]}
            assert mine == (who is winner)


async def test_two_actions_posted_at_once_for_one_number_leave_one(
    database: Database, tenant: Tenant
) -> None:
    [number_key] = await stock(database, "+41793026731", account_id=tenant.account_id)

    async def create() -> str:
        try:
            async with database.session() as session:
                await Actions(session).create(
                    tenant.account_id,
                    number_key,
                    type_=REFERENCE_ACTION["type"],
                    callback_url=REFERENCE_ACTION["callbackUrl"],
                    status_url=None,
                )
            return "created"
        except Conflict:
            return "conflict"

    outcomes = await asyncio.wait_for(asyncio.gather(create(), create(), create()), timeout=30)
    assert sorted(outcomes) == ["conflict", "conflict", "created"]
    async with database.session() as session:
        assert len(await Actions(session).for_number(tenant.account_id, number_key)) == 1


async def test_api_keys_are_stored_only_as_hashes(database: Database) -> None:
    async with database.session() as session:
        account, api_key = await create_account(session, "acme")
        second_key = await Accounts(session).add_key(account.id)
    assert len(api_key) >= 40  # 256 bits, url-safe base64
    async with database.session() as session:
        stored = (await session.scalars(select(ApiKey.key_sha256))).all()
        assert sorted(stored) == sorted([hash_api_key(api_key), hash_api_key(second_key)])
        # No column of any table holds either key in clear, in any case.
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                rows = await session.execute(select(column))
                for (value,) in rows:
                    if isinstance(value, str):
                        for key in (api_key, second_key):
                            assert key.lower() not in value.lower(), (table.name, column.name)
        # Either key finds the account; a hash of a key is not itself a key.
        for key in (api_key, second_key):
            assert (await Accounts(session).by_api_key(key)) is not None
        assert await Accounts(session).by_api_key(hash_api_key(api_key)) is None


async def test_keys_in_urls_are_random_not_sequential(database: Database, tenant: Tenant) -> None:
    keys = await stock(database, *(f"+4179302672{i}" for i in range(5)))
    assert len(set(keys)) == 5
    assert all(len(k) == 32 and k == k.upper() for k in keys)
    # Not even a shared prefix a guesser could walk.
    assert len({k[:8] for k in keys}) == 5


async def test_the_store_enforces_one_owner_and_one_action_per_number(
    database: Database,
) -> None:
    # The unique constraints, not only the repositories, hold the rules.
    async with database.engine.connect() as connection:
        uniques = await connection.run_sync(
            lambda sync: {
                table: [
                    tuple(u["column_names"]) for u in inspect(sync).get_unique_constraints(table)
                ]
                for table in ("numbers", "actions", "api_keys")
            }
        )
    assert ("e164",) in uniques["numbers"]
    assert ("number_key",) in uniques["actions"]
    assert ("key_sha256",) in uniques["api_keys"]
