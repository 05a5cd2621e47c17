"""Admission: which routing an inbound call gets, decided once from (caller, DID).

A DID carries a per-DID action (Infobip or Tata dialect) or sits in a session pool,
never both (the APIs refuse the second with 409), so the order of the two reads only
decides what a call costs: the per-DID read first, because it is the common case and
on SQLite a synchronous page-cache probe (``store.postdial``); the pool read only for a
DID that has no action.
"""

from __future__ import annotations

from callmask.errors import InvalidInput
from callmask.phone import normalise
from callmask.routing.infobip import InfobipRouting
from callmask.routing.route import CallRouting, Exchange
from callmask.routing.sessions import OutOfSessionRouting, SessionRouting
from callmask.routing.tata import TataRouting
from callmask.sessions.calls import SessionRoute, SharedByPin, find_session_route
from callmask.store.database import Database
from callmask.store.postdial import PostDialReader
from callmask.store.routes import RouteLookup

ANONYMIZE = "ANONYMIZE"


class RoutingTable:
    def __init__(self, database: Database, exchange: Exchange) -> None:
        self.database = database
        self.exchange = exchange
        self.reader = PostDialReader(database)
        self.actions = RouteLookup(self.reader)

    def did_of(self, user: str | None) -> str | None:
        """The Request-URI user as E.164, or None when it is no number at all."""
        try:
            return normalise(user or "", self.exchange.default_region)
        except InvalidInput:
            return None

    async def find(self, caller: str, did: str) -> CallRouting | None:
        """The routing of a call from ``caller`` to ``did`` (E.164), or None: the DID is
        not ours, or has neither an action nor a pool."""
        route = await self.actions.find(did)
        if route is not None:
            if route.action_type == ANONYMIZE:
                return TataRouting(
                    self.exchange,
                    route.account_id,
                    did,
                    route.action_key,
                    route.callback_url,
                    route.account_webhook_url,
                )
            return InfobipRouting(
                self.exchange,
                route.account_id,
                did,
                route.action_key,
                route.callback_url,
                route.status_url,
            )
        try:
            caller_e164 = normalise(caller, self.exchange.default_region)
        except InvalidInput:
            caller_e164 = caller  # anonymous or not a number: it is in no session
        pooled = await find_session_route(self.reader, caller_e164, did)
        if pooled is None:
            return None
        if isinstance(pooled, SessionRoute):
            return SessionRouting(self.exchange, pooled, did)
        if isinstance(pooled, SharedByPin):
            return SessionRouting(
                self.exchange, pooled.first, did, shared=pooled, reader=self.reader
            )
        return OutOfSessionRouting(self.exchange, pooled, did)

    def close(self) -> None:
        self.reader.close()
