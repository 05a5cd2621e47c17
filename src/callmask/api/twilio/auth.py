"""Who is calling the Twilio routes: HTTP Basic ``AccountSid:AuthToken``, as
twilio-python sends it (``Client(username, password)`` -> ``auth=(username,
password)``). AccountSid is the callmask account id, AuthToken one of that account's API
keys; a key of another account, or any other scheme, is 401 (code 20003).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from callmask.api.auth import parse_authorization
from callmask.api.twilio.errors import TwilioSessionDep
from callmask.errors import Unauthorized
from callmask.store.models import Account
from callmask.store.repositories import Accounts


async def get_twilio_account(request: Request, session: TwilioSessionDep) -> Account:
    credentials = parse_authorization(request.headers.get("authorization"), allow_bare=False)
    if credentials.account_id is None:
        raise Unauthorized(
            "use HTTP Basic with AccountSid (your callmask account id) and AuthToken "
            "(one of its API keys)"
        )
    account = await Accounts(session).by_api_key(credentials.api_key)
    if account is None or not hmac.compare_digest(
        account.id.encode(), credentials.account_id.encode()
    ):
        raise Unauthorized("your AccountSid or AuthToken was incorrect")
    return account


TwilioAccount = Annotated[Account, Depends(get_twilio_account)]
