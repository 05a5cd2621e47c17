"""Choosing a participant's proxy number from the service's pool.

The invariant: among open sessions of a service, an identifier never holds the same
proxy number twice, so a call from (identifier, DID) names exactly one session. The
database holds it, on every node: the unique constraint over (proxy_identifier,
identifier, active, service_sid) with ``active`` TRUE while open and NULL after (NULLs
never collide). The allocator only proposes: it inserts the participant with a
candidate number (INSERT ... ON CONFLICT DO NOTHING) and, when another transaction
took that pair first, tries the next candidate. No lock is held in the process.

Candidates: the service's unreserved numbers this identifier does not hold yet, in
random order (spreading load, and making two concurrent creates unlikely to race for
the same number); with ``prefer-sticky`` the number the identifier had last in the
service first; with ``avoid-sticky`` that number last. An explicit ``ProxyIdentifier``
or ``ProxyIdentifierSid`` is the only candidate, and may be a reserved number.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, Table, case, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from callmask.sessions import errors, sids
from callmask.store.models import PoolNumber, ProxyParticipant, ProxyService, ProxySession

CANDIDATES_PER_ROUND = 8
ROUNDS = 4
_PARTICIPANTS: Table = ProxyParticipant.__table__  # type: ignore[assignment]


def _candidate_query(service: ProxyService, identifier: str, exclude: set[str]) -> Select[str, str]:
    """One read: unreserved numbers the identifier does not hold now, the sticky one
    (the number it had last in the service) first or last by the service's behaviour,
    the rest in random order."""
    mine = (ProxyParticipant.service_sid == service.sid) & (
        ProxyParticipant.identifier == identifier
    )
    held_now = select(ProxyParticipant.pool_number_sid).where(
        mine, ProxyParticipant.active.is_(True), ProxyParticipant.pool_number_sid.is_not(None)
    )
    last_used = (
        select(ProxyParticipant.pool_number_sid)
        .where(mine)
        .order_by(ProxyParticipant.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    sticky_rank = (0, 1) if service.number_selection_behavior == "prefer-sticky" else (1, 0)
    query = (
        select(PoolNumber.sid, PoolNumber.e164)
        .where(
            PoolNumber.service_sid == service.sid,
            PoolNumber.is_reserved.is_(False),
            PoolNumber.sid.not_in(held_now),
        )
        .order_by(
            case((PoolNumber.sid == last_used, sticky_rank[0]), else_=sticky_rank[1]),
            func.random(),
        )
        .limit(CANDIDATES_PER_ROUND)
    )
    if exclude:
        query = query.where(PoolNumber.sid.not_in(exclude))
    return query


async def _explicit(
    session: AsyncSession, service_sid: str, e164: str | None, sid: str | None
) -> tuple[str, str]:
    query = select(PoolNumber.sid, PoolNumber.e164).where(PoolNumber.service_sid == service_sid)
    query = query.where(PoolNumber.sid == sid) if sid else query.where(PoolNumber.e164 == e164)
    found = (await session.execute(query)).first()
    if found is None:
        raise errors.invalid(f"{sid or e164} is not a number of this Service's pool")
    return found.sid, found.e164


def _insert_unless_taken(session: AsyncSession) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the store's dialect: a pair another
    transaction holds is skipped in one statement, without a SAVEPOINT. On PostgreSQL
    the insert waits for a concurrent holder's commit, then skips (or inserts, if it
    rolled back)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(_PARTICIPANTS).on_conflict_do_nothing()
    return sqlite_insert(_PARTICIPANTS).on_conflict_do_nothing()


async def _try(
    session: AsyncSession,
    proxy_session: ProxySession,
    number: tuple[str, str],
    *,
    identifier: str,
    friendly_name: str | None,
    now: dt.datetime,
    pin: str = "",
) -> ProxyParticipant | None:
    number_sid, e164 = number
    participant = ProxyParticipant(
        sid=sids.new_sid(sids.PARTICIPANT),
        session_sid=proxy_session.sid,
        service_sid=proxy_session.service_sid,
        account_id=proxy_session.account_id,
        identifier=identifier,
        friendly_name=friendly_name,
        proxy_identifier=e164,
        pool_number_sid=number_sid,
        active=True,
        pin=pin,
        date_deleted=None,
        created_at=now,
        updated_at=now,
    )
    values = {column.name: getattr(participant, column.key) for column in _PARTICIPANTS.c}
    inserted = await session.execute(
        _insert_unless_taken(session).values(values).returning(_PARTICIPANTS.c.sid)
    )
    if inserted.first() is None:
        return None  # someone holds (identifier, number) in an open session: next one
    # The row exists now: the object joins the ORM session as persistent, not as new.
    make_transient_to_detached(participant)
    session.add(participant)
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
    pin: str = "",
) -> ProxyParticipant:
    """The participant, inserted with a proxy number; ``ProxyError`` if none can be had.
    With a ``pin``, an explicit number the identifier already holds in other sessions
    is taken if none of those uses the same PIN."""
    if proxy_identifier or proxy_identifier_sid:
        number = await _explicit(session, service.sid, proxy_identifier, proxy_identifier_sid)
        participant = await _try(
            session,
            proxy_session,
            number,
            identifier=identifier,
            friendly_name=friendly_name,
            now=now,
            pin=pin,
        )
        if participant is None:
            raise errors.ProxyError(
                errors.PAIR_CONFLICT,
                400,
                f"{identifier} already has {number[1]} as proxy number in another open "
                "session of this Service",
            )
        return participant
    tried: set[str] = set()
    for _ in range(ROUNDS):
        query = _candidate_query(service, identifier, tried)
        candidates = [(row.sid, row.e164) for row in (await session.execute(query)).all()]
        if not candidates:
            break
        for number in candidates:
            tried.add(number[0])
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
    exhausted = errors.Exhaustion(service.account_id, service.sid, identifier)
    unreserved = await session.scalar(
        select(func.count())
        .select_from(PoolNumber)
        .where(PoolNumber.service_sid == service.sid, PoolNumber.is_reserved.is_(False))
    )
    if not unreserved:
        raise errors.ProxyError(
            errors.NO_UNRESERVED_NUMBER,
            400,
            "No unreserved numbers in this Service's pool",
            exhaustion=exhausted,
        )
    raise errors.ProxyError(
        errors.ALL_NUMBERS_IN_USE,
        400,
        f"All numbers of this Service's pool are already in use by {identifier} in other "
        "open sessions",
        exhaustion=exhausted,
    )
