"""FastAPI dependencies: the node's services, a store session, the calling account.

Routes declare what they need with the ``Annotated`` aliases below (``SessionDep``,
``CurrentAccount``...) instead of reaching into ``app.state``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import aiohttp
from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.api.auth import check_admin_key, parse_authorization
from callmask.calls.control import CallControl
from callmask.cluster.calls import ClusterCalls, as_cluster
from callmask.config import Settings
from callmask.errors import Unauthorized
from callmask.media.audio import AudioStore
from callmask.store.database import Database
from callmask.store.models import Account
from callmask.store.repositories import Accounts
from callmask.webhooks.worker import DeliveryWorker


@dataclass(slots=True)
class Services:
    """What the API needs from the running node; built by the app lifespan."""

    settings: Settings
    database: Database
    http: aiohttp.ClientSession  # audio downloads
    audio_store: AudioStore
    webhooks: DeliveryWorker  # call notify() after committing an enqueue
    calls: CallControl | None = None  # set while the call path runs (``callmask run``)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.database.session() as session:
        yield session


# scope="function": the transaction commits before the response is sent, so a failed
# commit is an error response rather than a 200 for something that was not stored.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_current_account(request: Request, session: SessionDep) -> Account:
    credentials = parse_authorization(
        request.headers.get("authorization"), allow_bare=request.url.path.startswith("/v1/")
    )
    account = await Accounts(session).by_api_key(credentials.api_key)
    if account is None or (
        credentials.account_id is not None and credentials.account_id != account.id
    ):
        raise Unauthorized("invalid credentials")
    return account


CurrentAccount = Annotated[Account, Depends(get_current_account)]


def get_call_control(services: ServicesDep) -> ClusterCalls:
    """The running call engine, reaching the calls of the other nodes on PostgreSQL;
    503 on a node that serves the API without calls, so a client learns the call was
    not placed rather than waiting for one."""
    if services.calls is None:
        raise HTTPException(503, "calls are not running on this node")
    return as_cluster(services.calls)


CallControlDep = Annotated[ClusterCalls, Depends(get_call_control)]


def require_admin(request: Request, services: ServicesDep) -> None:
    check_admin_key(request.headers.get("authorization"), services.settings.admin_key)


AdminDep = Depends(require_admin)
