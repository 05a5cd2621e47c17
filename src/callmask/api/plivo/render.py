"""The JSON of a Plivo masking session, field for field as plivo-python's fixtures
show it (``tests/resources/fixtures/maskingSession{Create,Get,Update,List}Response.json``)
and Plivo's API reference adds for PIN sessions, and the mapping between Plivo's
``session_uuid`` and callmask's session sid.

- ``session_uuid`` is the session sid's 32 hexadecimal digits as a UUID
  (``KC`` + hex <-> ``uuid.UUID(hex=...)``): no second id is stored.
- Times are UTC as Go prints them, which is what Plivo sends: ``2023-07-12
  15:52:14.772699 +0000 UTC``, the fraction without trailing zeros and left out when
  zero (``2024-01-03 13:35:51 +0000 UTC``); a time not yet known is ``""``
  (``last_interaction_time``).
- Numbers inside the session are digits without ``+`` (``917708772011``); the create
  answer's top-level ``virtual_number`` has the ``+``.
- ``duration`` is the session's length in seconds, creation to expiry; ``status`` is
  ``active`` while the session is open and ``expired`` once it has ended. Amounts are
  0: callmask charges nothing per session.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from callmask.sessions import sids
from callmask.sessions.lifetime import OPEN_STATUSES, as_utc
from callmask.sessions.shared import SharedSession

MOUNT = "/plivo"

# The Plivo-only fields a session stores (ProxySession.plivo_options), with their
# defaults as Plivo documents them.
OPTION_DEFAULTS: dict[str, Any] = {
    "record": False,
    "record_file_format": "mp3",
    "recording_callback_url": "",
    "recording_callback_method": "POST",
    "callback_url": "",
    "callback_method": "POST",
    "ring_timeout": 120,
    "first_party_play_url": "",
    "second_party_play_url": "",
    "initiate_call_to_first_party": False,
    "is_pin_authentication_required": False,
    "generate_pin": False,
    "generate_pin_length": 4,
    "first_party_pin": "",
    "second_party_pin": "",
    "pin_prompt_play": "",
    "pin_retry": 1,
    "pin_retry_wait": 5,
    "incorrect_pin_play": "",
    "unknown_caller_play": "",
    "geomatch": True,
    "create_session_with_single_party": False,
    "force_pin_authentication": False,
    "virtual_number_cooloff_period": 0,
    "subaccount": "",
}


def session_uuid(sid: str) -> str:
    return str(uuid.UUID(hex=sid.removeprefix(sids.SESSION)))


def sid_of(value: str) -> str | None:
    """The session sid a ``session_uuid`` names; None if it is no UUID."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return sids.SESSION + parsed.hex


def plivo_time(value: dt.datetime | None) -> str:
    aware = as_utc(value)
    if aware is None:
        return ""
    aware = aware.astimezone(dt.UTC)
    stamp = aware.strftime("%Y-%m-%d %H:%M:%S")
    if aware.microsecond:
        stamp += f".{aware.microsecond:06d}".rstrip("0")
    return stamp + " +0000 UTC"


def digits(e164: str) -> str:
    return e164.removeprefix("+")


def options_of(shared: SharedSession) -> dict[str, Any]:
    stored = json.loads(shared.row.plivo_options or "{}")
    return {**OPTION_DEFAULTS, **stored}


def duration_s(shared: SharedSession) -> int:
    row = shared.row
    end, start = as_utc(row.date_expiry), as_utc(row.created_at)
    if end is None or start is None:
        return 0
    return round((end - start).total_seconds())


def resource_uri(auth_id: str, shared: SharedSession) -> str:
    return f"{MOUNT}/v1/Account/{auth_id}/Masking/Session/{session_uuid(shared.row.sid)}/"


def session(shared: SharedSession, *, auth_id: str | None = None) -> dict[str, Any]:
    """The session object; ``auth_id`` adds ``resource_uri``, as list objects have it."""
    row = shared.row
    options = options_of(shared)
    body: dict[str, Any] = {
        "first_party": digits(shared.first.identifier),
        "second_party": digits(shared.second.identifier),
        "virtual_number": digits(shared.virtual_number),
        "status": "active" if row.status in OPEN_STATUSES else "expired",
        "initiate_call_to_first_party": options["initiate_call_to_first_party"],
        "session_uuid": session_uuid(row.sid),
        "callback_url": options["callback_url"],
        "callback_method": options["callback_method"],
        "created_time": plivo_time(row.created_at),
        "modified_time": plivo_time(row.updated_at),
        "expiry_time": plivo_time(row.date_expiry),
        "duration": duration_s(shared),
        "amount": 0,
        "call_time_limit": row.call_time_limit_s,
        "ring_timeout": options["ring_timeout"],
        "first_party_play_url": options["first_party_play_url"],
        "second_party_play_url": options["second_party_play_url"],
        "record": options["record"],
        "record_file_format": options["record_file_format"],
        "recording_callback_url": options["recording_callback_url"],
        "recording_callback_method": options["recording_callback_method"],
        "is_pin_authentication_required": options["is_pin_authentication_required"],
        "generate_pin": options["generate_pin"],
        "generate_pin_length": options["generate_pin_length"],
        "first_party_pin": options["first_party_pin"],
        "second_party_pin": options["second_party_pin"],
        "pin_prompt_play": options["pin_prompt_play"],
        "pin_retry": options["pin_retry"],
        "pin_retry_wait": options["pin_retry_wait"],
        "incorrect_pin_play": options["incorrect_pin_play"],
        "unknown_caller_play": options["unknown_caller_play"],
        "geomatch": options["geomatch"],
        "create_session_with_single_party": options["create_session_with_single_party"],
        "force_pin_authentication": options["force_pin_authentication"],
        "virtual_number_cooloff_period": options["virtual_number_cooloff_period"],
        "subaccount": options["subaccount"],
        "interaction": None,
        "total_call_amount": 0,
        "total_call_count": shared.call_count,
        "total_call_billed_duration": shared.call_seconds,
        "total_session_amount": 0,
        "last_interaction_time": plivo_time(row.date_last_interaction),
    }
    if auth_id is not None:
        body["resource_uri"] = resource_uri(auth_id, shared)
    return body
