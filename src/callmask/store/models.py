"""Tables of the callmask store (SQLAlchemy 2 declarative, typed).

Every row that a customer can see belongs to one account (``account_id``); the
repositories filter on it so another account's object is simply "not found". Keys that
travel in URLs (numberKey, actionKey, fileId) are random, never sequential, so they
tell nothing about other tenants. Times are stored as timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints so that Alembic migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: DateTime(timezone=True)}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class ApiKey(Base):
    """An account's API key. Only the SHA-256 of the key is kept: keys are 256-bit
    random tokens, so a slow password hash would add latency without adding safety."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class Number(Base):
    """A DID of the operator's trunk. ``account_id`` is NULL while it is available."""

    __tablename__ = "numbers"

    number_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    e164: Mapped[str] = mapped_column(String(20), unique=True)
    country: Mapped[str] = mapped_column(String(2))
    account_id: Mapped[str | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    purchased_at: Mapped[dt.datetime | None]


class Action(Base):
    """What a DID does on an inbound call. One action per number: the unique
    constraint on ``number_key`` makes that hold even under concurrent POSTs."""

    __tablename__ = "actions"

    action_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    number_key: Mapped[str] = mapped_column(
        ForeignKey("numbers.number_key", ondelete="CASCADE"), unique=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    callback_url: Mapped[str] = mapped_column(Text)
    status_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class AudioFile(Base):
    __tablename__ = "audio_files"

    file_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    source_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


Index("ix_actions_account", Action.account_id)


def _call_duration_s(context: DefaultExecutionContext) -> int:
    """Whole seconds from INVITE to end, from the row's own times, so every writer of
    a CDR gets the column the Tata records filter ("duration") needs without computing it."""
    # SQLAlchemy leaves this method unannotated; it returns the row's parameters.
    parameters = context.get_current_parameters()  # type: ignore[no-untyped-call]
    invited, ended = parameters.get("invited_at"), parameters.get("ended_at")
    if not isinstance(invited, dt.datetime) or not isinstance(ended, dt.datetime):
        return 0
    return max(0, round((ended - invited).total_seconds()))


class CallRecord(Base):
    """One row per call (the CDR), written once when the call ends, in the same
    transaction as the status report it causes.

    ``call_id`` is the id customers see (Tata style ``<unix seconds>.<micro>``), ``uuid``
    the id of the call's routing exchange; the SIP Call-IDs of both legs are kept for
    the operator's traces. Times are UTC; ``duration_s`` is talk time (answer to end).
    """

    __tablename__ = "call_records"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(16))  # inbound | outbound
    service: Mapped[str] = mapped_column(String(32))  # number_masking | anonymize | ...
    did: Mapped[str | None] = mapped_column(String(20))
    caller: Mapped[str] = mapped_column(String(64))
    callee: Mapped[str | None] = mapped_column(String(64))  # the number dialled out
    caller_id_shown: Mapped[str | None] = mapped_column(String(64))
    action_key: Mapped[str | None] = mapped_column(String(32))
    command: Mapped[str | None] = mapped_column(String(16))  # dial | audio | transfer ...
    file_id: Mapped[str | None] = mapped_column(String(36))
    a_sip_call_id: Mapped[str] = mapped_column(String(255))
    b_sip_call_id: Mapped[str | None] = mapped_column(String(255))
    invited_at: Mapped[dt.datetime]
    ringing_at: Mapped[dt.datetime | None]
    answered_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime]
    duration_s: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(
        String(16)
    )  # answered | busy | no answer | failed | congestion
    sip_code: Mapped[int | None] = mapped_column(Integer)
    hangup_cause: Mapped[str] = mapped_column(String(200))
    hangup_by: Mapped[str | None] = mapped_column(String(16))  # caller | callee | system
    details: Mapped[str | None] = mapped_column(Text)  # JSON: legs tried, media counters
    # Tata dialect (migration 0004): what /v1/call/records reports and filters on.
    # call_duration_s is invite to end; filled from the two times unless given.
    call_duration_s: Mapped[int] = mapped_column(
        Integer, default=_call_duration_s, server_default="0"
    )
    # tata_agents.id; no foreign key, because a CDR outlives the agent it names.
    agent_id: Mapped[int | None] = mapped_column(BigInteger)
    custom_identifier: Mapped[str | None] = mapped_column(String(255))  # click-to-call
    broadcast_id: Mapped[str | None] = mapped_column(String(32))  # the broadcast key of an OTP call
    department: Mapped[str | None] = mapped_column(String(64))
    ivr: Mapped[str | None] = mapped_column(String(64))


Index("ix_call_records_account_invited", CallRecord.account_id, CallRecord.invited_at)


class WebhookEvent(Base):
    """One event in the webhook outbox (``callmask.webhooks``): written in the same
    transaction as the state change that causes it, then delivered at least once.

    ``id`` is the event id, sent as the ``webhook-id`` header, so receivers can
    deduplicate. ``payload`` is the exact JSON body, serialised once, so every retry
    sends (and signs) the same bytes. ``lease_until`` marks a row claimed by a worker;
    a lease that expired (the worker died) makes the row claimable again.
    """

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    ordering_key: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | dead
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime]
    lease_until: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    delivered_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


# The worker's claim scans pending rows by due time; the ordering check looks for an
# earlier pending row with the same key; the API lists an account's events by time.
Index("ix_webhook_events_due", WebhookEvent.status, WebhookEvent.next_attempt_at)
Index(
    "ix_webhook_events_ordering",
    WebhookEvent.ordering_key,
    WebhookEvent.status,
    WebhookEvent.created_at,
)
Index("ix_webhook_events_account_created", WebhookEvent.account_id, WebhookEvent.created_at)


class WebhookAttempt(Base):
    """One HTTP try of one webhook event (the delivery log)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[dt.datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | retry | dead


class WebhookSecret(Base):
    """An account's webhook signing secret (``whsec_`` + base64 of 32 random bytes).
    Kept in clear because signing needs it; every active one signs each request, so
    a customer can rotate without a window where signatures fail."""

    __tablename__ = "webhook_secrets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    revoked_at: Mapped[dt.datetime | None]


# -- Tata CPaaS dialect (migration 0004) ---------------------------------------------
# Tables behind /v1/: the account's webhook, agents, OTP broadcast lead lists, leads
# and broadcast keys. See callmask.store.tata_repositories and callmask.api.tata.


class AccountSettings(Base):
    """Per-account settings that are not credentials. ``webhook_url`` is where the call
    details of the account's Tata-dialect calls (anonymize, click-to-call, OTP) go."""

    __tablename__ = "account_settings"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    webhook_url: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class TataAgent(Base):
    """An agent (Tata "Add agent"): a person reached on ``follow_me_number``.

    ``id`` is a random 12-digit integer (the reference shows numeric ids; random so it
    says nothing about other tenants); ``eid`` a random 15-digit extension id. Intercom
    and follow-me number are unique per account, so both identify one agent.
    """

    __tablename__ = "tata_agents"
    __table_args__ = (
        UniqueConstraint("account_id", "intercom", name="uq_tata_agents_account_intercom"),
        UniqueConstraint(
            "account_id", "follow_me_number", name="uq_tata_agents_account_follow_me_number"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    follow_me_number: Mapped[str] = mapped_column(String(20))  # E.164
    eid: Mapped[str] = mapped_column(String(15), unique=True)
    intercom: Mapped[str | None] = mapped_column(String(4))
    custom_status: Mapped[int] = mapped_column(Integer, default=0)  # 1 = blocked
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class TataLeadList(Base):
    """A broadcast lead list (the reference's ``<LEAD_ID>``)."""

    __tablename__ = "tata_lead_lists"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class TataLead(Base):
    """One lead of a list: a number (``field_0``) and its OTP digits (``field_5``).
    One lead per number and list, which is what ``duplicate_option`` acts on."""

    __tablename__ = "tata_leads"
    __table_args__ = (
        UniqueConstraint("lead_list_id", "number", name="uq_tata_leads_lead_list_id_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_list_id: Mapped[str] = mapped_column(ForeignKey("tata_lead_lists.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(20))  # E.164
    otp: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class TataBroadcastKey(Base):
    """A broadcast key: the ``api_key`` of ``/v1/c2c_api``, bound to one lead list, one
    message template and the DID shown as caller ID. Only the SHA-256 of the key is
    kept (like account keys, it is 128 random bits, so a fast hash is enough)."""

    __tablename__ = "tata_broadcast_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    lead_list_id: Mapped[str] = mapped_column(
        ForeignKey("tata_lead_lists.id", ondelete="CASCADE"), index=True
    )
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    template: Mapped[str] = mapped_column(Text)
    caller_id: Mapped[str] = mapped_column(String(20))  # E.164, one of the account's DIDs
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


# /v1/call/records: every page query is "this account, newest first", so each index
# leads with account_id and ends with invited_at. The wide one carries the columns of
# the common low-selectivity filters (call_type, direction, services, duration) so that
# PostgreSQL counts matching rows with an index-only scan instead of visiting the heap.
Index(
    "ix_call_records_account_invited_filters",
    CallRecord.account_id,
    CallRecord.invited_at,
    CallRecord.status,
    CallRecord.direction,
    CallRecord.service,
    CallRecord.call_duration_s,
)
Index(
    "ix_call_records_account_caller",
    CallRecord.account_id,
    CallRecord.caller,
    CallRecord.invited_at,
)
Index(
    "ix_call_records_account_callee",
    CallRecord.account_id,
    CallRecord.callee,
    CallRecord.invited_at,
)
Index(
    "ix_call_records_account_agent",
    CallRecord.account_id,
    CallRecord.agent_id,
    CallRecord.invited_at,
)
Index(
    "ix_call_records_account_department",
    CallRecord.account_id,
    CallRecord.department,
    CallRecord.invited_at,
)
Index("ix_call_records_account_ivr", CallRecord.account_id, CallRecord.ivr, CallRecord.invited_at)


class CallRecordDailyCount(Base):
    """How many CDRs an account has per UTC day, direction, service and answered or not.

    Kept exact by database triggers on ``call_records`` (migration 0004), so every writer
    of CDRs maintains it, bulk loads included. ``/v1/call/records`` sums it for whole
    days instead of counting up to a year of rows for each page; only the partial days
    at the edges of a date range are counted row by row.
    """

    __tablename__ = "call_record_daily_counts"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    direction: Mapped[str] = mapped_column(String(16), primary_key=True)
    service: Mapped[str] = mapped_column(String(32), primary_key=True)
    answered: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)


# -- Calls in progress (migration 0005) -------------------------------------------------
# So that a node killed with calls up can close them when it starts again: their CDRs
# and reports are written then, with the node's last heartbeat as the end time.


class OpenCall(Base):
    """A call in progress on ``node_id``: what its CDR and report need if the node dies.
    Deleted in the transaction that writes the call's CDR."""

    __tablename__ = "open_calls"

    record_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128), index=True)
    snapshot: Mapped[str] = mapped_column(Text)  # JSON: the call summary and its report
    answered_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, server_default=func.now())


class NodeHeartbeat(Base):
    """When each node last said it was alive (every few seconds while it runs)."""

    __tablename__ = "node_heartbeats"

    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    heartbeat_at: Mapped[dt.datetime]


# -- Idempotent POSTs (migration 0006) ---------------------------------------------------
# A client that retries a POST after a timeout must not create a second session, call or
# number; ``Idempotency-Key`` names the attempt. Kept in the store, not in memory, so a
# retry that reaches another node or a restarted one gets the first answer too.


class IdempotentRequest(Base):
    """The first answer to a POST that carried ``Idempotency-Key``: replayed for the same
    key and body within 24 h; the same key with another body is refused (422).
    ``status_code`` is NULL while the first request is still being answered."""

    __tablename__ = "idempotent_requests"

    # Who sent it: an account id, or "operator" for the operator API.
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[str | None] = mapped_column(Text)  # JSON list of pairs
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, server_default=func.now(), index=True
    )


# -- Sessions (migration 0007) -----------------------------------------------------------
# Masking sessions over a number pool (Twilio Proxy v1 on the wire, callmask.api.twilio):
# a service owns a pool of the account's DIDs; a session pairs participants, each of whom
# dials and sees one pool number (their proxy identifier). See callmask.store.sessions.


class ProxyService(Base):
    """A Twilio Proxy Service (``KS…``): the pool and the defaults of its sessions."""

    __tablename__ = "proxy_services"
    __table_args__ = (
        UniqueConstraint("account_id", "unique_name", name="uq_proxy_services_account_unique_name"),
    )

    sid: Mapped[str] = mapped_column(String(34), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    unique_name: Mapped[str] = mapped_column(String(191))
    default_ttl: Mapped[int] = mapped_column(Integer, default=0)  # seconds, 0 = no limit
    callback_url: Mapped[str | None] = mapped_column(Text)
    intercept_callback_url: Mapped[str | None] = mapped_column(Text)
    out_of_session_callback_url: Mapped[str | None] = mapped_column(Text)
    number_selection_behavior: Mapped[str] = mapped_column(String(16))  # prefer/avoid-sticky
    geo_match_level: Mapped[str] = mapped_column(String(16))
    chat_instance_sid: Mapped[str | None] = mapped_column(String(34))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class PoolNumber(Base):
    """A DID of the account's inventory lent to one service's pool (``PN…``). The unique
    ``number_key`` keeps a DID in at most one pool; per-DID actions refuse pool DIDs."""

    __tablename__ = "proxy_pool_numbers"

    sid: Mapped[str] = mapped_column(String(34), primary_key=True)
    service_sid: Mapped[str] = mapped_column(
        ForeignKey("proxy_services.sid", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    number_key: Mapped[str] = mapped_column(
        ForeignKey("numbers.number_key", ondelete="CASCADE"), unique=True
    )
    e164: Mapped[str] = mapped_column(String(20), unique=True)
    is_reserved: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class ProxySession(Base):
    """A session (``KC…``). ``expires_at`` is the earlier of ``date_expiry`` and the
    sliding ttl end (last interaction or start + ttl), kept so the expiry sweep is one
    indexed UPDATE on (status, expires_at)."""

    __tablename__ = "proxy_sessions"
    __table_args__ = (
        UniqueConstraint(
            "service_sid", "unique_name", name="uq_proxy_sessions_service_unique_name"
        ),
    )

    sid: Mapped[str] = mapped_column(String(34), primary_key=True)
    service_sid: Mapped[str] = mapped_column(ForeignKey("proxy_services.sid", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    unique_name: Mapped[str | None] = mapped_column(String(191))
    status: Mapped[str] = mapped_column(String(16))  # open | in-progress | closed | failed
    mode: Mapped[str] = mapped_column(String(24))
    ttl: Mapped[int] = mapped_column(Integer, default=0)
    date_expiry: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    date_started: Mapped[dt.datetime | None]
    date_ended: Mapped[dt.datetime | None]
    date_last_interaction: Mapped[dt.datetime | None]
    closed_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    # Plivo masking sessions (api/plivo): the per-call limit the call path enforces, and
    # the session's other Plivo-only fields as one JSON object (NULL for Twilio sessions).
    call_time_limit_s: Mapped[int | None] = mapped_column(Integer)
    plivo_options: Mapped[str | None] = mapped_column(Text)


Index("ix_proxy_sessions_service_created", ProxySession.service_sid, ProxySession.created_at)
Index("ix_proxy_sessions_status_expires", ProxySession.status, ProxySession.expires_at)


class ProxyParticipant(Base):
    """A participant (``KP…``): ``identifier`` is their real number, ``proxy_identifier``
    the pool number they dial and see.

    ``active`` is TRUE while the session is open and the participant not deleted, NULL
    otherwise. The unique constraint over (proxy_identifier, identifier, active,
    service_sid, pin) is the allocator's invariant, held by the database on every node:
    NULLs are distinct in both SQLite and PostgreSQL, so only open rows collide. It leads
    with (proxy_identifier, identifier) so the inbound lookup (caller, DID) is one index
    probe.

    ``pin`` is the PIN this participant enters on calls (Plivo's PIN sessions), ``""``
    for none. A participant may hold one number in several open sessions only with a
    different PIN in each: the PIN says which session a call is for (a shared number).
    """

    __tablename__ = "proxy_participants"
    __table_args__ = (
        UniqueConstraint(
            "proxy_identifier",
            "identifier",
            "active",
            "service_sid",
            "pin",
            name="uq_proxy_participants_open_pair",
        ),
    )

    sid: Mapped[str] = mapped_column(String(34), primary_key=True)
    session_sid: Mapped[str] = mapped_column(
        ForeignKey("proxy_sessions.sid", ondelete="CASCADE"), index=True
    )
    service_sid: Mapped[str] = mapped_column(ForeignKey("proxy_services.sid", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    identifier: Mapped[str] = mapped_column(String(191))
    friendly_name: Mapped[str | None] = mapped_column(String(255))
    proxy_identifier: Mapped[str] = mapped_column(String(20))
    pool_number_sid: Mapped[str | None] = mapped_column(
        ForeignKey("proxy_pool_numbers.sid", ondelete="SET NULL"), index=True
    )
    active: Mapped[bool | None] = mapped_column(Boolean)
    pin: Mapped[str] = mapped_column(String(15), default="", server_default="")
    date_deleted: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


# prefer-sticky looks up the number an identifier had most recently in the service.
Index(
    "ix_proxy_participants_service_identifier",
    ProxyParticipant.service_sid,
    ProxyParticipant.identifier,
    ProxyParticipant.created_at,
)
# The allocator's "numbers this identifier holds now", answered from the index alone.
Index(
    "ix_proxy_participants_held",
    ProxyParticipant.service_sid,
    ProxyParticipant.identifier,
    ProxyParticipant.active,
    ProxyParticipant.pool_number_sid,
)


class ProxyPoolExhaustion(Base):
    """A session or participant create that found no number in the pool (80207, 80208):
    what the console shows an operator running out of numbers."""

    __tablename__ = "proxy_pool_exhaustions"
    __table_args__ = (
        Index("ix_proxy_pool_exhaustions_service_created", "service_sid", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    service_sid: Mapped[str] = mapped_column(ForeignKey("proxy_services.sid", ondelete="CASCADE"))
    identifier: Mapped[str] = mapped_column(String(191))
    code: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime]


class ProxyInteraction(Base):
    """One call within a session (``KI…``); the resource sids are call ids."""

    __tablename__ = "proxy_interactions"

    sid: Mapped[str] = mapped_column(String(34), primary_key=True)
    session_sid: Mapped[str] = mapped_column(ForeignKey("proxy_sessions.sid", ondelete="CASCADE"))
    service_sid: Mapped[str] = mapped_column(String(34))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))  # voice | message | unknown
    data: Mapped[str | None] = mapped_column(Text)  # JSON string, as Twilio sends it
    inbound_participant_sid: Mapped[str | None] = mapped_column(String(34))
    inbound_resource_sid: Mapped[str | None] = mapped_column(String(64))
    inbound_resource_status: Mapped[str | None] = mapped_column(String(16))
    inbound_resource_type: Mapped[str | None] = mapped_column(String(16))
    outbound_participant_sid: Mapped[str | None] = mapped_column(String(34))
    outbound_resource_sid: Mapped[str | None] = mapped_column(String(64))
    outbound_resource_status: Mapped[str | None] = mapped_column(String(16))
    outbound_resource_type: Mapped[str | None] = mapped_column(String(16))
    duration_s: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


Index(
    "ix_proxy_interactions_session_created",
    ProxyInteraction.session_sid,
    ProxyInteraction.created_at,
)


class Recording(Base):
    """A recorded call: written ``in-progress`` with the call's CDR, then ``completed``
    (the mixed file under ``<data_dir>/recordings/<account>/``) or ``failed`` with the
    reason, by the node whose rtpengine recorded it (``node_id``)."""

    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a UUID, as Plivo's
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(40))  # the CDR's public call id
    session_sid: Mapped[str | None] = mapped_column(String(34))
    media_call_id: Mapped[str] = mapped_column(String(128))  # the call-id rtpengine knows
    node_id: Mapped[str] = mapped_column(String(191))
    status: Mapped[str] = mapped_column(String(16))  # in-progress | completed | failed
    failure_reason: Mapped[str | None] = mapped_column(Text)
    file_format: Mapped[str] = mapped_column(String(8))  # mp3 | wav
    callback_url: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[dt.datetime]  # when recording began (both parties answered)
    ended_at: Mapped[dt.datetime]  # when the call ended
    created_at: Mapped[dt.datetime]
    completed_at: Mapped[dt.datetime | None]


Index("ix_recordings_account_created", Recording.account_id, Recording.created_at)
Index("ix_recordings_node_status", Recording.node_id, Recording.status)
