"""Who is calling: account credentials and the operator key.

Accepted forms (DESIGN.md "Auth"): ``Basic base64(accountId:apiKey)``, ``App <key>``,
``Bearer <key>``, and for the Tata dialect (``/v1/``) the bare key, because Tata
clients put the token in the header as is.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from callmask.errors import Unauthorized

MAX_CREDENTIAL_LENGTH = 512


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str
    account_id: str | None  # only Basic names the account


def parse_authorization(header: str | None, *, allow_bare: bool) -> Credentials:
    if not header:
        raise Unauthorized("missing Authorization header")
    if len(header) > MAX_CREDENTIAL_LENGTH:
        raise Unauthorized("Authorization header too long")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    match scheme.lower():
        case "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise Unauthorized("malformed Basic credentials") from exc
            account_id, sep, api_key = decoded.partition(":")
            if not sep or not account_id or not api_key:
                raise Unauthorized("Basic credentials must be accountId:apiKey")
            return Credentials(api_key=api_key, account_id=account_id)
        case "app" | "bearer" if value:
            return Credentials(api_key=value, account_id=None)
        case _ if allow_bare and not value and scheme:
            return Credentials(api_key=scheme, account_id=None)
    raise Unauthorized("unsupported Authorization scheme (use Basic, App or Bearer)")


def check_admin_key(header: str | None, admin_key: str | None) -> None:
    if not admin_key:
        raise Unauthorized("the operator API is disabled: set CALLMASK_ADMIN_KEY")
    credentials = parse_authorization(header, allow_bare=False)
    if not hmac.compare_digest(credentials.api_key.encode(), admin_key.encode()):
        raise Unauthorized("wrong operator key")
