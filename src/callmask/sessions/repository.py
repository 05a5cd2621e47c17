"""Services, pool numbers, sessions, participants and interactions of one account.

Every method takes the account id and answers another account's object as not found
(20404), so tenancy holds below the API too. Nothing here commits: the caller's
transaction does, so a request that fails half-way (a session whose second participant
cannot get a number) leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.errors import InvalidInput
from callmask.phone import normalise
from callmask.sessions import errors, sids
from callmask.sessions.allocator import allocate
from callmask.sessions.lifetime import OPEN_STATUSES, as_utc, close_session, expiry_of
from callmask.store.models import (
    Action,
    Number,
    PoolNumber,
    ProxyInteraction,
    ProxyParticipant,
    ProxyService,
    ProxySession,
    utcnow,
)

SELECTION_BEHAVIORS = ("prefer-sticky", "avoid-sticky")
GEO_MATCH_LEVELS = ("area-code", "overlay", "radius", "country")
MODES = ("message-only", "voice-only", "voice-and-message")
MAX_UNIQUE_NAME = 191
MAX_PARTICIPANTS = 2  # a voice session bridges two parties


def _unique_name(value: str | None, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise errors.invalid("UniqueName is required")
        return None
    if len(value) > MAX_UNIQUE_NAME:
        raise errors.invalid(f"UniqueName is longer than {MAX_UNIQUE_NAME} characters")
    return value


def _ttl(value: int | None, name: str) -> int | None:
    if value is not None and not 0 <= value <= 365 * 24 * 3600:
        raise errors.invalid(f"{name} must be between 0 and 31536000 seconds")
    return value


def _choice(value: str, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise errors.invalid(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def e164(value: str, name: str) -> str:
    """A participant's or a pool number's E.164 form; 20001 if it is none."""
    if not value.startswith("+"):
        raise errors.invalid(f"{name} must be an E.164 number starting with +, not {value!r}")
    try:
        return normalise(value)
    except InvalidInput as exc:
        raise errors.invalid(f"{name}: {exc}") from exc


async def _page(session: AsyncSession, query: Any, offset: int, limit: int) -> Sequence[Any]:
    return (await session.scalars(query.offset(offset).limit(limit))).all()


Child = TypeVar("Child", ProxyParticipant, ProxyInteraction)


async def _child(
    session: AsyncSession, model: type[Child], proxy_session: ProxySession, sid: str
) -> Child:
    """A participant or interaction of ``proxy_session``; another session's is not found."""
    found = await session.get(model, sid)
    if found is None or found.session_sid != proxy_session.sid:
        raise errors.not_found(model.__name__.removeprefix("Proxy"), sid)
    return found


class Services:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        account_id: str,
        *,
        unique_name: str,
        default_ttl: int = 0,
        callback_url: str | None = None,
        intercept_callback_url: str | None = None,
        out_of_session_callback_url: str | None = None,
        number_selection_behavior: str = "prefer-sticky",
        geo_match_level: str = "country",
        chat_instance_sid: str | None = None,
        now: dt.datetime | None = None,
    ) -> ProxyService:
        now = now or utcnow()
        name = _unique_name(unique_name, required=True)
        assert name is not None
        if await self._by_name(account_id, name) is not None:
            raise errors.conflict(f"a Service with UniqueName {name!r} already exists")
        service = ProxyService(
            sid=sids.new_sid(sids.SERVICE),
            account_id=account_id,
            unique_name=name,
            default_ttl=_ttl(default_ttl, "DefaultTtl") or 0,
            callback_url=callback_url,
            intercept_callback_url=intercept_callback_url,
            out_of_session_callback_url=out_of_session_callback_url,
            number_selection_behavior=_choice(
                number_selection_behavior, SELECTION_BEHAVIORS, "NumberSelectionBehavior"
            ),
            geo_match_level=_choice(geo_match_level, GEO_MATCH_LEVELS, "GeoMatchLevel"),
            chat_instance_sid=chat_instance_sid,
            created_at=now,
            updated_at=now,
        )
        self.session.add(service)
        await self.session.flush()
        return service

    async def _by_name(self, account_id: str, name: str) -> ProxyService | None:
        query = select(ProxyService).where(
            ProxyService.account_id == account_id, ProxyService.unique_name == name
        )
        return (await self.session.scalars(query)).first()

    async def get(self, account_id: str, sid_or_unique_name: str) -> ProxyService:
        service = await self.session.get(ProxyService, sid_or_unique_name)
        if service is None or service.account_id != account_id:
            service = await self._by_name(account_id, sid_or_unique_name)
        if service is None:
            raise errors.not_found("Service", sid_or_unique_name)
        return service

    async def list(self, account_id: str, *, offset: int, limit: int) -> Sequence[ProxyService]:
        query = (
            select(ProxyService)
            .where(ProxyService.account_id == account_id)
            .order_by(ProxyService.created_at, ProxyService.sid)
        )
        return await _page(self.session, query, offset, limit)

    async def update(self, account_id: str, sid: str, **fields: Any) -> ProxyService:
        service = await self.get(account_id, sid)
        for name, value in fields.items():
            if value is None:
                continue
            match name:
                case "unique_name":
                    value = _unique_name(value, required=True)
                    assert value is not None
                    other = await self._by_name(account_id, value)
                    if other is not None and other.sid != service.sid:
                        raise errors.conflict(f"a Service with UniqueName {value!r} exists")
                case "default_ttl":
                    value = _ttl(value, "DefaultTtl")
                case "number_selection_behavior":
                    value = _choice(value, SELECTION_BEHAVIORS, "NumberSelectionBehavior")
                case "geo_match_level":
                    value = _choice(value, GEO_MATCH_LEVELS, "GeoMatchLevel")
                case (
                    "callback_url"
                    | "intercept_callback_url"
                    | "out_of_session_callback_url"
                    | "chat_instance_sid"
                ):
                    value = value or None  # an empty value clears it
                case _:
                    raise errors.invalid(f"unknown Service field {name}")
            setattr(service, name, value)
        service.updated_at = utcnow()
        await self.session.flush()
        return service

    async def delete(self, account_id: str, sid: str) -> None:
        service = await self.get(account_id, sid)
        open_sessions = await self.session.scalars(
            select(ProxySession).where(
                ProxySession.service_sid == service.sid, ProxySession.status.in_(OPEN_STATUSES)
            )
        )
        now = utcnow()
        for proxy_session in open_sessions.all():
            await close_session(self.session, proxy_session, reason="service deleted", now=now)
        await self.session.delete(service)
        await self.session.flush()


class PoolNumbers:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        account_id: str,
        service_sid: str,
        *,
        number_sid: str | None = None,
        phone_number: str | None = None,
        is_reserved: bool = False,
        now: dt.datetime | None = None,
    ) -> PoolNumber:
        """Lend one of the account's DIDs to the service's pool. ``number_sid`` names a
        pool number (``PN…``) the account has lent elsewhere before, which moves it."""
        now = now or utcnow()
        service = await Services(self.session).get(account_id, service_sid)
        if (number_sid is None) == (phone_number is None):
            raise errors.invalid("give exactly one of Sid and PhoneNumber")
        if number_sid is not None:
            lent = await self.session.get(PoolNumber, number_sid)
            if lent is None or lent.account_id != account_id:
                raise errors.not_found("PhoneNumber", number_sid)
            raise errors.conflict(f"{lent.e164} is already in the pool of {lent.service_sid}")
        assert phone_number is not None
        e164_number = e164(phone_number, "PhoneNumber")
        number = (
            await self.session.scalars(select(Number).where(Number.e164 == e164_number))
        ).first()
        if number is None or number.account_id != account_id:
            raise errors.invalid(
                f"{e164_number} is not a number of this account: buy it first (/numbers/1)"
            )
        action = await self.session.scalar(
            select(Action.action_key).where(Action.number_key == number.number_key)
        )
        if action is not None:
            raise errors.conflict(
                f"{e164_number} has a call action ({action}); a number is either in a pool "
                "or has an action, never both: delete the action first"
            )
        if await self.session.scalar(
            select(PoolNumber.sid).where(PoolNumber.number_key == number.number_key)
        ):
            raise errors.conflict(f"{e164_number} is already in a pool")
        pool_number = PoolNumber(
            sid=sids.new_sid(sids.PHONE_NUMBER),
            service_sid=service.sid,
            account_id=account_id,
            number_key=number.number_key,
            e164=e164_number,
            is_reserved=bool(is_reserved),
            created_at=now,
            updated_at=now,
        )
        self.session.add(pool_number)
        await self.session.flush()
        return pool_number

    async def get(self, account_id: str, service_sid: str, sid: str) -> PoolNumber:
        service = await Services(self.session).get(account_id, service_sid)
        query = select(PoolNumber).where(
            PoolNumber.service_sid == service.sid,
            or_(PoolNumber.sid == sid, PoolNumber.e164 == sid),
        )
        found = (await self.session.scalars(query)).first()
        if found is None:
            raise errors.not_found("PhoneNumber", sid)
        return found

    async def list(
        self, account_id: str, service_sid: str, *, offset: int, limit: int
    ) -> Sequence[PoolNumber]:
        service = await Services(self.session).get(account_id, service_sid)
        query = (
            select(PoolNumber)
            .where(PoolNumber.service_sid == service.sid)
            .order_by(PoolNumber.created_at, PoolNumber.sid)
        )
        return await _page(self.session, query, offset, limit)

    async def update(
        self, account_id: str, service_sid: str, sid: str, *, is_reserved: bool
    ) -> PoolNumber:
        pool_number = await self.get(account_id, service_sid, sid)
        pool_number.is_reserved = bool(is_reserved)
        pool_number.updated_at = utcnow()
        await self.session.flush()
        return pool_number

    async def remove(self, account_id: str, service_sid: str, sid: str) -> None:
        pool_number = await self.get(account_id, service_sid, sid)
        if await self.in_use(pool_number.sid):
            raise errors.conflict(
                f"{pool_number.e164} is the proxy number of open sessions; close them first"
            )
        await self.session.delete(pool_number)
        await self.session.flush()

    async def in_use(self, pool_number_sid: str) -> int:
        """Open sessions using the number (as anyone's proxy identifier)."""
        query = select(func.count(func.distinct(ProxyParticipant.session_sid))).where(
            ProxyParticipant.pool_number_sid == pool_number_sid,
            ProxyParticipant.active.is_(True),
        )
        return int(await self.session.scalar(query) or 0)


@dataclass(frozen=True)
class ParticipantRequest:
    identifier: str
    friendly_name: str | None = None
    proxy_identifier: str | None = None
    proxy_identifier_sid: str | None = None


class Sessions:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        account_id: str,
        service_sid: str,
        *,
        unique_name: str | None = None,
        ttl: int | None = None,
        date_expiry: dt.datetime | None = None,
        mode: str = "voice-and-message",
        status: str = "open",
        participants: Sequence[ParticipantRequest] = (),
        now: dt.datetime | None = None,
    ) -> ProxySession:
        now = now or utcnow()
        service = await Services(self.session).get(account_id, service_sid)
        name = _unique_name(unique_name, required=False)
        _choice(mode, MODES, "Mode")
        if mode == "message-only":
            raise errors.invalid("Mode message-only: callmask carries voice only")
        _choice(status, OPEN_STATUSES, "Status")
        if date_expiry is not None and as_utc(date_expiry) <= now:  # type: ignore[operator]
            raise errors.invalid("DateExpiry is in the past")
        if len(participants) > MAX_PARTICIPANTS:
            raise errors.invalid(f"a session has at most {MAX_PARTICIPANTS} participants")
        if name is not None:
            taken = await self.session.scalar(
                select(ProxySession.sid).where(
                    ProxySession.service_sid == service.sid, ProxySession.unique_name == name
                )
            )
            if taken is not None:
                raise errors.conflict(f"a Session with UniqueName {name!r} already exists")
        effective_ttl = service.default_ttl if ttl is None else _ttl(ttl, "Ttl") or 0
        proxy_session = ProxySession(
            sid=sids.new_sid(sids.SESSION),
            service_sid=service.sid,
            account_id=account_id,
            unique_name=name,
            status=status,
            mode=mode,
            ttl=effective_ttl,
            date_expiry=date_expiry,
            date_started=now,
            created_at=now,
            updated_at=now,
        )
        proxy_session.expires_at = expiry_of(proxy_session)
        self.session.add(proxy_session)
        await self.session.flush()
        added: list[str] = []  # a new session has no one else: no need to read who is in it
        for request in participants:
            participant = await Participants(self.session).add_to(
                service, proxy_session, request, now=now, present=added
            )
            added.append(participant.identifier)
        return proxy_session

    async def get(self, account_id: str, service_sid: str, sid_or_unique_name: str) -> ProxySession:
        service = await Services(self.session).get(account_id, service_sid)
        query = select(ProxySession).where(
            ProxySession.service_sid == service.sid,
            or_(
                ProxySession.sid == sid_or_unique_name,
                ProxySession.unique_name == sid_or_unique_name,
            ),
        )
        found = (await self.session.scalars(query)).first()
        if found is None:
            raise errors.not_found("Session", sid_or_unique_name)
        return found

    async def list(
        self, account_id: str, service_sid: str, *, offset: int, limit: int
    ) -> Sequence[ProxySession]:
        service = await Services(self.session).get(account_id, service_sid)
        query = (
            select(ProxySession)
            .where(ProxySession.service_sid == service.sid)
            .order_by(ProxySession.created_at.desc(), ProxySession.sid)
        )
        return await _page(self.session, query, offset, limit)

    async def update(
        self,
        account_id: str,
        service_sid: str,
        sid: str,
        *,
        ttl: int | None = None,
        date_expiry: dt.datetime | None = None,
        status: str | None = None,
        now: dt.datetime | None = None,
    ) -> ProxySession:
        now = now or utcnow()
        proxy_session = await self.get(account_id, service_sid, sid)
        if status is not None:
            _choice(status, (*OPEN_STATUSES, "closed"), "Status")
        is_open = proxy_session.status in OPEN_STATUSES
        if not is_open and (status in OPEN_STATUSES or ttl is not None or date_expiry):
            raise errors.invalid(f"Session {proxy_session.sid} is closed and cannot reopen")
        if ttl is not None:
            proxy_session.ttl = _ttl(ttl, "Ttl") or 0
        if date_expiry is not None:
            if as_utc(date_expiry) <= now:  # type: ignore[operator]
                raise errors.invalid("DateExpiry is in the past")
            proxy_session.date_expiry = date_expiry
        proxy_session.updated_at = now
        proxy_session.expires_at = expiry_of(proxy_session)
        if status == "closed" and is_open:
            await close_session(self.session, proxy_session, reason="closed by API", now=now)
        elif status is not None and is_open:
            proxy_session.status = status
        await self.session.flush()
        return proxy_session

    async def delete(self, account_id: str, service_sid: str, sid: str) -> None:
        proxy_session = await self.get(account_id, service_sid, sid)
        if proxy_session.status in OPEN_STATUSES:
            await close_session(self.session, proxy_session, reason="deleted", now=utcnow())
        await self.session.delete(proxy_session)
        await self.session.flush()


class Participants:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        account_id: str,
        service_sid: str,
        session_sid: str,
        request: ParticipantRequest,
        now: dt.datetime | None = None,
    ) -> ProxyParticipant:
        proxy_session = await Sessions(self.session).get(account_id, service_sid, session_sid)
        service = await Services(self.session).get(account_id, service_sid)
        return await self.add_to(service, proxy_session, request, now=now or utcnow())

    async def add_to(
        self,
        service: ProxyService,
        proxy_session: ProxySession,
        request: ParticipantRequest,
        *,
        now: dt.datetime,
        present: Sequence[str] | None = None,
    ) -> ProxyParticipant:
        """``present``: the session's participants, when the caller knows them."""
        if proxy_session.status not in OPEN_STATUSES:
            raise errors.invalid(f"Session {proxy_session.sid} is {proxy_session.status}")
        identifier = e164(request.identifier, "Identifier")
        if present is None:
            present = (
                await self.session.scalars(
                    select(ProxyParticipant.identifier).where(
                        ProxyParticipant.session_sid == proxy_session.sid,
                        ProxyParticipant.date_deleted.is_(None),
                    )
                )
            ).all()
        if identifier in present:
            raise errors.ProxyError(
                errors.DUPLICATE_PARTICIPANT,
                409,
                f"{identifier} is already a participant of Session {proxy_session.sid}",
            )
        if len(present) >= MAX_PARTICIPANTS:
            raise errors.invalid(f"a session has at most {MAX_PARTICIPANTS} participants")
        return await allocate(
            self.session,
            service,
            proxy_session,
            identifier=identifier,
            friendly_name=request.friendly_name,
            proxy_identifier=(
                e164(request.proxy_identifier, "ProxyIdentifier")
                if request.proxy_identifier
                else None
            ),
            proxy_identifier_sid=request.proxy_identifier_sid,
            now=now,
        )

    async def get(
        self, account_id: str, service_sid: str, session_sid: str, sid: str
    ) -> ProxyParticipant:
        proxy_session = await Sessions(self.session).get(account_id, service_sid, session_sid)
        return await _child(self.session, ProxyParticipant, proxy_session, sid)

    async def list(
        self, account_id: str, service_sid: str, session_sid: str, *, offset: int, limit: int
    ) -> Sequence[ProxyParticipant]:
        proxy_session = await Sessions(self.session).get(account_id, service_sid, session_sid)
        query = (
            select(ProxyParticipant)
            .where(ProxyParticipant.session_sid == proxy_session.sid)
            .order_by(ProxyParticipant.created_at, ProxyParticipant.sid)
        )
        return await _page(self.session, query, offset, limit)

    async def delete(self, account_id: str, service_sid: str, session_sid: str, sid: str) -> None:
        """Twilio's delete is soft: the participant stays listed with ``date_deleted``
        and no longer holds its proxy number."""
        participant = await self.get(account_id, service_sid, session_sid, sid)
        if participant.date_deleted is None:
            now = utcnow()
            participant.date_deleted = now
            participant.active = None
            participant.updated_at = now
            await self.session.flush()


class Interactions:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, account_id: str, service_sid: str, session_sid: str, sid: str
    ) -> ProxyInteraction:
        proxy_session = await Sessions(self.session).get(account_id, service_sid, session_sid)
        return await _child(self.session, ProxyInteraction, proxy_session, sid)

    async def list(
        self, account_id: str, service_sid: str, session_sid: str, *, offset: int, limit: int
    ) -> Sequence[ProxyInteraction]:
        proxy_session = await Sessions(self.session).get(account_id, service_sid, session_sid)
        query = (
            select(ProxyInteraction)
            .where(ProxyInteraction.session_sid == proxy_session.sid)
            .order_by(ProxyInteraction.created_at.desc(), ProxyInteraction.sid)
        )
        return await _page(self.session, query, offset, limit)

    async def delete(self, account_id: str, service_sid: str, session_sid: str, sid: str) -> None:
        interaction = await self.get(account_id, service_sid, session_sid, sid)
        await self.session.delete(interaction)
        await self.session.flush()
