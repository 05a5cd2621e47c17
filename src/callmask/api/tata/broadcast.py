"""OTP broadcast (reference tata-cpaas-anonymize.txt, "Announcement of Voice on an
outbound call"): the Lead API ``POST /v1/broadcast/lead/{lead_id}`` stores a number and
its OTP digits, then the Click to Call Support API ``POST /v1/c2c_api`` calls that
number and speaks the OTP.

The reference takes lead lists and broadcast keys as given; callmask creates them
through this account API (not in the reference):

- ``POST /v1/broadcast/lists`` ``{"name"}`` -> ``lead_list_id``; ``GET`` lists them,
  ``DELETE /v1/broadcast/lists/{id}`` removes one with its leads and keys.
- ``POST /v1/broadcast/keys`` ``{"lead_list_id", "template", "caller_id"}`` -> the
  ``api_key`` (32 hex characters, shown once; only its SHA-256 is stored). The template
  must contain ``{otp}``; ``caller_id`` must be one of the account's DIDs and defaults
  to the first. ``GET`` lists keys without the secret, ``DELETE .../{key_id}`` revokes.

What is spoken: the template with ``{otp}`` replaced by the digits one by one, then the
digits again ("Your one time password is 1, 2, 3, 4. Again: 1, 2, 3, 4."), because a
listener who missed a digit cannot scroll back.

Errors: unknown lead list -> 404; ``api_key`` that is not one of the account's broadcast
keys -> 401; no lead for ``customer_number`` in the key's list -> 404; malformed number
or OTP -> 400. Each leaves the store as it was and places no call.
"""

from __future__ import annotations

import re

from fastapi import APIRouter

from callmask.api.deps import CallControlDep, CurrentAccount, ServicesDep, SessionDep
from callmask.api.tata.numbers import caller_id_for, customer_number, shown, stamp
from callmask.api.tata.schemas import (
    BroadcastKeyCreatedOut,
    BroadcastKeyIn,
    BroadcastKeyOut,
    C2cApiIn,
    CallQueuedOut,
    LeadIn,
    LeadListCreatedOut,
    LeadListIn,
    LeadListOut,
    SuccessOut,
    required_text,
    text_field,
)
from callmask.calls.control import Announcement
from callmask.errors import InvalidInput, NotFound, Unauthorized
from callmask.store.tata_repositories import (
    AccountWebhooks,
    BroadcastKeys,
    LeadLists,
    LeadOutcome,
    Leads,
)

router = APIRouter(prefix="/v1", tags=["tata: broadcast"])

OTP = re.compile(r"[0-9]{4,10}")
OTP_PLACEHOLDER = "{otp}"
MAX_TEMPLATE_LENGTH = 1000
DUPLICATE_OPTIONS = ("overwrite", "skip")

LEAD_MESSAGES = {
    LeadOutcome.ADDED: "Lead added successfully",
    LeadOutcome.OVERWRITTEN: "Lead updated successfully",
    LeadOutcome.KEPT: "Lead already exists; kept as it was",
}


def spoken_digits(otp: str) -> str:
    """Digits separated by commas, which espeak-ng reads one by one with a pause."""
    return ", ".join(otp)


def announcement_text(template: str, otp: str) -> str:
    spoken = spoken_digits(otp)
    first = template.replace(OTP_PLACEHOLDER, spoken).strip()
    if not first.endswith((".", "!", "?")):
        first += "."
    return f"{first} Again: {spoken}."


def template_field(value: object) -> str:
    template = required_text(value, "template", max_length=MAX_TEMPLATE_LENGTH)
    if OTP_PLACEHOLDER not in template:
        raise InvalidInput(f"template must contain {OTP_PLACEHOLDER} where the OTP is spoken")
    if not template.isprintable():
        raise InvalidInput("template contains control characters")
    return template


@router.post("/broadcast/lead/{lead_id}")
async def put_lead(
    lead_id: str,
    body: LeadIn,
    session: SessionDep,
    account: CurrentAccount,
    services: ServicesDep,
) -> SuccessOut:
    lead_list = await LeadLists(session).get(account.id, lead_id)
    number = customer_number(
        required_text(body.field_0, "field_0", max_length=20),
        services.settings.default_region,
        "field_0",
    )
    otp = required_text(body.field_5, "field_5", max_length=20)
    if not OTP.fullmatch(otp):
        raise InvalidInput("field_5 must be the OTP: 4 to 10 digits")
    option = text_field(body.duplicate_option, "duplicate_option") or "overwrite"
    if option not in DUPLICATE_OPTIONS:
        raise InvalidInput(f"duplicate_option must be one of {', '.join(DUPLICATE_OPTIONS)}")
    outcome = await Leads(session).put(lead_list.id, number, otp, overwrite=option == "overwrite")
    return SuccessOut(message=LEAD_MESSAGES[outcome])


@router.post("/c2c_api")
async def call_with_otp(
    body: C2cApiIn,
    session: SessionDep,
    account: CurrentAccount,
    services: ServicesDep,
    calls: CallControlDep,
) -> CallQueuedOut:
    api_key = required_text(body.api_key, "api_key", max_length=128)
    key = await BroadcastKeys(session).by_key(account.id, api_key)
    if key is None:
        raise Unauthorized("invalid api_key")
    region = services.settings.default_region
    number = customer_number(
        required_text(body.customer_number, "customer_number", max_length=20),
        region,
        "customer_number",
    )
    lead = await Leads(session).find(key.lead_list_id, number)
    if lead is None:
        raise NotFound(f"no lead for customer_number {shown(number)} in this key's lead list")
    # The DID may have been released since the key was made; never show a number
    # the account no longer holds.
    caller_id = await caller_id_for(session, account.id, key.caller_id, region)
    call_id = await calls.announce(
        Announcement(
            account_id=account.id,
            customer_number=number,
            caller_id=caller_id,
            text=announcement_text(key.template, lead.otp),
            webhook_url=await AccountWebhooks(session).get(account.id),
            broadcast_id=key.id,
        )
    )
    return CallQueuedOut(message="Originate successfully queued", call_id=call_id)


@router.post("/broadcast/lists")
async def create_lead_list(
    body: LeadListIn, session: SessionDep, account: CurrentAccount
) -> LeadListCreatedOut:
    name = required_text(body.name, "name", max_length=200)
    lead_list = await LeadLists(session).create(account.id, name)
    return LeadListCreatedOut(message="Lead list created", lead_list_id=lead_list.id)


@router.get("/broadcast/lists")
async def list_lead_lists(session: SessionDep, account: CurrentAccount) -> list[LeadListOut]:
    return [
        LeadListOut(
            id=lead_list.id,
            name=lead_list.name,
            leads=leads,
            created_at=stamp(lead_list.created_at) or "",
        )
        for lead_list, leads in await LeadLists(session).list(account.id)
    ]


@router.delete("/broadcast/lists/{lead_list_id}")
async def delete_lead_list(
    lead_list_id: str, session: SessionDep, account: CurrentAccount
) -> SuccessOut:
    await LeadLists(session).delete(account.id, lead_list_id)
    return SuccessOut(message="Lead list deleted")


@router.post("/broadcast/keys")
async def create_broadcast_key(
    body: BroadcastKeyIn, session: SessionDep, account: CurrentAccount, services: ServicesDep
) -> BroadcastKeyCreatedOut:
    lead_list_id = required_text(body.lead_list_id, "lead_list_id", max_length=32)
    template = template_field(body.template)
    caller_id = await caller_id_for(
        session,
        account.id,
        text_field(body.caller_id, "caller_id", max_length=20),
        services.settings.default_region,
    )
    key, clear = await BroadcastKeys(session).create(
        account.id, lead_list_id=lead_list_id, template=template, caller_id=caller_id
    )
    return BroadcastKeyCreatedOut(
        message="Broadcast key created",
        key_id=key.id,
        api_key=clear,
        lead_list_id=key.lead_list_id,
        caller_id=shown(caller_id) or "",
    )


@router.get("/broadcast/keys")
async def list_broadcast_keys(
    session: SessionDep, account: CurrentAccount
) -> list[BroadcastKeyOut]:
    return [
        BroadcastKeyOut(
            key_id=key.id,
            lead_list_id=key.lead_list_id,
            template=key.template,
            caller_id=shown(key.caller_id) or "",
            created_at=stamp(key.created_at) or "",
        )
        for key in await BroadcastKeys(session).list(account.id)
    ]


@router.delete("/broadcast/keys/{key_id}")
async def delete_broadcast_key(
    key_id: str, session: SessionDep, account: CurrentAccount
) -> SuccessOut:
    await BroadcastKeys(session).delete(account.id, key_id)
    return SuccessOut(message="Broadcast key revoked")
