"""Webhook signatures, the Standard Webhooks scheme (standardwebhooks.com, "Signature
scheme"; the same one Svix uses).

Each request carries ``webhook-id`` (the event id), ``webhook-timestamp`` (Unix
seconds when this attempt was signed) and ``webhook-signature``: space-separated
``v1,<base64 HMAC-SHA256>`` entries over ``f"{id}.{timestamp}.{body}"``, one per
active secret of the account, so that during a rotation a receiver holding either the
old or the new secret accepts the request. A secret is ``whsec_`` followed by the
base64 of 32 random bytes; the HMAC key is those bytes, not the text.

The timestamp is taken per attempt, not per event: receivers reject old timestamps
(the reference verifiers allow five minutes) to stop replays, and a retry hours later
must still pass.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # 256-bit keys, the size the Standard Webhooks spec recommends


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def sign(secret: str, webhook_id: str, timestamp_s: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature entry."""
    signed = f"{webhook_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(
    webhook_id: str, timestamp_s: int, body: bytes, secrets_: Iterable[str]
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt, signed with every secret."""
    signatures = " ".join(sign(s, webhook_id, timestamp_s, body) for s in secrets_)
    if not signatures:
        raise ValueError("at least one signing secret is needed")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signatures,
    }
