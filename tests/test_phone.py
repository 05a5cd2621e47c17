"""Phone numbers as operators, customers and carriers write them, kept as E.164."""

from __future__ import annotations

import pytest

from callmask.errors import InvalidInput
from callmask.phone import digits, normalise, region_of


@pytest.mark.parametrize(
    "raw",
    [
        "+41793026731",
        "41793026731",  # Infobip's form: international digits, no '+'
        "0041793026731",  # international dialling prefix
        "+41 79 302 67 31",
        " +41-79-302-67-31 ",
    ],
)
def test_an_operator_adds_the_reference_did_in_any_international_spelling(raw: str) -> None:
    assert normalise(raw) == "+41793026731"
    assert normalise(raw, "IN") == "+41793026731"  # a default region does not get in the way


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("0793026731", "CH", "+41793026731"),
        ("079 302 67 31", "CH", "+41793026731"),
        ("9876543210", "IN", "+919876543210"),
        ("09876543210", "IN", "+919876543210"),
        ("(202) 555-0143", "US", "+12025550143"),
    ],
)
def test_national_numbers_are_read_in_the_default_region(raw: str, region: str, e164: str) -> None:
    assert normalise(raw, region) == e164


@pytest.mark.parametrize("raw", ["0793026731", "9876543210"])
def test_national_numbers_without_a_default_region_are_refused_with_a_hint(raw: str) -> None:
    with pytest.raises(InvalidInput, match="CALLMASK_DEFAULT_REGION"):
        normalise(raw)


@pytest.mark.parametrize(
    "raw",
    ["12345", "abc", "+41 12", "+999123456789", "41793026731" * 3, "+" + "9" * 300],
)
def test_things_that_are_not_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid phone number"):
        normalise(raw, "CH")


@pytest.mark.parametrize("raw", ["", "   "])
def test_an_empty_number_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        normalise(raw)


def test_numbers_are_shown_the_way_infobip_shows_them() -> None:
    assert digits("+41793026731") == "41793026731"


@pytest.mark.parametrize(
    ("e164", "region"),
    [
        ("+41793026731", "CH"),
        ("+919876543210", "IN"),
        ("+12025550143", "US"),
        ("+80012345678", "ZZ"),  # universal freephone: no country
        ("+8821600000000", "ZZ"),  # global services
    ],
)
def test_a_did_is_filed_under_its_country(e164: str, region: str) -> None:
    assert region_of(e164) == region
