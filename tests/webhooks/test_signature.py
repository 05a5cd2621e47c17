"""Signatures checked by an independent implementation of Standard Webhooks: the
``standardwebhooks`` reference package, and a from-spec verifier written here. Neither
uses callmask's code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from callmask.webhooks.signature import new_secret, sign, signature_headers


def verify_from_spec(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a customer writes from the spec: HMAC-SHA256 keyed with the base64-decoded
    part after "whsec_", over "id.timestamp.body", any v1 entry matching."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in headers["webhook-signature"].split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


def test_a_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert new_secret() != secret


def test_the_reference_library_accepts_our_signature() -> None:
    secret = new_secret()
    body = b'{"status":"answered","duration":12}'
    headers = signature_headers("0f3c2a", int(time.time()), body, [secret])
    assert Webhook(secret).verify(body, headers) == {"status": "answered", "duration": 12}
    assert verify_from_spec(secret, headers, body)


def test_a_tampered_body_or_id_is_rejected_by_the_reference_library() -> None:
    secret = new_secret()
    body = b'{"status":"answered"}'
    headers = signature_headers("evt1", int(time.time()), body, [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"status":"busy"}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "evt2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    assert not verify_from_spec(secret, headers, b'{"status":"busy"}')


def test_during_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    body = b"{}"
    headers = signature_headers("evt", int(time.time()), body, [old, new])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
        assert verify_from_spec(secret, headers, body)


def test_sign_matches_a_known_vector() -> None:
    # Computed independently: HMAC-SHA256(key=32 zero bytes, "msg_1.1700000000.{}").
    secret = "whsec_" + base64.b64encode(bytes(32)).decode()
    expected = base64.b64encode(
        hmac.new(bytes(32), b"msg_1.1700000000.{}", hashlib.sha256).digest()
    ).decode()
    assert sign(secret, "msg_1", 1700000000, b"{}") == f"v1,{expected}"


def test_signing_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        signature_headers("evt", 1, b"{}", [])
    with pytest.raises(ValueError):
        sign("not-a-secret", "evt", 1, b"{}")
