"""Choosing a participant's proxy number from the service's pool.

The invariant: among open sessions of a service, an identifier never holds the same
proxy number twice, so a call from (identifier, DID) names exactly one session. The
database holds it, on every node: the unique constraint over (proxy_identifier,
identifier, active, service_sid) with ``active`` TRUE while open and NULL after (NULLs
never collide). The allocator only proposes: it inserts the participant with a
candidate number inside a SAVEPOINT and, when another transaction took that pair
first, rolls back to it and tries the next candidate. No lock is held in the process.

Candidates: the service's unreserved numbers this identifier does not hold yet, in
random order (spreading load, and making two concurrent creates unlikely to race for
the same number); with ``prefer-sticky`` the number the identifier had last in the
service first; with ``avoid-sticky`` that number last. An explicit ``ProxyIdentifier``
or ``ProxyIdentifierSid`` is the only candidate, and may be a reserved number.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.sessions import errors, sids
from callmask.store.models import PoolNumber, ProxyParticipant, ProxyService, ProxySession

CANDIDATES_PER_ROUND = 8
ROUNDS = 4


async def _held(session: AsyncSession, service_sid: str, identifier: str) -> set[str]:
    query = select(ProxyParticipant.pool_number_sid).where(
        ProxyParticipant.service_sid == service_sid,
        ProxyParticipant.identifier == identifier,
        ProxyParticipant.active.is_(True),
    )
    return {sid for sid in (await session.scalars(query)).all() if sid is not None}


async def _last_used(session: AsyncSession, service_sid: str, identifier: str) -> str | None:
    query = (
        select(ProxyParticipant.pool_number_sid)
        .where(
            ProxyParticipant.service_sid == service_sid,
            ProxyParticipant.identifier == identifier,
        )
        .order_by(ProxyParticipant.created_at.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def _explicit(
    session: AsyncSession, service_sid: str, e164: str | None, sid: str | None
) -> PoolNumber:
    query = select(PoolNumber).where(PoolNumber.service_sid == service_sid)
    query = query.where(PoolNumber.sid == sid) if sid else query.where(PoolNumber.e164 == e164)
    found = (await session.scalars(query)).first()
    if found is None:
        raise errors.invalid(f"{sid or e164} is not a number of this Service's pool")
    return found


async def _candidates(
    session: AsyncSession, service: ProxyService, identifier: str, exclude: set[str]
) -> list[PoolNumber]:
    held_now = await _held(session, service.sid, identifier)
    query = (
        select(PoolNumber)
        .where(PoolNumber.service_sid == service.sid, PoolNumber.is_reserved.is_(False))
        .order_by(func.random())
        .limit(CANDIDATES_PER_ROUND + len(held_now) + len(exclude))
    )
    numbers = [n for n in (await session.scalars(query)).all() if n.sid not in held_now | exclude]
    sticky = await _last_used(session, service.sid, identifier)
    if sticky is not None:
        numbers.sort(
            key=lambda n: (
                (n.sid == sticky) != (service.number_selection_behavior == "prefer-sticky")
            )
        )
    return numbers[:CANDIDATES_PER_ROUND]


async def _try(
    session: AsyncSession,
    proxy_session: ProxySession,
    number: PoolNumber,
    *,
    identifier: str,
    friendly_name: str | None,
    now: dt.datetime,
) -> ProxyParticipant | None:
    participant = ProxyParticipant(
        sid=sids.new_sid(sids.PARTICIPANT),
        session_sid=proxy_session.sid,
        service_sid=proxy_session.service_sid,
        account_id=proxy_session.account_id,
        identifier=identifier,
        friendly_name=friendly_name,
        proxy_identifier=number.e164,
        pool_number_sid=number.sid,
        active=True,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(participant)
    except IntegrityError:
        return None  # someone holds (identifier, number) in an open session: next one
    return participant


async def allocate(
    session: AsyncSession,
    service: ProxyService,
    proxy_session: ProxySession,
    *,
    identifier: str,
    friendly_name: str | None,
    proxy_identifier: str | None,
    proxy_identifier_sid: str | None,
    now: dt.datetime,
) -> ProxyParticipant:
    """The participant, inserted with a proxy number; ``ProxyError`` if none can be had."""
    if proxy_identifier or proxy_identifier_sid:
        number = await _explicit(session, service.sid, proxy_identifier, proxy_identifier_sid)
        participant = await _try(
            session,
            proxy_session,
            number,
            identifier=identifier,
            friendly_name=friendly_name,
            now=now,
        )
        if participant is None:
            raise errors.ProxyError(
                errors.PAIR_CONFLICT,
                400,
                f"{identifier} already has {number.e164} as proxy number in another open "
                "session of this Service",
            )
        return participant
    tried: set[str] = set()
    for _ in range(ROUNDS):
        candidates = await _candidates(session, service, identifier, tried)
        if not candidates:
            break
        for number in candidates:
            tried.add(number.sid)
            participant = await _try(
                session,
                proxy_session,
                number,
                identifier=identifier,
                friendly_name=friendly_name,
                now=now,
            )
            if participant is not None:
                return participant
    unreserved = await session.scalar(
        select(func.count())
        .select_from(PoolNumber)
        .where(PoolNumber.service_sid == service.sid, PoolNumber.is_reserved.is_(False))
    )
    if not unreserved:
        raise errors.ProxyError(
            errors.NO_UNRESERVED_NUMBER, 400, "No unreserved numbers in this Service's pool"
        )
    raise errors.ProxyError(
        errors.ALL_NUMBERS_IN_USE,
        400,
        f"All numbers of this Service's pool are already in use by {identifier} in other "
        "open sessions",
    )
