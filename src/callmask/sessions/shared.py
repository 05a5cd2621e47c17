"""Sessions whose two participants share one proxy number: Plivo's masking session,
where one virtual number serves both parties (each dials it to reach the other).

Built on the same store and allocator as every other session: the session is a
``ProxySession`` of a service, its parties are two ``ProxyParticipant`` rows, and each
participant row is claimed through the allocator's explicit ``ProxyIdentifierSid``
path, so the database's unique constraint over open (identifier, proxy number) pairs
decides, on every node, as it does for Twilio sessions. Here only the choice of the
number is added: a candidate neither party holds now, and both parties are claimed on
it together; if the second party's claim loses (another transaction took that pair),
the first one's is rolled back with its SAVEPOINT and the next candidate is tried for
both. The parties are always claimed in the same order (by identifier), so two
transactions never wait on each other's claims in a cycle; a savepoint rolled back
releases its claim at once, so a transaction holds at most one number's claims while
it waits.

Candidates: the service's unreserved numbers held by neither party in an open
session; with ``region``, only numbers of that country (Plivo's ``geomatch``); with
``cooloff_s``, not a number either party let go of within that many seconds (Plivo's
``virtual_number_cooloff_period``); in random order, as the allocator spreads them.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, and_, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.sessions import errors, sids
from callmask.sessions.allocator import allocate
from callmask.sessions.lifetime import OPEN_STATUSES, as_utc, close_session, expiry_of
from callmask.store.models import (
    Number,
    PoolNumber,
    ProxyInteraction,
    ProxyParticipant,
    ProxyService,
    ProxySession,
    utcnow,
)

# The participants' friendly names say which party each is (a session's two rows are
# created in the same instant, so their order cannot).
FIRST_PARTY = "first_party"
SECOND_PARTY = "second_party"
CANDIDATES_PER_ROUND = 8
ROUNDS = 4


@dataclass(frozen=True)
class SharedSession:
    """A shared-number session with its two parties and what its calls add up to."""

    row: ProxySession
    first: ProxyParticipant
    second: ProxyParticipant
    call_count: int = 0
    call_seconds: int = 0

    @property
    def virtual_number(self) -> str:
        return self.first.proxy_identifier


def _candidates(
    service: ProxyService,
    parties: Sequence[str],
    *,
    region: str | None,
    cooloff_s: int,
    exclude: set[str],
    now: dt.datetime,
    sharing: bool = False,
) -> Any:
    """Numbers neither party holds in an open session; ``sharing`` (a PIN session whose
    pool has no such number left): numbers neither party holds in an open session
    without a PIN, those a PIN can tell apart."""
    mine = (ProxyParticipant.service_sid == service.sid) & ProxyParticipant.identifier.in_(parties)
    held = select(ProxyParticipant.pool_number_sid).where(
        mine, ProxyParticipant.active.is_(True), ProxyParticipant.pool_number_sid.is_not(None)
    )
    if sharing:
        held = held.where(ProxyParticipant.pin == "")
    query = select(PoolNumber.sid, PoolNumber.e164).where(
        PoolNumber.service_sid == service.sid,
        PoolNumber.is_reserved.is_(False),
        PoolNumber.sid.not_in(held),
    )
    if region is not None:
        query = query.join(Number, Number.number_key == PoolNumber.number_key).where(
            Number.country == region
        )
    if cooloff_s > 0:
        # A closed session sets its participants inactive and stamps updated_at.
        released = select(ProxyParticipant.pool_number_sid).where(
            mine,
            ProxyParticipant.active.is_(None),
            ProxyParticipant.pool_number_sid.is_not(None),
            ProxyParticipant.updated_at >= now - dt.timedelta(seconds=cooloff_s),
        )
        query = query.where(PoolNumber.sid.not_in(released))
    if exclude:
        query = query.where(PoolNumber.sid.not_in(exclude))
    return query.order_by(func.random()).limit(CANDIDATES_PER_ROUND)


@dataclass(frozen=True, slots=True)
class Pins:
    """The parties' PINs of a PIN session: given (``first``, ``second``), or generated
    (``length`` digits) for the number the session gets."""

    first: str = ""
    second: str = ""
    length: int = 0

    def __post_init__(self) -> None:
        if not self.length and not (self.first and self.second):
            raise ValueError("give both PINs or a length to generate them")


async def _pins_for(session: AsyncSession, e164: str, pins: Pins) -> dict[str, str] | None:
    """The PIN of each role on the number ``e164``; None when no two free PINs of that
    length are left on it."""
    if not pins.length:
        return {FIRST_PARTY: pins.first, SECOND_PARTY: pins.second}
    taken = await pins_on(session, e164)
    chosen: list[str] = []
    for _ in range(1000):
        pin = "".join(secrets.choice("0123456789") for _ in range(pins.length))
        if pin not in taken and pin not in chosen:
            chosen.append(pin)
            if len(chosen) == 2:
                return {FIRST_PARTY: chosen[0], SECOND_PARTY: chosen[1]}
    return None


async def _claim_pair(
    session: AsyncSession,
    service: ProxyService,
    proxy_session: ProxySession,
    number_sid: str,
    parties: Sequence[tuple[str, str]],
    now: dt.datetime,
    pins: dict[str, str] | None = None,
) -> list[ProxyParticipant] | None:
    """Both parties on ``number_sid`` (with their PINs, by role), or neither (None) when
    a pair is taken."""
    claimed: list[ProxyParticipant] = []
    try:
        async with session.begin_nested():
            for identifier, role in parties:
                claimed.append(
                    await allocate(
                        session,
                        service,
                        proxy_session,
                        identifier=identifier,
                        friendly_name=role,
                        proxy_identifier=None,
                        proxy_identifier_sid=number_sid,
                        now=now,
                        pin=(pins or {}).get(role, ""),
                    )
                )
    except errors.ProxyError as exc:
        if exc.code != errors.PAIR_CONFLICT:
            raise
        # The savepoint took the rows back; the objects must not stay in the session.
        for participant in claimed:
            session.expunge(participant)
        return None
    return claimed


async def _exhausted(
    session: AsyncSession, service: ProxyService, region: str | None, parties: Sequence[str]
) -> errors.ProxyError:
    """Why no number could be had, as the allocator words it (with who found the pool
    empty, for the pool's exhaustion events)."""
    exhausted = errors.Exhaustion(service.account_id, service.sid, " / ".join(parties))
    unreserved = select(func.count()).select_from(PoolNumber)
    unreserved = unreserved.where(
        PoolNumber.service_sid == service.sid, PoolNumber.is_reserved.is_(False)
    )
    if not await session.scalar(unreserved):
        return errors.ProxyError(
            errors.NO_UNRESERVED_NUMBER,
            400,
            "No unreserved numbers in this Service's pool",
            exhaustion=exhausted,
        )
    if region is not None:
        in_region = unreserved.join(Number, Number.number_key == PoolNumber.number_key).where(
            Number.country == region
        )
        if not await session.scalar(in_region):
            return errors.ProxyError(
                errors.NO_NUMBER_FOR_COUNTRY,
                400,
                f"No number of this Service's pool is in the first party's country ({region})",
                exhaustion=exhausted,
            )
    return errors.ProxyError(
        errors.ALL_NUMBERS_IN_USE,
        400,
        f"Every usable number of this Service's pool is already in use by {' or '.join(parties)} "
        "in other open sessions",
        exhaustion=exhausted,
    )


async def create_shared(
    session: AsyncSession,
    service: ProxyService,
    *,
    first_party: str,
    second_party: str,
    date_expiry: dt.datetime,
    call_time_limit_s: int | None,
    plivo_options: str,
    region: str | None = None,
    cooloff_s: int = 0,
    now: dt.datetime | None = None,
    pins: Pins | None = None,
) -> SharedSession:
    """A new open session of ``service`` whose two parties (E.164, different) share one
    proxy number; ``ProxyError`` if the pool has none for them. Nothing is committed.

    With ``pins`` (a PIN session), each party's participant row carries its PIN, and
    when the pool has no number free of both parties, a number they hold only in other
    PIN sessions is shared, under PINs that differ from those sessions' on it."""
    now = now or utcnow()
    if first_party == second_party:
        raise errors.invalid("the first and the second party must be different numbers")
    if as_utc(date_expiry) <= now:  # type: ignore[operator]
        raise errors.invalid("the session would expire before it starts")
    proxy_session = ProxySession(
        sid=sids.new_sid(sids.SESSION),
        service_sid=service.sid,
        account_id=service.account_id,
        unique_name=None,
        status="open",
        mode="voice-only",
        ttl=0,  # an absolute end (date_expiry): calls do not extend the session
        date_expiry=date_expiry,
        date_started=now,
        created_at=now,
        updated_at=now,
        call_time_limit_s=call_time_limit_s,
        plivo_options=plivo_options,
    )
    proxy_session.expires_at = expiry_of(proxy_session)
    session.add(proxy_session)
    await session.flush()
    parties = sorted([(first_party, FIRST_PARTY), (second_party, SECOND_PARTY)])
    identifiers = [identifier for identifier, _ in parties]
    tried: set[str] = set()
    # A PIN session takes a number of its own while the pool has one, and only then
    # shares one with the parties' other PIN sessions.
    for sharing in (False, True) if pins is not None else (False,):
        for _ in range(ROUNDS):
            query = _candidates(
                service,
                identifiers,
                region=region,
                cooloff_s=cooloff_s,
                exclude=tried,
                now=now,
                sharing=sharing,
            )
            candidates = [(row.sid, row.e164) for row in (await session.execute(query)).all()]
            if not candidates:
                break
            for number_sid, e164 in candidates:
                tried.add(number_sid)
                chosen = None if pins is None else await _pins_for(session, e164, pins)
                if pins is not None and chosen is None:
                    continue  # every PIN of that length is taken on this number
                claimed = await _claim_pair(
                    session, service, proxy_session, number_sid, parties, now, chosen
                )
                if claimed is not None:
                    by_role = {participant.friendly_name: participant for participant in claimed}
                    return SharedSession(proxy_session, by_role[FIRST_PARTY], by_role[SECOND_PARTY])
    raise await _exhausted(session, service, region, identifiers)


# -- reading -----------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """A range filter: equality, a half-open ``within`` range and the four comparisons
    (None = no bound)."""

    eq: Any = None
    within: tuple[Any, Any] | None = None
    lt: Any = None
    lte: Any = None
    gt: Any = None
    gte: Any = None

    def apply(self, column: Any) -> list[Any]:
        clauses = []
        if self.eq is not None:
            clauses.append(column == self.eq)
        if self.within is not None:
            clauses += [column >= self.within[0], column < self.within[1]]
        if self.lt is not None:
            clauses.append(column < self.lt)
        if self.lte is not None:
            clauses.append(column <= self.lte)
        if self.gt is not None:
            clauses.append(column > self.gt)
        if self.gte is not None:
            clauses.append(column >= self.gte)
        return clauses


@dataclass(frozen=True)
class SharedFilter:
    first_party: str | None = None
    second_party: str | None = None
    virtual_number: str | None = None
    open: bool | None = None  # True: open sessions, False: ended ones, None: both
    created: Bounds = field(default_factory=Bounds)
    expiry: Bounds = field(default_factory=Bounds)
    duration_s: Bounds = field(default_factory=Bounds)


def _duration_s(session: AsyncSession) -> Any:
    """Whole seconds from a session's creation to its (planned or actual) end."""
    end, start = ProxySession.date_expiry, ProxySession.created_at
    seconds: Any
    if session.get_bind().dialect.name == "postgresql":
        seconds = func.extract("epoch", end - start)
    else:
        seconds = (func.julianday(end) - func.julianday(start)) * 86400
    return cast(func.round(seconds), Integer)


def _party(service_sid: str, role: str, **match: str) -> Any:
    """The sessions in which a participant of ``role`` has the matching column values."""
    query = select(ProxyParticipant.session_sid).where(
        ProxyParticipant.service_sid == service_sid, ProxyParticipant.friendly_name == role
    )
    for name, value in match.items():
        query = query.where(getattr(ProxyParticipant, name) == value)
    return query


def _shared(service_sid: str) -> Any:
    # Sessions made by create_shared carry their options; other sessions of the service
    # (made through the Twilio API) are not shared-number sessions.
    return and_(ProxySession.service_sid == service_sid, ProxySession.plivo_options.is_not(None))


async def _complete(session: AsyncSession, rows: Sequence[ProxySession]) -> list[SharedSession]:
    """Each session with its parties and its calls' count and seconds: two queries for
    the whole page."""
    sids_ = [row.sid for row in rows]
    if not sids_:
        return []
    participants = (
        await session.scalars(
            select(ProxyParticipant).where(ProxyParticipant.session_sid.in_(sids_))
        )
    ).all()
    roles: dict[tuple[str, str | None], ProxyParticipant] = {
        (p.session_sid, p.friendly_name): p for p in participants
    }
    totals = {
        row.session_sid: (int(row.calls), int(row.seconds or 0))
        for row in (
            await session.execute(
                select(
                    ProxyInteraction.session_sid,
                    func.count().label("calls"),
                    func.sum(ProxyInteraction.duration_s).label("seconds"),
                )
                .where(ProxyInteraction.session_sid.in_(sids_))
                .group_by(ProxyInteraction.session_sid)
            )
        ).all()
    }
    complete = []
    for row in rows:
        first = roles.get((row.sid, FIRST_PARTY))
        second = roles.get((row.sid, SECOND_PARTY))
        if first is None or second is None:
            continue  # not a whole shared session (a party deleted through the Twilio API)
        calls, seconds = totals.get(row.sid, (0, 0))
        complete.append(SharedSession(row, first, second, calls, seconds))
    return complete


async def get_shared(session: AsyncSession, service_sid: str, sid: str) -> SharedSession:
    row = (
        await session.scalars(
            select(ProxySession).where(_shared(service_sid), ProxySession.sid == sid)
        )
    ).first()
    found = await _complete(session, [row] if row is not None else [])
    if not found:
        raise errors.not_found("Session", sid)
    return found[0]


async def list_shared(
    session: AsyncSession, service_sid: str, where: SharedFilter, *, offset: int, limit: int
) -> tuple[list[SharedSession], int]:
    """One page of the service's shared sessions, newest first, and how many match."""
    clauses: list[Any] = [_shared(service_sid)]
    if where.first_party is not None:
        party = _party(service_sid, FIRST_PARTY, identifier=where.first_party)
        clauses.append(ProxySession.sid.in_(party))
    if where.second_party is not None:
        party = _party(service_sid, SECOND_PARTY, identifier=where.second_party)
        clauses.append(ProxySession.sid.in_(party))
    if where.virtual_number is not None:
        party = _party(service_sid, FIRST_PARTY, proxy_identifier=where.virtual_number)
        clauses.append(ProxySession.sid.in_(party))
    if where.open is True:
        clauses.append(ProxySession.status.in_(OPEN_STATUSES))
    elif where.open is False:
        clauses.append(ProxySession.status.not_in(OPEN_STATUSES))
    clauses += where.created.apply(ProxySession.created_at)
    clauses += where.expiry.apply(ProxySession.date_expiry)
    clauses += where.duration_s.apply(_duration_s(session))
    total = int(
        await session.scalar(select(func.count()).select_from(ProxySession).where(*clauses)) or 0
    )
    rows = (
        await session.scalars(
            select(ProxySession)
            .where(*clauses)
            .order_by(ProxySession.created_at.desc(), ProxySession.sid)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return await _complete(session, rows), total


# -- changing ----------------------------------------------------------------------


async def update_shared(
    session: AsyncSession,
    shared: SharedSession,
    *,
    date_expiry: dt.datetime | None,
    call_time_limit_s: int | None,
    plivo_options: str | None,
    now: dt.datetime | None = None,
) -> SharedSession:
    """A new end, call limit or options for an open shared session."""
    now = now or utcnow()
    row = shared.row
    if row.status not in OPEN_STATUSES:
        raise errors.invalid(f"the session has ended ({row.closed_reason or row.status})")
    if date_expiry is not None:
        if as_utc(date_expiry) <= now:  # type: ignore[operator]
            raise errors.invalid("the new expiry is in the past")
        row.date_expiry = date_expiry
        row.expires_at = expiry_of(row)
    if call_time_limit_s is not None:
        row.call_time_limit_s = call_time_limit_s
    if plivo_options is not None:
        row.plivo_options = plivo_options
    row.updated_at = now
    await session.flush()
    return shared


async def end_shared(
    session: AsyncSession, shared: SharedSession, *, now: dt.datetime | None = None
) -> None:
    """End an open shared session now: its numbers are freed, the row stays (ended)."""
    now = now or utcnow()
    row = shared.row
    if row.status not in OPEN_STATUSES:
        raise errors.not_found("Session", row.sid)
    row.date_expiry = now
    row.expires_at = now
    await close_session(session, row, reason="deleted", now=now)
    await session.flush()


__all__ = [
    "FIRST_PARTY",
    "SECOND_PARTY",
    "Bounds",
    "Pins",
    "SharedFilter",
    "SharedSession",
    "create_shared",
    "end_shared",
    "get_shared",
    "list_shared",
    "pins_on",
    "update_shared",
]


async def pins_on(session: AsyncSession, e164: str) -> set[str]:
    """The PINs the open sessions on the number ``e164`` use: a generated PIN is unique
    on its number, whoever calls."""
    query = select(ProxyParticipant.pin).where(
        ProxyParticipant.proxy_identifier == e164,
        ProxyParticipant.active.is_(True),
        ProxyParticipant.pin != "",
    )
    return set((await session.scalars(query)).all())
