"""Fixtures for the webhook tests: the worker's kind of HTTP session, a worker
factory with test-sized delays, a fake wall clock, and small helpers to enqueue events
and wait for the store to reach a state."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from callmask.config import Settings
from callmask.outbound import WEBHOOK_USER_AGENT, client_session
from callmask.store.database import Database
from callmask.store.models import WebhookAttempt, WebhookEvent, utcnow
from callmask.webhooks.outbox import enqueue
from callmask.webhooks.worker import DEFAULT_CONCURRENCY, DeliveryWorker
from tests.conftest import Tenant, make_settings

FAST_SCHEDULE_S = (0.05, 0.05, 0.05, 0.05, 0.05)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """The app of these tests runs without its own worker: tests drive one."""
    return make_settings(tmp_path, db_url, webhook_worker=False)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # allow_private as make_worker's default: the receivers listen on 127.0.0.1.
    async with client_session(
        allow_private=True, max_connections=DEFAULT_CONCURRENCY, user_agent=WEBHOOK_USER_AGENT
    ) as session:
        yield session


class FakeClock:
    """Wall clock the test moves by hand; starts at the real now so that signature
    timestamps stay inside verifiers' tolerance."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def make_worker(
    database: Database, http: aiohttp.ClientSession, **overrides: Any
) -> DeliveryWorker:
    options: dict[str, Any] = {
        "allow_private": True,
        "timeout_s": 2.0,
        "lease_s": 5.0,
        "poll_interval_s": 0.2,
        "schedule": FAST_SCHEDULE_S,
    }
    options.update(overrides)
    return DeliveryWorker(database, http, **options)


@contextlib.asynccontextmanager
async def running(worker: DeliveryWorker) -> AsyncIterator[DeliveryWorker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=10)
        assert task.done(), "the worker did not stop within 10 s"
        if not task.cancelled():
            task.result()  # re-raises what ended the worker


async def enqueue_one(
    database: Database,
    tenant: Tenant,
    url: str,
    payload: dict[str, Any] | None = None,
    *,
    ordering_key: str | None = None,
    event_type: str = "call.status",
) -> str:
    async with database.session() as session:
        return await enqueue(
            session,
            account_id=tenant.account_id,
            event_type=event_type,
            url=url,
            payload=payload if payload is not None else {"status": "answered"},
            ordering_key=ordering_key,
        )


async def event_row(database: Database, event_id: str) -> WebhookEvent:
    async with database.session() as session:
        event = await session.get(WebhookEvent, event_id)
        assert event is not None
        return event


async def attempt_rows(database: Database, event_id: str) -> list[WebhookAttempt]:
    async with database.session() as session:
        query = (
            select(WebhookAttempt)
            .where(WebhookAttempt.event_id == event_id)
            .order_by(WebhookAttempt.id)
        )
        return list((await session.scalars(query)).all())


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, step_s: float = 0.02
) -> None:
    """Poll the store (it has no change feed) until ``condition`` holds."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await condition():
                return
            await asyncio.sleep(step_s)


def status_is(database: Database, event_id: str, status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await event_row(database, event_id)).status == status

    return check
