"""What the call path needs of sessions: which session a call (caller, DID) belongs to,
and the rows its interaction leaves (``callmask.routing.sessions`` uses these).

Both sit on the call path, so neither builds ORM objects: the lookup is one prepared
read on the post-dial path (``store.postdial``), and the interaction is two statements
built once, which the call ledger writes in the CDR's own transaction, one executemany
per statement over every call of its batch (``calls.ledger``)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, insert, select, update

from callmask.calls.ledger import Kept, RowWrite
from callmask.routing.decisions import RecordCall
from callmask.sessions import sids
from callmask.sessions.lifetime import OPEN_STATUSES, twilio_time
from callmask.sessions.shared import FIRST_PARTY
from callmask.store.models import (
    PoolNumber,
    ProxyInteraction,
    ProxyParticipant,
    ProxyService,
    ProxySession,
)
from callmask.store.postdial import PostDialReader, prepare
from callmask.webhooks.outbox import new_event

INTERACTION = "proxy.interaction"


@dataclass(frozen=True, slots=True)
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
    ttl: int  # the session's, as the call found it: the interaction slides it
    time_limit_s: int | None = None  # Plivo's call_time_limit
    pin: PinCheck | None = None  # the caller must enter a PIN before being put through
    record: RecordCall | None = None  # Plivo's record, once both parties answered


@dataclass(frozen=True, slots=True)
class PinCheck:
    """A Plivo session's PIN authentication, for the party calling."""

    pin: str
    attempts: int  # Plivo's pin_retry is the retries after the first
    wait_s: float  # Plivo's pin_retry_wait
    # The customer's audio for the prompts (pin_prompt_play, incorrect_pin_play), as
    # the account's audio file ids; None: callmask's spoken prompt.
    prompt_file_id: str | None = None
    incorrect_file_id: str | None = None


def pin_check(caller_role: str | None, plivo_options: str | None) -> PinCheck | None:
    """The PIN the calling party must enter, from the session's Plivo options; None when
    the session asks for none."""
    if not plivo_options:
        return None
    options = json.loads(plivo_options)
    if not options.get("is_pin_authentication_required"):
        return None
    pin = options.get("first_party_pin" if caller_role == FIRST_PARTY else "second_party_pin")
    if not pin:
        return None
    return PinCheck(
        pin=str(pin),
        attempts=int(options.get("pin_retry", 1)) + 1,
        wait_s=float(options.get("pin_retry_wait", 5)),
        prompt_file_id=options.get("pin_prompt_play_file_id"),
        incorrect_file_id=options.get("incorrect_pin_play_file_id"),
    )


def record_of(session_sid: str, plivo_options: str | None) -> RecordCall | None:
    """Plivo's ``record`` of the session: the format and where to announce the file."""
    if not plivo_options:
        return None
    options = json.loads(plivo_options)
    if not options.get("record"):
        return None
    return RecordCall(
        file_format=str(options.get("record_file_format", "mp3")),
        callback_url=options.get("recording_callback_url") or None,
        session_sid=session_sid,
    )


@dataclass(frozen=True, slots=True)
class PoolRoute:
    """The DID is a pool number, but the caller has no open session with a second
    participant on it."""

    account_id: str
    service_sid: str
    out_of_session_callback_url: str | None


_PARTICIPANTS: Table = ProxyParticipant.__table__  # type: ignore[assignment]
_CALLER = _PARTICIPANTS.alias("caller")
_CALLEE = _PARTICIPANTS.alias("callee")
_SERVICES: Table = ProxyService.__table__  # type: ignore[assignment]
_SESSIONS: Table = ProxySession.__table__  # type: ignore[assignment]

# Starts with one probe of the allocator's unique index (proxy_identifier, identifier,
# active, ...) for the caller, then the other participant by session and two
# primary-key joins. Two rows at most: a second one means the caller shares the number
# among PIN sessions, and the PIN the caller enters says which (SESSION_OF_CALLER_PIN).
_OF_CALLER = (
    select(
        _CALLER.c.sid,
        _CALLEE.c.sid,
        _CALLEE.c.account_id,
        _CALLEE.c.service_sid,
        _CALLEE.c.session_sid,
        _CALLEE.c.identifier,
        _CALLEE.c.proxy_identifier,
        _SERVICES.c.callback_url,
        _SERVICES.c.intercept_callback_url,
        _SESSIONS.c.ttl,
        _SESSIONS.c.call_time_limit_s,
        _CALLER.c.friendly_name,
        _SESSIONS.c.plivo_options,
        _CALLER.c.pin,
    )
    .select_from(_CALLER)
    .join(
        _CALLEE,
        (_CALLEE.c.session_sid == _CALLER.c.session_sid)
        & (_CALLEE.c.sid != _CALLER.c.sid)
        & _CALLEE.c.active.is_(True),
    )
    .join(_SERVICES, _SERVICES.c.sid == _CALLER.c.service_sid)
    .join(_SESSIONS, _SESSIONS.c.sid == _CALLER.c.session_sid)
    .where(
        _CALLER.c.proxy_identifier == bindparam("did"),
        _CALLER.c.identifier == bindparam("caller"),
        _CALLER.c.active.is_(True),
    )
)
# Bound, not literal: a prepared read's parameters are all named (SQLite's text).
SESSION_OF_CALLER = prepare(_OF_CALLER.limit(bindparam("limit")).offset(bindparam("offset")))
# One row at most: (number, caller, open, service, PIN) is the unique constraint.
SESSION_OF_CALLER_PIN = prepare(_OF_CALLER.where(_CALLER.c.pin == bindparam("pin")))
POOL_OF_DID = prepare(
    select(
        PoolNumber.service_sid,
        ProxyService.account_id,
        ProxyService.out_of_session_callback_url,
    )
    .join(ProxyService, ProxyService.sid == PoolNumber.service_sid)
    .where(PoolNumber.e164 == bindparam("did"))
)


@dataclass(frozen=True, slots=True)
class SharedByPin:
    """The caller holds the DID in several open PIN sessions: the PIN they enter says
    which (``find_by_pin``). ``first`` is one of them, for the prompts' settings."""

    first: SessionRoute
    did: str
    caller: str


def _route_of(found: tuple[Any, ...]) -> SessionRoute:
    caller_sid, callee_sid, account_id, service_sid, session_sid = found[:5]
    identifier, proxy_identifier, callback_url, intercept_url, ttl = found[5:10]
    time_limit_s, caller_role, plivo_options = found[10:13]
    return SessionRoute(
        account_id=account_id,
        service_sid=service_sid,
        session_sid=session_sid,
        caller_participant_sid=caller_sid,
        callee_participant_sid=callee_sid,
        callee_identifier=identifier,
        callee_proxy_identifier=proxy_identifier,
        callback_url=callback_url,
        intercept_callback_url=intercept_url,
        ttl=int(ttl or 0),
        time_limit_s=time_limit_s,
        pin=pin_check(caller_role, plivo_options),
        record=record_of(session_sid, plivo_options),
    )


async def find_session_route(
    reader: PostDialReader, caller_number: str, did: str
) -> SessionRoute | SharedByPin | PoolRoute | None:
    """The call's session, the PIN sessions it may be for, or the pool it reached
    without one; ``None`` when the DID is in no pool."""
    found = await reader.all(
        SESSION_OF_CALLER, {"did": did, "caller": caller_number, "limit": 2, "offset": 0}
    )
    if len(found) == 2 and all(row[13] for row in found):
        return SharedByPin(_route_of(found[0]), did, caller_number)
    if found:
        # Two rows of which one has no PIN cannot be told apart by a PIN; the allocator
        # never shares a number with a session without one, so only a race between two
        # creates leaves such a pair. The first is taken, as before sharing existed.
        return _route_of(found[0])
    pool = await reader.first(POOL_OF_DID, {"did": did})
    if pool is None:
        return None
    service_sid, account_id, out_of_session_url = pool
    return PoolRoute(account_id, service_sid, out_of_session_url)


async def find_by_pin(reader: PostDialReader, shared: SharedByPin, pin: str) -> SessionRoute | None:
    """The session of ``shared`` whose caller's PIN is ``pin``; None for a wrong PIN."""
    found = await reader.first(
        SESSION_OF_CALLER_PIN, {"did": shared.did, "caller": shared.caller, "pin": pin}
    )
    return None if found is None else _route_of(found)


def new_interaction_sid() -> str:
    return sids.new_sid(sids.INTERACTION)


_INTERACTIONS: Table = ProxyInteraction.__table__  # type: ignore[assignment]
# INSERT ... SELECT from the session's row: a session deleted while the call was up
# leaves nothing to attach the call to, and the row is then simply not written (a
# plain INSERT would fail its foreign key and take the CDR's batch with it).
_INSERT_INTERACTION = insert(_INTERACTIONS).from_select(
    [column.name for column in _INTERACTIONS.c],
    select(
        *(
            _SESSIONS.c.sid
            if column.name == "session_sid"
            else bindparam(f"i_{column.name}", type_=column.type)
            for column in _INTERACTIONS.c
        )
    ).where(_SESSIONS.c.sid == bindparam("i_session_sid")),
)
# An open session becomes in-progress and its ttl slides from the call's start. The
# new expiry was computed from the ttl the call found; if the API changed the ttl
# meanwhile, the expiry it computed then is kept instead.
_TTL_END = bindparam("t_ttl_end", type_=_SESSIONS.c.expires_at.type)
_TOUCH_SESSION = (
    update(_SESSIONS)
    .where(_SESSIONS.c.sid == bindparam("t_sid"), _SESSIONS.c.status.in_(OPEN_STATUSES))
    .values(
        status="in-progress",
        date_last_interaction=bindparam("t_started", type_=_SESSIONS.c.expires_at.type),
        updated_at=bindparam("t_now", type_=_SESSIONS.c.updated_at.type),
        expires_at=case(
            (
                and_(_SESSIONS.c.ttl == bindparam("t_ttl"), _SESSIONS.c.ttl > 0),
                case(
                    (
                        and_(
                            _SESSIONS.c.date_expiry.is_not(None),
                            _SESSIONS.c.date_expiry < _TTL_END,
                        ),
                        _SESSIONS.c.date_expiry,
                    ),
                    else_=_TTL_END,
                ),
            ),
            else_=_SESSIONS.c.expires_at,
        ),
    )
)


def interaction_kept(
    route: SessionRoute,
    interaction_sid: str,
    *,
    call_id: str,
    started_at: dt.datetime,
    inbound_status: str,
    outbound_status: str,
    duration_s: int | None,
    now: dt.datetime,
) -> Kept:
    """The call as a voice interaction of its session, the session's ttl slid from the
    call's start, and the interaction's event for the service's CallbackUrl: written
    with the call's CDR.

    Written once the call has ended, not when it starts: a write before the far end
    is dialled would be a store commit on the post-dial path of every session call,
    and the row is only complete at the end. A call still up is so not yet an
    interaction in the API."""
    interaction: dict[str, Any] = {
        "i_sid": interaction_sid,
        "i_session_sid": route.session_sid,
        "i_service_sid": route.service_sid,
        "i_account_id": route.account_id,
        "i_type": "voice",
        "i_data": None,
        "i_inbound_participant_sid": route.caller_participant_sid,
        "i_inbound_resource_sid": call_id,
        "i_inbound_resource_status": inbound_status,
        "i_inbound_resource_type": "call",
        "i_outbound_participant_sid": route.callee_participant_sid,
        "i_outbound_resource_sid": call_id,
        "i_outbound_resource_status": outbound_status,
        "i_outbound_resource_type": "call",
        "i_duration_s": duration_s,
        "i_created_at": started_at,
        "i_updated_at": now,
    }
    touch = {
        "t_sid": route.session_sid,
        "t_started": started_at,
        "t_now": now,
        "t_ttl": route.ttl,
        "t_ttl_end": started_at + dt.timedelta(seconds=route.ttl),
    }
    rows = (RowWrite(_INSERT_INTERACTION, interaction), RowWrite(_TOUCH_SESSION, touch))
    if not route.callback_url:
        return Kept(rows)
    event = new_event(
        account_id=route.account_id,
        event_type=INTERACTION,
        url=route.callback_url,
        payload={
            "interactionSid": interaction_sid,
            "interactionSessionSid": route.session_sid,
            "interactionServiceSid": route.service_sid,
            "interactionAccountSid": route.account_id,
            "interactionType": "Voice",
            "interactionData": "",
            "interactionDateCreated": twilio_time(started_at),
            "interactionDateUpdated": twilio_time(now),
            "inboundParticipantSid": route.caller_participant_sid,
            "inboundResourceSid": call_id,
            "inboundResourceStatus": inbound_status,
            "inboundResourceType": "call",
            "outboundParticipantSid": route.callee_participant_sid,
            "outboundResourceSid": call_id,
            "outboundResourceStatus": outbound_status,
            "outboundResourceType": "call",
            "duration": duration_s,
        },
        ordering_key=route.session_sid,
    )
    return Kept(rows, events=(event,))
