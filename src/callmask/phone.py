"""Phone numbers: parse whatever a client or a carrier sends, keep E.164.

Numbers are stored and compared as E.164 (``+41793026731``). Infobip shows numbers as
international digits without the plus (``41793026731``); national input
(``0793026731``, ``9876543210``) is read in ``CALLMASK_DEFAULT_REGION``.
"""

from __future__ import annotations

import functools

import phonenumbers

from callmask.errors import InvalidInput


# Parsing and validating one number costs ~28 us, and every call normalises four (the
# DID, the caller, the callback's number and caller ID), mostly the same few again and
# again. Only valid numbers are kept (a raised InvalidInput is never cached).
@functools.lru_cache(maxsize=16_384)
def normalise(raw: str, default_region: str | None = None) -> str:
    """Return the E.164 form of ``raw`` or raise ``InvalidInput`` saying why."""
    text = raw.strip()
    if not text:
        raise InvalidInput("phone number is empty")
    # Infobip clients send international digits without '+'; treat a long run of digits
    # as international unless a region is configured and reads it as a valid number.
    candidates: list[tuple[str, str | None]] = []
    if text.startswith("+"):
        candidates.append((text, None))
    elif text.startswith("00"):
        candidates.append(("+" + text[2:], None))
    else:
        if default_region:
            candidates.append((text, default_region))
        if text.isdigit():
            candidates.append(("+" + text, None))
    for candidate, region in candidates:
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    hint = "" if default_region else " (national numbers need CALLMASK_DEFAULT_REGION)"
    raise InvalidInput(f"not a valid phone number: {raw!r}{hint}")


def digits(e164: str) -> str:
    """The Infobip display form: international digits, no plus."""
    return e164.removeprefix("+")


def region_of(e164: str) -> str:
    """ISO 3166 alpha-2 country of a number; "ZZ" (unknown region) when it has none.

    Non-geographic numbers (+800 freephone, +882 global services...) come back from
    phonenumbers as the three-character "001", which is no country and does not fit
    the two-character country column.
    """
    region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    return region if region and len(region) == 2 and region.isalpha() else "ZZ"
