"""What the call path needs of sessions: which session a call (caller, DID) belongs to,
and the interaction it becomes (``callmask.routing.sessions`` uses these)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from callmask.sessions import sids
from callmask.sessions.lifetime import OPEN_STATUSES, expiry_of, twilio_time
from callmask.store.models import (
    PoolNumber,
    ProxyInteraction,
    ProxyParticipant,
    ProxyService,
    ProxySession,
)
from callmask.webhooks.outbox import enqueue

INTERACTION = "proxy.interaction"


@dataclass(frozen=True)
class SessionRoute:
    account_id: str
    service_sid: str
    session_sid: str
    caller_participant_sid: str
    callee_participant_sid: str
    callee_identifier: str  # B's real number, E.164, to dial
    callee_proxy_identifier: str  # B's proxy number: the caller ID B sees
    callback_url: str | None
    intercept_callback_url: str | None


@dataclass(frozen=True)
class PoolRoute:
    """The DID is a pool number, but the caller has no open session with a second
    participant on it."""

    account_id: str
    service_sid: str
    out_of_session_callback_url: str | None


async def find_session_route(
    session: AsyncSession, caller_number: str, did: str
) -> SessionRoute | PoolRoute | None:
    """The call's session, or the pool it reached without one; ``None`` when the DID
    is in no pool. The first read starts with one probe of the allocator's unique index
    and joins the other participant and the service."""
    caller = aliased(ProxyParticipant)
    callee = aliased(ProxyParticipant)
    found = (
        await session.execute(
            select(caller.sid, callee, ProxyService)
            .join(
                callee,
                (callee.session_sid == caller.session_sid)
                & (callee.sid != caller.sid)
                & callee.active.is_(True),
            )
            .join(ProxyService, ProxyService.sid == caller.service_sid)
            .where(
                caller.proxy_identifier == did,
                caller.identifier == caller_number,
                caller.active.is_(True),
            )
        )
    ).first()
    if found is not None:
        caller_sid, other, service = found
        return SessionRoute(
            account_id=other.account_id,
            service_sid=other.service_sid,
            session_sid=other.session_sid,
            caller_participant_sid=caller_sid,
            callee_participant_sid=other.sid,
            callee_identifier=other.identifier,
            callee_proxy_identifier=other.proxy_identifier,
            callback_url=service.callback_url,
            intercept_callback_url=service.intercept_callback_url,
        )
    pool = (
        await session.execute(
            select(
                PoolNumber.service_sid,
                ProxyService.account_id,
                ProxyService.out_of_session_callback_url,
            )
            .join(ProxyService, ProxyService.sid == PoolNumber.service_sid)
            .where(PoolNumber.e164 == did)
        )
    ).first()
    if pool is None:
        return None
    return PoolRoute(pool.account_id, pool.service_sid, pool.out_of_session_callback_url)


def new_interaction_sid() -> str:
    return sids.new_sid(sids.INTERACTION)


async def interaction_ended(
    session: AsyncSession,
    route: SessionRoute,
    interaction_sid: str,
    *,
    call_id: str,
    started_at: dt.datetime,
    inbound_status: str,
    outbound_status: str,
    duration_s: int | None,
    now: dt.datetime,
) -> None:
    """Store the call as a voice interaction of its session, slide the session's ttl
    from the call's start, and send the interaction to the service's CallbackUrl
    (through the outbox, in this transaction).

    Written once the call has ended, not when it starts: a write before the far end
    is dialled would be a store commit on the post-dial path of every session call
    (on SQLite, a turn of the one writer), and the row is only complete at the end.
    A call still up is so not yet an interaction in the API."""
    interaction = ProxyInteraction(
        sid=interaction_sid,
        session_sid=route.session_sid,
        service_sid=route.service_sid,
        account_id=route.account_id,
        type="voice",
        data=None,
        inbound_participant_sid=route.caller_participant_sid,
        inbound_resource_sid=call_id,
        inbound_resource_status=inbound_status,
        inbound_resource_type="call",
        outbound_participant_sid=route.callee_participant_sid,
        outbound_resource_sid=call_id,
        outbound_resource_status=outbound_status,
        outbound_resource_type="call",
        duration_s=duration_s,
        created_at=started_at,
        updated_at=now,
    )
    proxy_session = await session.get(ProxySession, route.session_sid)
    if proxy_session is None:
        return  # deleted while the call was up: nothing to attach the call to
    session.add(interaction)
    if proxy_session.status in OPEN_STATUSES:
        proxy_session.status = "in-progress"
        proxy_session.date_last_interaction = started_at
        proxy_session.updated_at = now
        proxy_session.expires_at = expiry_of(proxy_session)
    if route.callback_url:
        await enqueue(
            session,
            account_id=interaction.account_id,
            event_type=INTERACTION,
            url=route.callback_url,
            payload={
                "interactionSid": interaction.sid,
                "interactionSessionSid": interaction.session_sid,
                "interactionServiceSid": interaction.service_sid,
                "interactionAccountSid": interaction.account_id,
                "interactionType": "Voice",
                "interactionData": "",
                "interactionDateCreated": twilio_time(started_at),
                "interactionDateUpdated": twilio_time(now),
                "inboundParticipantSid": interaction.inbound_participant_sid,
                "inboundResourceSid": call_id,
                "inboundResourceStatus": inbound_status,
                "inboundResourceType": "call",
                "outboundParticipantSid": interaction.outbound_participant_sid,
                "outboundResourceSid": call_id,
                "outboundResourceStatus": outbound_status,
                "outboundResourceType": "call",
                "duration": duration_s,
            },
            ordering_key=interaction.session_sid,
        )
    await session.flush()
