"""Request and response bodies of the Tata CPaaS dialect (``/v1/``), field names as the
reference (tata-cpaas-anonymize.txt) spells them.

The reference types many inputs loosely (``follow_me_number`` and ``intercom`` are
integers in its agent example, strings elsewhere; ``async`` is an integer flag), so
inputs are declared as "any JSON value" and read by the ``*_field`` helpers below,
which accept what the reference shows and answer anything else with a sentence that
names the field, in the dialect's ``{"success": false, "message": ...}`` body.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from callmask.errors import InvalidInput


class _Loose(BaseModel):
    # Tata clients send fields this implementation does not use (lead field_1..n,
    # extra call options); ignoring them is what the reference's server does.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def text_field(value: object, field: str, *, max_length: int = 255) -> str | None:
    """A string (or an integer, which the reference uses for numbers); None if absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"{field} must be a string")
    text = str(value).strip()
    # Every field read here is a name, number or identifier: control characters are
    # no use in one, and PostgreSQL refuses NUL in text (that was a 500).
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise InvalidInput(f"{field} contains control characters")
    if len(text) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters")
    return text or None


def required_text(value: object, field: str, *, max_length: int = 255) -> str:
    text = text_field(value, field, max_length=max_length)
    if text is None:
        raise InvalidInput(f"{field} is required")
    return text


def flag_field(value: object, field: str, *, default: bool) -> bool:
    """The reference's 0/1 integer flags; "0"/"1" strings and JSON booleans too."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return value.strip() == "1"
    raise InvalidInput(f"{field} must be 0 or 1")


def int_field(value: object, field: str, *, minimum: int, maximum: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{field} must be between {minimum} and {maximum}")
    return value


# -- requests ------------------------------------------------------------------------


class AgentIn(_Loose):
    name: Any = None
    follow_me_number: Any = None
    intercom: Any = None


class LeadIn(_Loose):
    field_0: Any = None  # the number
    field_5: Any = None  # the OTP digits
    duplicate_option: Any = None


class C2cApiIn(_Loose):
    customer_number: Any = None
    api_key: Any = None


class ClickToCallIn(_Loose):
    agent_number: Any = None
    destination_number: Any = None
    caller_id: Any = None
    async_: Any = Field(default=None, alias="async")
    call_timeout: Any = None
    get_call_id: Any = None
    custom_identifier: Any = None


class HangupIn(_Loose):
    call_id: Any = None


class CallOptionsIn(_Loose):
    type: Any = None
    call_id: Any = None
    agent_id: Any = None
    intercom: Any = None


class LeadListIn(_Loose):
    name: Any = None


class BroadcastKeyIn(_Loose):
    lead_list_id: Any = None
    template: Any = None
    caller_id: Any = None


class WebhookIn(_Loose):
    url: Any = None


# -- responses -----------------------------------------------------------------------


class SuccessOut(BaseModel):
    success: bool = True
    message: str


class AgentCreatedOut(SuccessOut):
    agent_id: str


class CallQueuedOut(SuccessOut):
    call_id: str | None = None


class CallerIdOut(BaseModel):
    id: str
    number: str


class StickySettingsOut(BaseModel):
    timeout: int | None = None
    ring_strategy: str | None = None
    alternate_numbers: list[str] = [""]


class AgentOut(BaseModel):
    """One agent of ``GET /v1/agents``. Fields callmask has no concept for (time
    groups, failover, departments, teams) carry the reference's empty values."""

    id: int
    name: str
    follow_me_number: str
    eid: str
    intercom: str | None
    calls_answered: int
    calls_missed: int
    custom_status: int
    timegroup_name: str | None = None
    timegroup_id: int | None = None
    failover_destination: str | None = None
    failover_destination_name: str | None = None
    is_verified: int = 1  # callmask does not verify follow-me numbers: usable at once
    departments: list[str] = []
    allowed_caller_ids: list[CallerIdOut]
    agent_cdr: bool = False
    associated_agent: bool = False
    agent_groups: list[str] = []
    sticky_settings: StickySettingsOut = StickySettingsOut()
    product_clicktocall: int = 1
    team_id: int | None = None
    team_name: str | None = None


class LeadListCreatedOut(SuccessOut):
    lead_list_id: str


class LeadListOut(BaseModel):
    id: str
    name: str
    leads: int
    created_at: str


class BroadcastKeyCreatedOut(SuccessOut):
    key_id: str
    api_key: str
    lead_list_id: str
    caller_id: str


class BroadcastKeyOut(BaseModel):
    key_id: str
    lead_list_id: str
    template: str
    caller_id: str
    created_at: str


class WebhookOut(BaseModel):
    success: bool = True
    url: str | None


class MissedAgentOut(BaseModel):
    name: str
    number: str


class RecordOut(BaseModel):
    """One call record (``GET /v1/call/records``), from a CDR. Times are UTC."""

    id: str
    call_id: str
    uuid: str
    date: str
    time: str
    end_stamp: str
    direction: str
    call_duration: int
    answered_seconds: int
    minutes_consumed: int
    status: str  # answered | missed
    hangup_cause: str
    did_number: str | None
    missed_agents: list[MissedAgentOut]
    recording_url: str | None = None
    broadcast_id: str | None
    dtmf_input: str | None = None
    client_number: str | None
    destination: str | None
    department: list[str]
    services: str
    notes: str | None = None
    contact_details: str | None = None
    agent_id: int | None
    agent_name: str | None
    agent_number: str | None
    custom_identifier: str | None


class RecordsOut(BaseModel):
    count: int
    limit: int
    page: int
    size: int
    results: list[RecordOut]


class LiveCallOut(BaseModel):
    """One live call (``GET /v1/live_calls``). ``caller_id`` is the client's number,
    the value the records' ``callerid`` filter takes."""

    call_id: str
    direction: str
    services: str
    state: str  # ringing | answered
    did_number: str | None
    caller_id: str | None
    destination: str | None
    start_stamp: str
    answered_stamp: str | None
