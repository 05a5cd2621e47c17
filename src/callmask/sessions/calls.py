"""What the call path needs of sessions: which session a call (caller, DID) belongs to,
and the interaction it becomes (``callmask.routing.sessions`` uses these)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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
    session: AsyncSession, caller: str, did: str
) -> SessionRoute | PoolRoute | None:
    """The call's session, or the pool it reached without one; ``None`` when the DID
    is in no pool. The first read is one probe of the allocator's unique index."""
    caller_row = (
        await session.execute(
            select(ProxyParticipant.sid, ProxyParticipant.session_sid).where(
                ProxyParticipant.proxy_identifier == did,
                ProxyParticipant.identifier == caller,
                ProxyParticipant.active.is_(True),
            )
        )
    ).first()
    if caller_row is not None:
        found = (
            await session.execute(
                select(ProxyParticipant, ProxyService)
                .join(ProxyService, ProxyService.sid == ProxyParticipant.service_sid)
                .where(
                    ProxyParticipant.session_sid == caller_row.session_sid,
                    ProxyParticipant.sid != caller_row.sid,
                    ProxyParticipant.active.is_(True),
                )
            )
        ).first()
        if found is not None:
            callee, service = found
            return SessionRoute(
                account_id=callee.account_id,
                service_sid=callee.service_sid,
                session_sid=callee.session_sid,
                caller_participant_sid=caller_row.sid,
                callee_participant_sid=callee.sid,
                callee_identifier=callee.identifier,
                callee_proxy_identifier=callee.proxy_identifier,
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


async def interaction_started(
    session: AsyncSession, route: SessionRoute, *, call_id: str, now: dt.datetime
) -> str:
    """Record the call as a voice interaction; the session is in progress and its ttl
    runs from now. Returns the interaction's sid."""
    interaction = ProxyInteraction(
        sid=sids.new_sid(sids.INTERACTION),
        session_sid=route.session_sid,
        service_sid=route.service_sid,
        account_id=route.account_id,
        type="voice",
        data=None,
        inbound_participant_sid=route.caller_participant_sid,
        inbound_resource_sid=call_id,
        inbound_resource_status="in-progress",
        inbound_resource_type="call",
        outbound_participant_sid=route.callee_participant_sid,
        outbound_resource_sid=call_id,
        outbound_resource_status="initiated",
        outbound_resource_type="call",
        created_at=now,
        updated_at=now,
    )
    session.add(interaction)
    proxy_session = await session.get(ProxySession, route.session_sid)
    if proxy_session is not None and proxy_session.status in OPEN_STATUSES:
        proxy_session.status = "in-progress"
        proxy_session.date_last_interaction = now
        proxy_session.updated_at = now
        proxy_session.expires_at = expiry_of(proxy_session)
    await session.flush()
    return interaction.sid


async def interaction_ended(
    session: AsyncSession,
    interaction_sid: str,
    *,
    inbound_status: str,
    outbound_status: str,
    duration_s: int | None,
    now: dt.datetime,
) -> None:
    """Store how the call ended and send the interaction to the service's CallbackUrl
    (through the outbox, in this transaction)."""
    interaction = await session.get(ProxyInteraction, interaction_sid)
    if interaction is None:
        return  # its session was deleted while the call was up
    interaction.inbound_resource_status = inbound_status
    interaction.outbound_resource_status = outbound_status
    interaction.duration_s = duration_s
    interaction.updated_at = now
    service = await session.get(ProxyService, interaction.service_sid)
    if service is not None and service.callback_url:
        await enqueue(
            session,
            account_id=interaction.account_id,
            event_type=INTERACTION,
            url=service.callback_url,
            payload={
                "interactionSid": interaction.sid,
                "interactionSessionSid": interaction.session_sid,
                "interactionServiceSid": interaction.service_sid,
                "interactionAccountSid": interaction.account_id,
                "interactionType": "Voice",
                "interactionData": "",
                "interactionDateCreated": twilio_time(interaction.created_at),
                "interactionDateUpdated": twilio_time(now),
                "inboundParticipantSid": interaction.inbound_participant_sid,
                "inboundResourceSid": interaction.inbound_resource_sid,
                "inboundResourceStatus": inbound_status,
                "inboundResourceType": "call",
                "outboundParticipantSid": interaction.outbound_participant_sid,
                "outboundResourceSid": interaction.outbound_resource_sid,
                "outboundResourceStatus": outbound_status,
                "outboundResourceType": "call",
                "duration": duration_s,
            },
            ordering_key=interaction.session_sid,
        )
    await session.flush()
