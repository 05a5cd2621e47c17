"""Opening an account: the store's account row and API key, and the webhook signing
secret its deliveries are signed with. Here, above both ``store`` and ``webhooks``, so
the store does not reach up into the webhook layer to make one."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from callmask.store.models import Account
from callmask.store.repositories import Accounts
from callmask.webhooks.repository import Secrets


async def create_account(session: AsyncSession, name: str) -> tuple[Account, str]:
    """A new account with one API key and one webhook signing secret; returns the
    account and the clear key, which is shown once and never stored."""
    account, api_key = await Accounts(session).create(name)
    await Secrets(session).ensure(account.id)
    return account, api_key
