"""Plivo's request parameters, read and checked before anything is looked up or
changed, so a bad value is a 400 that leaves the store as it was.

POST bodies are JSON objects (plivo-python sends ``json=`` with the keyword arguments it
was given, ``None`` left out: ``Client.create_request``, ``utils.to_param_dict``); GET
parameters are the query string, every value a string. So a boolean is JSON
``true``/``false`` in a body and ``True``/``False``/``true``/``false`` in a query, an
integer a JSON number or a string of digits. Unlike Twilio's reader, a key that is no
parameter of the request is refused: Plivo's bodies are small, fixed lists, and a
misspelt option (``recording_callback_metod``) silently dropped would be a setting the
user believes in and never gets.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from fastapi import Request

from callmask.api.plivo.errors import invalid
from callmask.errors import InvalidInput
from callmask.netguard import check_url
from callmask.phone import normalise

JSON_TYPE = "application/json"
MAX_TEXT = 4096  # longer than any parameter Plivo defines (a URL is capped below it)
MAX_INT = 2**31 - 1  # the store's INTEGER columns are 32-bit on PostgreSQL
_INTEGER = re.compile(r"-?[0-9]{1,12}")
_DIGITS = re.compile(r"[0-9]+")


class Fields:
    """The parameters of one request, by name."""

    def __init__(self, values: Mapping[str, Any], *, allowed: Collection[str]) -> None:
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise invalid(f"unknown parameter {unknown[0]!r}")
        self._values = dict(values)

    def __contains__(self, name: str) -> bool:
        return self._values.get(name) is not None

    def names(self) -> Iterable[str]:
        return [name for name, value in self._values.items() if value is not None]

    def raw(self, name: str) -> Any:
        return self._values.get(name)

    def text(self, name: str, *, max_length: int = MAX_TEXT) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid(f"{name} must be a string")
        if len(value) > max_length:
            raise invalid(f"{name} must be {max_length} characters or fewer")
        if "\x00" in value:
            raise invalid(f"{name} contains a NUL character")
        return value

    def boolean(self, name: str) -> bool | None:
        value = self._values.get(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise invalid(f"{name} must be true or false, not {value!r}")

    def integer(self, name: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int | None:
        value = self._values.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise invalid(f"{name} must be an integer, not {value!r}")
        if isinstance(value, str):
            if not _INTEGER.fullmatch(value.strip()):
                raise invalid(f"{name} must be an integer, not {value!r}")
            value = int(value)
        if not minimum <= value <= maximum:
            raise invalid(f"{name} must be between {minimum} and {maximum}, not {value}")
        return value

    def choice(self, name: str, choices: Collection[str], *, upper: bool = False) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        given = value.upper() if upper else value.lower()
        if given not in choices:
            raise invalid(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return given

    def url(self, name: str, *, allow_private: bool) -> str | None:
        """A URL callmask may fetch or call, checked as every callmask API checks them;
        "" is returned as is (no URL)."""
        value = self.text(name)
        if not value:
            return value
        try:
            return check_url(value, allow_private=allow_private, field=name)
        except InvalidInput as exc:
            raise invalid(str(exc)) from exc

    def digits(self, name: str, *, min_length: int, max_length: int) -> str | None:
        value = self._values.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a PIN sent as a JSON number
        if value is None:
            return None
        if (
            not isinstance(value, str)
            or not _DIGITS.fullmatch(value)
            or not min_length <= len(value) <= max_length
        ):
            raise invalid(f"{name} must be {min_length} to {max_length} digits, not {value!r}")
        return value

    def phone_number(self, name: str) -> str | None:
        """E.164, given with or without its ``+`` (Plivo writes ``917708772011``)."""
        value = self.text(name, max_length=32)
        if value is None:
            return None
        try:
            return normalise(value)
        except InvalidInput as exc:
            raise invalid(f"{name} is not a phone number ({value!r}): {exc}") from exc

    def time(self, name: str) -> tuple[dt.datetime, dt.timedelta] | None:
        """``YYYY-MM-DD HH:MM[:ss[.uuuuuu]]`` (Plivo's list filters; UTC), and the
        precision it was given to: an equality filter matches that whole minute,
        second or microsecond."""
        value = self.text(name, max_length=40)
        if value is None:
            return None
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise invalid(
                f"{name} must be a time as YYYY-MM-DD HH:MM[:ss[.uuuuuu]], not {value!r}"
            ) from exc
        clock = text[11:].split("+")[0].rstrip("Z")
        if "." in clock:
            step = dt.timedelta(microseconds=1)
        elif clock.count(":") >= 2:
            step = dt.timedelta(seconds=1)
        elif ":" in clock:
            step = dt.timedelta(minutes=1)
        else:
            step = dt.timedelta(days=1)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC), step


async def json_body(request: Request, *, allowed: Collection[str]) -> Fields:
    """The JSON object of a POST; an empty body is no parameters."""
    body = await request.body()
    if not body.strip():
        return Fields({}, allowed=allowed)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != JSON_TYPE:
        raise invalid(f"send the parameters as a JSON object ({JSON_TYPE}), as Plivo takes them")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise invalid(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    return Fields(data, allowed=allowed)


def query_fields(request: Request, *, allowed: Collection[str]) -> Fields:
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in values:
            raise invalid(f"{name} was given twice; give it once")
        values[name] = value
    return Fields(values, allowed=allowed)
