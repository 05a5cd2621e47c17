"""A whole callmask node for call tests: SQLite store, the API app with its call path
(SIP endpoint, managed rtpengine, call engine), one customer account owning one DID
with a masking action pointing at a real loopback receiver."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from callmask.calls.engine import CallEngine
from callmask.cluster.calls import as_cluster
from callmask.config import Settings
from callmask.node import node_app
from callmask.phone import region_of
from callmask.store.database import Database
from callmask.store.models import CallRecord
from callmask.store.repositories import Actions, Numbers
from tests.conftest import Tenant, create_tenant, make_settings
from tests.support.receiver import Receiver
from tests.support.sipp import free_udp_port

DID = "+41793026731"
CALLER = "41793026727"
B_NUMBER = "+41793026785"
CALLER_ID = "+41793026700"


@dataclass
class Node:
    settings: Settings
    database: Database
    engine: CallEngine
    receiver: Receiver
    tenant: Tenant
    trunk_port: int
    number_key: str
    app: FastAPI

    def api(self) -> httpx.AsyncClient:
        """The node's REST API as the customer calls it (bare key, as Tata clients do)."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://callmask.test",
            headers={"Authorization": self.tenant.api_key},
        )

    @property
    def sip_port(self) -> int:
        return self.engine.endpoint.port

    async def set_action(self, type_: str = "VOICE_NUMBER_MASKING") -> None:
        async with self.database.session() as session:
            actions = Actions(session)
            for action in await actions.for_number(self.tenant.account_id, self.number_key):
                await actions.delete(self.tenant.account_id, self.number_key, action.action_key)
            await actions.create(
                self.tenant.account_id,
                self.number_key,
                type_=type_,
                callback_url=self.receiver.url("/callback"),
                status_url=self.receiver.url("/status"),
            )

    async def records(self) -> list[CallRecord]:
        async with self.database.session() as session:
            return list((await session.scalars(select(CallRecord))).all())

    async def status_reports(
        self, count: int = 1, timeout_s: float = 15
    ) -> list[dict[str, object]]:
        requests = await self.receiver.wait_for("/status", count, timeout_s=timeout_s)
        return [json.loads(r.body) for r in requests]


def node_settings(
    tmp_path: Path, database_url: str, trunk_port: int, **overrides: object
) -> Settings:
    # Each test gets its own media port window so parallel runs never share one.
    port_min = random.randrange(24000, 29000, 100)
    values: dict[str, object] = {
        "sip_port": free_udp_port(),
        "trunk_uri": f"sip:127.0.0.1:{trunk_port}",
        "rtpengine": "managed",
        "rtpengine_ng_port": free_udp_port(),
        "rtpengine_port_min": port_min,
        "rtpengine_port_max": port_min + 99,
        "ring_timeout": 3.0,
        "callback_timeout": 2.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, database_url, **values)


@pytest.fixture
async def node(
    tmp_path: Path, sqlite_url: str, receiver: Receiver, request: pytest.FixtureRequest
) -> AsyncIterator[Node]:
    overrides: dict[str, object] = dict(getattr(request, "param", {}))
    did = str(overrides.pop("did", DID))
    trunk_port = free_udp_port()
    if isinstance(overrides.get("trunk_uri"), str):
        # A test that sets the trunk's URI (e.g. ";transport=tcp") names the port it gets.
        overrides["trunk_uri"] = str(overrides["trunk_uri"]).format(trunk_port=trunk_port)
    settings = node_settings(tmp_path, sqlite_url, trunk_port, **overrides)
    database = Database(sqlite_url)
    tenant = await create_tenant(database)
    async with database.session() as session:
        number = await Numbers(session).add_to_inventory(did, region_of(did), tenant.account_id)
    app = node_app(settings, database=database, with_calls=True)
    async with app.router.lifespan_context(app):
        # The API sees the engine through the cluster layer; on SQLite it is all local.
        engine = as_cluster(app.state.services.calls).local
        assert isinstance(engine, CallEngine)
        node = Node(
            settings, database, engine, receiver, tenant, trunk_port, number.number_key, app
        )
        await node.set_action()
        yield node
    await database.close()
