"""The routing lookup of an inbound call: whose DID it is, what its action is, and
where the account's call details go, in one read on the post-dial path
(``store.postdial``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select

from callmask.store.models import AccountSettings, Action, Number
from callmask.store.postdial import PostDialReader, prepare


@dataclass(frozen=True, slots=True)
class Route:
    account_id: str
    action_key: str
    action_type: str
    callback_url: str
    status_url: str | None
    account_webhook_url: str | None  # the account's Tata webhook (call details)


ROUTE = prepare(
    select(
        Number.account_id,
        Action.action_key,
        Action.type,
        Action.callback_url,
        Action.status_url,
        AccountSettings.webhook_url,
    )
    .join(Action, Action.number_key == Number.number_key)
    .outerjoin(AccountSettings, AccountSettings.account_id == Number.account_id)
    .where(Number.e164 == bindparam("e164"), Number.account_id.is_not(None))
)


def _route(row: tuple[object, ...] | None) -> Route | None:
    if row is None:
        return None
    account_id, action_key, action_type, callback_url, status_url, webhook_url = row
    return Route(
        account_id=str(account_id),
        action_key=str(action_key),
        action_type=str(action_type),
        callback_url=str(callback_url),
        status_url=None if status_url is None else str(status_url),
        account_webhook_url=None if webhook_url is None else str(webhook_url),
    )


class RouteLookup:
    def __init__(self, reader: PostDialReader) -> None:
        self.reader = reader

    async def find(self, did: str) -> Route | None:
        """The route of ``did`` (E.164), or None when no account owns it with an action."""
        return _route(await self.reader.first(ROUTE, {"e164": did}))
