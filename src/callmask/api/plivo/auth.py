"""Who is calling the Plivo routes: HTTP Basic ``auth_id:auth_token``, as plivo-python
sends it (``Client(auth_id, auth_token)`` -> ``session.auth``), and the same auth_id in
the path (``/v1/Account/{auth_id}/...``, which the SDK builds from it).

The SDK refuses an auth_id that is not ``MA`` or ``SA`` followed by 18 characters
(``plivo/utils``: ``is_valid_mainaccount``, ``is_valid_subaccount``), and callmask's
account ids are 16 lowercase hexadecimal digits (``Accounts.create``:
``secrets.token_hex(8)``). A callmask account's Plivo auth_id is therefore derived, one
to one and back, with no stored alias: ``MACM`` followed by its account id in capitals
(account ``3f2a9c0d4b5e6f70`` is ``MACM3F2A9C0D4B5E6F70``). The auth_token is one of the
account's API keys.

Clients other than the SDK may use the bare account id instead, as callmask's other
APIs take it, in the credentials and in the path. Wrong credentials are 401; a path
auth_id naming another account than the caller's is 404, as for any object of another
account.
"""

from __future__ import annotations

import hmac
import re
from typing import Annotated

from fastapi import Depends, Request

from callmask.api.auth import parse_authorization
from callmask.api.plivo.errors import PlivoSessionDep, not_found
from callmask.errors import Unauthorized
from callmask.store.models import Account
from callmask.store.repositories import Accounts

AUTH_ID_PREFIX = "MACM"
_ACCOUNT_ID = re.compile(r"[0-9a-f]{16}")
_AUTH_ID = re.compile(AUTH_ID_PREFIX + r"[0-9A-F]{16}")


def auth_id_of(account_id: str) -> str | None:
    """The Plivo auth_id of a callmask account; None for an id of another shape."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        return None
    return AUTH_ID_PREFIX + account_id.upper()


def account_id_of(auth_id: str) -> str | None:
    """The callmask account id a Plivo auth_id (or a bare account id) names; None if it
    names none."""
    if _ACCOUNT_ID.fullmatch(auth_id):
        return auth_id
    if not _AUTH_ID.fullmatch(auth_id):
        return None
    return auth_id.removeprefix(AUTH_ID_PREFIX).lower()


async def get_plivo_account(auth_id: str, request: Request, session: PlivoSessionDep) -> Account:
    credentials = parse_authorization(request.headers.get("authorization"), allow_bare=False)
    if credentials.account_id is None:
        raise Unauthorized(
            f"use HTTP Basic with your Plivo auth_id ({AUTH_ID_PREFIX} and your callmask "
            "account id in capitals) and an API key of the account as auth_token"
        )
    account_id = account_id_of(credentials.account_id)
    if account_id is None:
        raise Unauthorized(
            f"auth_id must be {AUTH_ID_PREFIX} followed by your callmask account id in "
            "capitals (16 hexadecimal digits)"
        )
    account = await Accounts(session).by_api_key(credentials.api_key)
    if account is None or not hmac.compare_digest(account.id.encode(), account_id.encode()):
        raise Unauthorized("your auth_id or auth_token was incorrect")
    if account_id_of(auth_id) != account.id:
        raise not_found(f"no account {auth_id} among yours")
    return account


PlivoAccount = Annotated[Account, Depends(get_plivo_account)]
