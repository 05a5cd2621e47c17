"""Phone numbers as the Tata dialect takes and shows them (reference:
tata-cpaas-anonymize.txt, click-to-call and call records).

Customer numbers are 10 to 15 digits, optionally prefixed with ``+91`` or ``0``; national
forms are read in ``CALLMASK_DEFAULT_REGION``. Numbers are shown as international digits
without a plus (the reference's ``9180XXXXXXXX``), except an agent's follow-me number,
which the reference shows as ``+91XXXXXXXXXX``. Caller IDs must be the account's own DIDs:
showing someone else's number is what a masking service must never do.
"""

from __future__ import annotations

import datetime as dt
import re

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.errors import InvalidInput
from callmask.phone import digits, normalise
from callmask.store.tata_repositories import account_dids

CUSTOMER_NUMBER = re.compile(r"(?:\+91|0)?[0-9]{10,15}")
# Digits with an optional plus. phonenumbers alone would also read letters as keypad
# digits ("98765abcde" is a valid number to it), which no Tata client means.
PHONE_NUMBER = re.compile(r"\+?[0-9]{3,17}")
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def phone_number(raw: str, region: str | None, field: str) -> str:
    """E.164 of ``raw`` or a 400 that names the field."""
    if not PHONE_NUMBER.fullmatch(raw):
        raise InvalidInput(f"{field} must be digits, optionally after a + (got {raw!r})")
    try:
        return normalise(raw, region)
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc}") from exc


def customer_number(raw: str, region: str | None, field: str) -> str:
    """A customer's number under the reference's rule, as E.164."""
    if not CUSTOMER_NUMBER.fullmatch(raw):
        raise InvalidInput(
            f"{field} must be 10 to 15 digits, optionally prefixed with +91 or 0 (got {raw!r})"
        )
    return phone_number(raw, region, field)


def spellings(raw: str, region: str | None) -> tuple[str, ...]:
    """Every form in which a CDR may carry the number ``raw``: as given, E.164,
    international digits, national digits with and without the trunk 0."""
    forms = {raw}
    try:
        e164 = phone_number(raw, region, "number")
    except InvalidInput:
        return tuple(sorted(forms))
    national = str(phonenumbers.parse(e164, None).national_number)
    forms.update((e164, digits(e164), national, "0" + national))
    return tuple(sorted(forms))


def shown(number: str | None) -> str | None:
    """How the reference shows a number: digits, no plus."""
    return None if number is None else digits(number)


def stamp(moment: dt.datetime | None) -> str | None:
    """``YYYY-MM-DD hh:mm:ss`` in UTC (SQLite hands back naive UTC datetimes)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime(STAMP_FORMAT)


async def caller_id_for(
    session: AsyncSession, account_id: str, raw: str | None, region: str | None
) -> str:
    """The caller ID to show: ``raw`` if it is one of the account's DIDs, else refused;
    without ``raw``, the account's first DID."""
    dids = await account_dids(session, account_id)
    if not dids:
        raise InvalidInput("the account has no number to show as caller_id; buy a number first")
    if raw is None:
        return dids[0].e164
    e164 = phone_number(raw, region, "caller_id")
    if e164 not in {did.e164 for did in dids}:
        raise InvalidInput(f"caller_id {raw} is not one of this account's numbers")
    return e164
