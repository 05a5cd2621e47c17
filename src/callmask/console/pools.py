"""The console's pool view: for each session pool (a Twilio Proxy service), numbers in
use and free now and over the last day, sessions open, and exhaustion events.

A pool number is in use while an open participant holds it: from the participant's
creation to its deletion or its session's end. The history is computed from those
rows, not sampled, so it is there for any past day without a sampler running; the
read is bounded (``MAX_INTERVALS``) and says when it was cut.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.sessions.lifetime import OPEN_STATUSES, as_utc
from callmask.store.models import (
    PoolNumber,
    ProxyParticipant,
    ProxyPoolExhaustion,
    ProxyService,
    ProxySession,
    utcnow,
)

HISTORY = dt.timedelta(hours=24)
BUCKET = dt.timedelta(minutes=10)
MAX_INTERVALS = 200_000
RECENT_EXHAUSTIONS = 50


@dataclass(frozen=True)
class PoolSummary:
    service: ProxyService
    size: int
    reserved: int
    in_use: int
    sessions_open: int
    exhaustions_24h: int

    @property
    def free(self) -> int:
        return self.size - self.in_use


@dataclass(frozen=True)
class PoolHistory:
    times: list[int]  # bucket starts, Unix seconds
    in_use: list[int]
    free: list[int]
    capped: bool  # more intervals than MAX_INTERVALS: the oldest are left out


async def services_of(session: AsyncSession, account_id: str | None) -> list[ProxyService]:
    query = select(ProxyService).order_by(ProxyService.created_at)
    if account_id is not None:
        query = query.where(ProxyService.account_id == account_id)
    return list((await session.scalars(query)).all())


async def service_of(
    session: AsyncSession, account_id: str | None, service_sid: str
) -> ProxyService | None:
    service = await session.get(ProxyService, service_sid[:34])
    if service is None or (account_id is not None and service.account_id != account_id):
        return None  # another account's pool is as absent as one that does not exist
    return service


async def summary_of(session: AsyncSession, service: ProxyService) -> PoolSummary:
    size, reserved = (
        await session.execute(
            select(func.count(), func.count().filter(PoolNumber.is_reserved.is_(True))).where(
                PoolNumber.service_sid == service.sid
            )
        )
    ).one()
    in_use = await session.scalar(
        select(func.count(func.distinct(ProxyParticipant.pool_number_sid))).where(
            ProxyParticipant.service_sid == service.sid,
            ProxyParticipant.active.is_(True),
            ProxyParticipant.pool_number_sid.is_not(None),
        )
    )
    sessions_open = await session.scalar(
        select(func.count()).where(
            ProxySession.service_sid == service.sid, ProxySession.status.in_(OPEN_STATUSES)
        )
    )
    exhaustions = await session.scalar(
        select(func.count()).where(
            ProxyPoolExhaustion.service_sid == service.sid,
            ProxyPoolExhaustion.created_at >= utcnow() - HISTORY,
        )
    )
    return PoolSummary(
        service,
        int(size),
        int(reserved),
        int(in_use or 0),
        int(sessions_open or 0),
        int(exhaustions or 0),
    )


async def recent_exhaustions(
    session: AsyncSession, service: ProxyService
) -> list[ProxyPoolExhaustion]:
    query = (
        select(ProxyPoolExhaustion)
        .where(ProxyPoolExhaustion.service_sid == service.sid)
        .order_by(ProxyPoolExhaustion.created_at.desc(), ProxyPoolExhaustion.id.desc())
        .limit(RECENT_EXHAUSTIONS)
    )
    return list((await session.scalars(query)).all())


async def history_of(
    session: AsyncSession, service: ProxyService, *, now: dt.datetime | None = None
) -> PoolHistory:
    """Numbers in use and free per 10-minute bucket over the last 24 hours."""
    now = now or utcnow()
    start = now - HISTORY
    ended = func.coalesce(ProxyParticipant.date_deleted, ProxySession.date_ended)
    query = (
        select(ProxyParticipant.pool_number_sid, ProxyParticipant.created_at, ended)
        .join(ProxySession, ProxySession.sid == ProxyParticipant.session_sid)
        .where(
            ProxyParticipant.service_sid == service.sid,
            ProxyParticipant.pool_number_sid.is_not(None),
            ProxyParticipant.created_at <= now,
            or_(ended.is_(None), ended >= start),
        )
        .order_by(ProxyParticipant.created_at.desc())
        .limit(MAX_INTERVALS + 1)
    )
    rows = (await session.execute(query)).all()
    capped = len(rows) > MAX_INTERVALS
    size = int(
        await session.scalar(select(func.count()).where(PoolNumber.service_sid == service.sid)) or 0
    )
    buckets = int(HISTORY / BUCKET)
    # Per number, the buckets it was held in: a number counts once per bucket however
    # many sessions held it then.
    held: dict[str, set[int]] = defaultdict(set)
    for number_sid, created, end in rows[:MAX_INTERVALS]:
        first = max(0, int((as_utc(created) - start) / BUCKET))  # type: ignore[operator]
        stop = as_utc(end) if end is not None else now
        last = min(buckets - 1, int((stop - start) / BUCKET))  # type: ignore[operator]
        held[str(number_sid)].update(range(first, last + 1))
    in_use = [0] * buckets
    for slots in held.values():
        for slot in slots:
            in_use[slot] += 1
    times = [int((start + BUCKET * i).timestamp()) for i in range(buckets)]
    return PoolHistory(times, in_use, [max(size - n, 0) for n in in_use], capped)
