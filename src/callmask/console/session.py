"""The console's login session: a signed cookie, and the CSRF token it carries.

The cookie names who logged in (an account and the id of the API key it used, or the
operator) and never the key itself; each request checks that the key still exists (or
that the operator key is still the one that logged in), so removing a key or changing
``CALLMASK_ADMIN_KEY`` ends its sessions. The value is ``base64url(JSON).base64url(
HMAC-SHA256)`` under a secret kept in ``$CALLMASK_DATA_DIR/console-secret`` (made on
first use, mode 0600): nodes that share a data directory share sessions, and a
restart does not log anyone out.

CSRF: the synchronizer-token pattern (OWASP CSRF cheat sheet). Every session, also the
anonymous one the login form gets, holds a random token; every POST must send it back
in a form field or the ``X-CSRF-Token`` header. The cookie is also ``SameSite=Strict``
and ``HttpOnly``, so a foreign page can neither send it nor read it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE_NAME = "callmask_console"
COOKIE_PATH = "/console"
# A working day: an operator who logs in in the morning is not asked again at lunch.
SESSION_LIFETIME_S = 8 * 3600
# The login form's anonymous session only has to outlive one form.
LOGIN_FORM_LIFETIME_S = 3600
SECRET_FILE = "console-secret"
MAX_COOKIE_LENGTH = 1024


class Role(enum.Enum):
    ANONYMOUS = "anon"  # has only a CSRF token, for the login form
    ACCOUNT = "account"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    role: Role
    csrf: str
    expires_at: int  # Unix seconds
    account_id: str | None = None  # ACCOUNT only
    key_id: int | None = None  # ACCOUNT: the api_keys row that logged in
    operator_tag: str | None = None  # OPERATOR: which operator key logged in

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(data_dir: Path) -> bytes:
    """The signing secret, created on first use. Written to a temporary name and
    linked into place, so two nodes starting together agree on one secret."""
    path = data_dir / SECRET_FILE
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        temporary = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(32))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another node won; use its secret
        finally:
            temporary.unlink()
        secret = path.read_bytes()
    if len(secret) < 32:
        raise RuntimeError(f"{path} holds fewer than 32 bytes; delete it to make a new one")
    return secret


class SessionCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def operator_tag(self, admin_key: str) -> str:
        """Names the operator key without revealing it, so a new key ends old sessions."""
        digest = hmac.new(self._secret, b"operator:" + admin_key.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def _signature(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())

    def encode(self, session: ConsoleSession) -> str:
        payload = {
            "r": session.role.value,
            "c": session.csrf,
            "e": session.expires_at,
            "a": session.account_id,
            "k": session.key_id,
            "o": session.operator_tag,
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._signature(body)}"

    def decode(self, value: str | None, *, now: float | None = None) -> ConsoleSession | None:
        """The session in a cookie, or None when it is absent, forged, or expired."""
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return None
        body, _, signature = value.partition(".")
        if not hmac.compare_digest(signature.encode(), self._signature(body).encode()):
            return None
        try:
            payload = json.loads(_unb64(body))
            session = ConsoleSession(
                role=Role(payload["r"]),
                csrf=str(payload["c"]),
                expires_at=int(payload["e"]),
                account_id=payload["a"],
                key_id=payload["k"],
                operator_tag=payload["o"],
            )
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= (time.time() if now is None else now):
            return None
        return session


def new_session(
    role: Role,
    *,
    account_id: str | None = None,
    key_id: int | None = None,
    operator: str | None = None,
) -> ConsoleSession:
    lifetime = LOGIN_FORM_LIFETIME_S if role is Role.ANONYMOUS else SESSION_LIFETIME_S
    return ConsoleSession(
        role=role,
        csrf=secrets.token_urlsafe(24),
        expires_at=int(time.time()) + lifetime,
        account_id=account_id,
        key_id=key_id,
        operator_tag=operator,
    )


def csrf_matches(session: ConsoleSession, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())
