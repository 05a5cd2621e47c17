"""Twilio's request parameters: form-encoded bodies and query strings with PascalCase
names, read and checked here so a bad value is a 400 (code 20001) before anything is
looked up or changed.

Twilio ignores parameters it does not know, and so does this reader: a newer SDK
sending a newer parameter keeps working. A known parameter with a bad value is refused.
twilio-python sends booleans as ``true``/``false`` (``serialize.boolean_to_string``),
datetimes as ``%Y-%m-%dT%H:%M:%SZ`` (``serialize.iso8601_datetime``) and list items
as repeated fields (``Participants``, each a JSON object as a string).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl

from fastapi import Request

from callmask.errors import InvalidInput
from callmask.netguard import check_url

FORM_TYPE = "application/x-www-form-urlencoded"
# A value longer than this is no parameter Twilio defines (the longest, a URL, is
# capped at netguard.MAX_URL_LENGTH); it is refused rather than stored or parsed.
MAX_VALUE_LENGTH = 4096
# The store's INTEGER columns are 32-bit on PostgreSQL.
MAX_INT = 2**31 - 1
_INTEGER = re.compile(r"-?[0-9]{1,12}")
# More fields than any Twilio request has (a session with its two participants is 8).
MAX_FIELDS = 100


class Params:
    """The parameters of one request (form body or query), by name, in order."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def all(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))

    def raw(self, name: str) -> str | None:
        """The one value of ``name``, or None if absent; more than one is refused."""
        values = self._values.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise InvalidInput(f"{name} was given {len(values)} times; give it once")
        value = values[0]
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidInput(f"{name} is longer than {MAX_VALUE_LENGTH} characters")
        if "\x00" in value:
            raise InvalidInput(f"{name} contains a NUL character")
        return value

    def text(self, name: str, *, max_length: int, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None or value == "":
            if required:
                raise InvalidInput(f"{name} is required")
            return None if value is None else ""
        if len(value) > max_length:
            raise InvalidInput(f"{name} must be {max_length} characters or fewer")
        return value

    def integer(self, name: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int | None:
        value = self.raw(name)
        if value is None:
            return None
        if not _INTEGER.fullmatch(value.strip()):
            raise InvalidInput(f"{name} must be an integer, not {value!r}")
        number = int(value)
        if not minimum <= number <= maximum:
            raise InvalidInput(f"{name} must be between {minimum} and {maximum}")
        return number

    def boolean(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None:
            return None
        match value.strip().lower():
            case "true":
                return True
            case "false":
                return False
        raise InvalidInput(f"{name} must be true or false, not {value!r}")

    def choice(self, name: str, choices: Sequence[str]) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        if value not in choices:
            raise InvalidInput(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def url(self, name: str, *, allow_private: bool) -> str | None:
        """A callback URL, checked as every callmask API checks them; an empty value
        is returned as "" (clears the URL on an update)."""
        value = self.raw(name)
        if value is None or value == "":
            return value
        return check_url(value, allow_private=allow_private, field=name)

    def datetime(self, name: str) -> dt.datetime | None:
        value = self.raw(name)
        if value is None:
            return None
        return parse_datetime(name, value)


def parse_datetime(name: str, value: str) -> dt.datetime:
    """ISO 8601 as Twilio takes it (``2015-07-30T20:00:00Z``); an offset is converted,
    no offset means UTC (Twilio's times are GMT). Aware UTC."""
    text = value.strip()
    if not 10 <= len(text) <= 40 or not text[:4].isdigit():
        raise InvalidInput(f"{name} must be an ISO 8601 date and time, not {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{name} must be an ISO 8601 date and time, not {value!r}") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def query_params(request: Request) -> Params:
    try:
        pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError as exc:
        raise InvalidInput("too many query parameters") from exc
    return Params(pairs)


async def form_params(request: Request) -> Params:
    """The form-encoded body. An empty body is no parameters; a body in another
    content type is refused rather than silently read as nothing."""
    body = await request.body()
    if not body:
        return Params(())
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM_TYPE:
        raise InvalidInput(f"send the parameters form-encoded ({FORM_TYPE}), as Twilio takes them")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the form-encoded body is malformed") from exc
    return Params(pairs)
