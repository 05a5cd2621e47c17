"""Fixtures of the Tata dialect tests (``/v1/``): settings with ``CALLMASK_DEFAULT_REGION``
IN (the reference's numbers are Indian), the tenant's DIDs, and ``RecordingCallControl``.

``RecordingCallControl`` is a small in-test implementation of ``CallControl``, the
interface the API uses to reach the call engine. These tests test the API layer: what it
validates, resolves from the store and asks of the engine, and what it answers. The real
call engine behind the same interface is tested with SIPp and rtpengine in the interop
tests.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from callmask.calls.control import Announcement, ClickToCall, LiveCall
from callmask.config import Settings
from callmask.store.database import Database
from callmask.store.models import Base, CallRecord
from tests.api.infobip import stock
from tests.conftest import Tenant, make_settings

# The account's DIDs (Indian landline numbers in E.164) and numbers of the parties.
DID = "+918069000001"
SECOND_DID = "+918069000002"
OTHER_DID = "+918069000009"  # another account's
AGENT_NUMBER = "9876543210"
AGENT_E164 = "+919876543210"
CUSTOMER_NUMBER = "9876501234"
CUSTOMER_E164 = "+919876501234"


@dataclass
class RecordingCallControl:
    """Records every request; keeps a table of live calls the tests can shape."""

    live: dict[str, LiveCall] = field(default_factory=dict)
    click_to_calls: list[tuple[ClickToCall, bool]] = field(default_factory=list)
    announcements: list[Announcement] = field(default_factory=list)
    transfers: list[tuple[str, str, str]] = field(default_factory=list)
    hangups: list[tuple[str, str]] = field(default_factory=list)
    agent_answers: bool = True
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def _new_id(self) -> str:
        return f"1700000000.{next(self._ids):06d}"

    def add_live(
        self,
        account_id: str,
        *,
        state: str = "answered",
        direction: str = "inbound",
        caller: str = "+919876501234",
        callee: str | None = "+919876543210",
        service: str = "anonymize",
    ) -> str:
        call_id = self._new_id()
        started = dt.datetime(2026, 11, 25, 10, 0, 0, tzinfo=dt.UTC)
        self.live[call_id] = LiveCall(
            call_id=call_id,
            account_id=account_id,
            direction=direction,
            service=service,
            did=DID,
            caller=caller,
            callee=callee,
            started_at=started,
            answered_at=started + dt.timedelta(seconds=5) if state == "answered" else None,
            state=state,
        )
        return call_id

    def end(self, call_id: str) -> None:
        del self.live[call_id]

    def live_calls(self, account_id: str) -> list[LiveCall]:
        return [c for c in self.live.values() if c.account_id == account_id]

    def hangup(self, account_id: str, call_id: str) -> bool:
        call = self.live.get(call_id)
        if call is None or call.account_id != account_id:
            return False
        del self.live[call_id]
        self.hangups.append((account_id, call_id))
        return True

    async def click_to_call(self, request: ClickToCall, *, wait_for_agent: bool) -> str | None:
        self.click_to_calls.append((request, wait_for_agent))
        if wait_for_agent and not self.agent_answers:
            return None
        return self._new_id()

    async def announce(self, request: Announcement) -> str:
        self.announcements.append(request)
        return self._new_id()

    async def transfer(self, account_id: str, call_id: str, number: str) -> bool:
        call = self.live.get(call_id)
        if call is None or call.account_id != account_id:
            return False
        self.transfers.append((account_id, call_id, number))
        return True

    @property
    def requests(self) -> int:
        return (
            len(self.click_to_calls)
            + len(self.announcements)
            + len(self.transfers)
            + len(self.hangups)
        )


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url, default_region="IN")


@pytest.fixture
def calls(app: FastAPI) -> RecordingCallControl:
    control = RecordingCallControl()
    app.state.services.calls = control
    return control


@pytest.fixture
async def dids(database: Database, tenant: Tenant, other_tenant: Tenant) -> list[str]:
    """The tenant holds DID and SECOND_DID (bought in that order); the other tenant
    holds OTHER_DID."""
    await stock(database, DID, account_id=tenant.account_id)
    await stock(database, SECOND_DID, account_id=tenant.account_id)
    await stock(database, OTHER_DID, account_id=other_tenant.account_id)
    return [DID, SECOND_DID]


def tata(tenant: Tenant) -> dict[str, str]:
    """The reference's headers: the bare key as Authorization, JSON both ways."""
    return {
        "Authorization": tenant.api_key,
        "accept": "application/json",
        "content-type": "application/json",
    }


def assert_failure(reply: httpx.Response, status: int, *words: str) -> None:
    """The dialect's error body, with a message that says what was wrong."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"success", "message"}, body
    assert body["success"] is False
    for word in words:
        assert word in body["message"], body["message"]


async def rows(database: Database, table: type[Base]) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


def cdr(account_id: str, call_id: str, invited: str, call_s: int, **values: Any) -> CallRecord:
    invited_at = dt.datetime.fromisoformat(invited).replace(tzinfo=dt.UTC)
    fields: dict[str, Any] = {
        "direction": "inbound",
        "service": "anonymize",
        "did": DID,
        "caller": "+919876501234",
        "callee": "+919876543210",
        "status": "answered",
        "duration_s": max(0, call_s - 10),
        "hangup_cause": "normal clearing",
        **values,
    }
    if fields["status"] != "answered":
        fields["duration_s"] = 0
    return CallRecord(
        id=uuid.uuid4().hex,
        call_id=call_id,
        account_id=account_id,
        a_sip_call_id=uuid.uuid4().hex,
        invited_at=invited_at,
        answered_at=invited_at + dt.timedelta(seconds=10)
        if fields["status"] == "answered"
        else None,
        ended_at=invited_at + dt.timedelta(seconds=call_s),
        **fields,
    )


# For tables of malformed requests that are refused before the store is touched: the
# refusal is the same on any database, so PostgreSQL would add only time. Filters and
# everything that writes still run on both.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
