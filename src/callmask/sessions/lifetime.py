"""How sessions end: closed by the API, by their ``DateExpiry``, or by their ``Ttl``
(seconds after the last interaction, or after creation while there has been none).

``expires_at`` is kept on the row as the earlier of the two, so the sweep is one
indexed range over (status, expires_at). The sweep runs on every node: each session is
claimed by a conditional UPDATE (``WHERE status IN open, in-progress``), which on
PostgreSQL waits for a concurrent claimer's commit and then matches nothing, so every
session closes once and sends one event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.store.database import Database
from callmask.store.models import ProxyParticipant, ProxyService, ProxySession, utcnow
from callmask.webhooks.outbox import enqueue

log = logging.getLogger(__name__)

OPEN_STATUSES = ("open", "in-progress")
SESSION_CLOSED = "proxy.session.closed"


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives naive datetimes back; every time stored here is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def twilio_time(value: dt.datetime | None) -> str | None:
    aware = as_utc(value)
    return None if aware is None else aware.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry_of(proxy_session: ProxySession) -> dt.datetime | None:
    ends = []
    if proxy_session.date_expiry is not None:
        ends.append(as_utc(proxy_session.date_expiry))
    if proxy_session.ttl:
        since = as_utc(proxy_session.date_last_interaction or proxy_session.created_at)
        assert since is not None
        ends.append(since + dt.timedelta(seconds=proxy_session.ttl))
    return min(e for e in ends if e is not None) if ends else None


async def close_session(
    session: AsyncSession, proxy_session: ProxySession, *, reason: str, now: dt.datetime
) -> None:
    """Close the session, free its numbers, and tell the service's CallbackUrl."""
    proxy_session.status = "closed"
    proxy_session.closed_reason = reason
    proxy_session.date_ended = now
    proxy_session.updated_at = now
    await session.execute(
        update(ProxyParticipant)
        .where(
            ProxyParticipant.session_sid == proxy_session.sid,
            ProxyParticipant.active.is_(True),
        )
        .values(active=None, updated_at=now)
    )
    service = await session.get(ProxyService, proxy_session.service_sid)
    if service is not None and service.callback_url:
        await enqueue(
            session,
            account_id=proxy_session.account_id,
            event_type=SESSION_CLOSED,
            url=service.callback_url,
            payload={
                "sessionSid": proxy_session.sid,
                "sessionServiceSid": proxy_session.service_sid,
                "sessionAccountSid": proxy_session.account_id,
                "sessionUniqueName": proxy_session.unique_name,
                "sessionStatus": "closed",
                "sessionClosedReason": reason,
                "sessionDateEnded": twilio_time(now),
            },
            ordering_key=proxy_session.sid,
        )


async def expire_due(database: Database, *, now: dt.datetime, batch: int = 500) -> int:
    """One sweep: close every open session whose time is up; return how many this
    call closed (a concurrent sweep on another node closes the rest)."""
    async with database.session() as session:
        due = (
            await session.scalars(
                select(ProxySession.sid)
                .where(ProxySession.status.in_(OPEN_STATUSES), ProxySession.expires_at <= now)
                .order_by(ProxySession.expires_at)
                .limit(batch)
            )
        ).all()
    closed = 0
    for sid in due:
        async with database.writing() as session:
            claimed = await session.execute(
                update(ProxySession)
                .where(ProxySession.sid == sid, ProxySession.status.in_(OPEN_STATUSES))
                .values(status="closing")
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another node closed it, or the API did
            proxy_session = await session.get(ProxySession, sid)
            assert proxy_session is not None
            await session.refresh(proxy_session)
            await close_session(session, proxy_session, reason="expired", now=now)
        closed += 1
    return closed


async def expire_forever(
    database: Database,
    *,
    interval_s: float = 5.0,
    clock: Callable[[], dt.datetime] = utcnow,
    on_events: Callable[[], None] | None = None,
) -> None:
    """Sweep every ``interval_s`` until cancelled; ``on_events`` wakes the webhook
    worker when a sweep enqueued session-closed events."""
    while True:
        try:
            closed = await expire_due(database, now=clock())
        except Exception:
            log.exception("session expiry sweep failed; trying again")
        else:
            if closed:
                log.info("closed %d expired sessions", closed)
                if on_events is not None:
                    on_events()
        await asyncio.sleep(interval_s)
