"""Twilio-shaped identifiers: a two-letter prefix and 32 lowercase hex digits."""

from __future__ import annotations

import re
import secrets

SERVICE, SESSION, PARTICIPANT, INTERACTION, PHONE_NUMBER = "KS", "KC", "KP", "KI", "PN"
_SHAPE = re.compile(r"[A-Z]{2}[0-9a-f]{32}")


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def is_sid(value: str, prefix: str) -> bool:
    return value.startswith(prefix) and _SHAPE.fullmatch(value) is not None
