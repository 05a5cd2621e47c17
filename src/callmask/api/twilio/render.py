"""The JSON of each Twilio Proxy v1 resource, field for field as
``twilio/twilio-oai`` ``spec/json/twilio_proxy_v1.json`` lists them (components
``proxy.v1.service``, ``proxy.v1.service.phone_number``, ``proxy.v1.service.session``,
``proxy.v1.service.session.participant``, ``proxy.v1.service.session.interaction``).

``account_sid`` is the callmask account id (the AccountSid the client authenticates
with). Times are UTC as ``2015-07-30T20:00:00Z``, the form twilio-python parses
(``deserialize.iso8601_datetime``). ``url`` and ``links`` are absolute on the host the
client reached, below ``/twilio/v1``, so an SDK pointed at callmask follows them back
to callmask.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi import Request

from callmask.phone import region_of
from callmask.store.models import (
    PoolNumber,
    ProxyInteraction,
    ProxyParticipant,
    ProxyService,
    ProxySession,
)
from callmask.webhooks.repository import as_utc

MOUNT = "/twilio"
VERSION = "/v1"


def stamp(value: dt.datetime | None) -> str | None:
    return None if value is None else as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


class Urls:
    """Absolute URLs of the resources, on the server's own host."""

    def __init__(self, request: Request) -> None:
        self.root = str(request.base_url).rstrip("/") + MOUNT + VERSION

    def services(self) -> str:
        return f"{self.root}/Services"

    def service(self, sid: str) -> str:
        return f"{self.root}/Services/{sid}"

    def phone_numbers(self, service_sid: str) -> str:
        return f"{self.service(service_sid)}/PhoneNumbers"

    def sessions(self, service_sid: str) -> str:
        return f"{self.service(service_sid)}/Sessions"

    def session(self, service_sid: str, sid: str) -> str:
        return f"{self.sessions(service_sid)}/{sid}"

    def participants(self, service_sid: str, session_sid: str) -> str:
        return f"{self.session(service_sid, session_sid)}/Participants"

    def interactions(self, service_sid: str, session_sid: str) -> str:
        return f"{self.session(service_sid, session_sid)}/Interactions"


def service(urls: Urls, row: ProxyService) -> dict[str, Any]:
    return {
        "sid": row.sid,
        "unique_name": row.unique_name,
        "account_sid": row.account_id,
        "chat_instance_sid": row.chat_instance_sid,
        "callback_url": row.callback_url,
        "default_ttl": row.default_ttl,
        "number_selection_behavior": row.number_selection_behavior,
        "geo_match_level": row.geo_match_level,
        "intercept_callback_url": row.intercept_callback_url,
        "out_of_session_callback_url": row.out_of_session_callback_url,
        "date_created": stamp(row.created_at),
        "date_updated": stamp(row.updated_at),
        "url": urls.service(row.sid),
        "links": {
            "sessions": urls.sessions(row.sid),
            "phone_numbers": urls.phone_numbers(row.sid),
        },
    }


# callmask carries calls only; the spec's capability properties are fax, mms, sms, voice.
VOICE_ONLY = {"fax": False, "mms": False, "sms": False, "voice": True}


def phone_number(urls: Urls, row: PoolNumber, *, in_use: int) -> dict[str, Any]:
    return {
        "sid": row.sid,
        "account_sid": row.account_id,
        "service_sid": row.service_sid,
        "date_created": stamp(row.created_at),
        "date_updated": stamp(row.updated_at),
        "phone_number": row.e164,
        # callmask numbers have no name of their own; Twilio names a number after itself.
        "friendly_name": row.e164,
        "iso_country": region_of(row.e164),
        "capabilities": dict(VOICE_ONLY),
        "url": f"{urls.phone_numbers(row.service_sid)}/{row.sid}",
        "is_reserved": row.is_reserved,
        "in_use": in_use,
    }


def session(urls: Urls, row: ProxySession) -> dict[str, Any]:
    return {
        "sid": row.sid,
        "service_sid": row.service_sid,
        "account_sid": row.account_id,
        "date_started": stamp(row.date_started),
        "date_ended": stamp(row.date_ended),
        "date_last_interaction": stamp(row.date_last_interaction),
        "date_expiry": stamp(row.date_expiry),
        "unique_name": row.unique_name,
        "status": row.status,
        "closed_reason": row.closed_reason,
        "ttl": row.ttl,
        "mode": row.mode,
        "date_created": stamp(row.created_at),
        "date_updated": stamp(row.updated_at),
        "url": urls.session(row.service_sid, row.sid),
        "links": {
            "interactions": urls.interactions(row.service_sid, row.sid),
            "participants": urls.participants(row.service_sid, row.sid),
        },
    }


def participant(urls: Urls, row: ProxyParticipant) -> dict[str, Any]:
    url = f"{urls.participants(row.service_sid, row.session_sid)}/{row.sid}"
    return {
        "sid": row.sid,
        "session_sid": row.session_sid,
        "service_sid": row.service_sid,
        "account_sid": row.account_id,
        "friendly_name": row.friendly_name,
        "identifier": row.identifier,
        "proxy_identifier": row.proxy_identifier,
        "proxy_identifier_sid": row.pool_number_sid,
        "date_deleted": stamp(row.date_deleted),
        "date_created": stamp(row.created_at),
        "date_updated": stamp(row.updated_at),
        "url": url,
        "links": {"message_interactions": f"{url}/MessageInteractions"},
    }


def _interaction_data(row: ProxyInteraction) -> str | None:
    # Twilio: "the call duration (when available) of a call (e.g. {"duration": "5"})".
    if row.data is not None:
        return row.data
    if row.duration_s is not None:
        return json.dumps({"duration": str(row.duration_s)})
    return None


def interaction(urls: Urls, row: ProxyInteraction) -> dict[str, Any]:
    return {
        "sid": row.sid,
        "session_sid": row.session_sid,
        "service_sid": row.service_sid,
        "account_sid": row.account_id,
        "data": _interaction_data(row),
        "type": row.type,
        "inbound_participant_sid": row.inbound_participant_sid,
        "inbound_resource_sid": row.inbound_resource_sid,
        "inbound_resource_status": row.inbound_resource_status,
        "inbound_resource_type": row.inbound_resource_type,
        # The resource is a call of callmask's, which has no Twilio Call resource URL.
        "inbound_resource_url": None,
        "outbound_participant_sid": row.outbound_participant_sid,
        "outbound_resource_sid": row.outbound_resource_sid,
        "outbound_resource_status": row.outbound_resource_status,
        "outbound_resource_type": row.outbound_resource_type,
        "outbound_resource_url": None,
        "date_created": stamp(row.created_at),
        "date_updated": stamp(row.updated_at),
        "url": f"{urls.interactions(row.service_sid, row.session_sid)}/{row.sid}",
    }
