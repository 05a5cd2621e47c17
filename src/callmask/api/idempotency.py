"""``Idempotency-Key`` on every POST of every API: a retried request gets the first
answer instead of doing the work twice.

A pure ASGI middleware, so it covers every router present and future (Infobip, Tata,
the operator API, webhooks, Twilio Proxy, Plivo) without any of them knowing. It
follows the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header) and Stripe's rules where the draft leaves
a choice:

- Only a POST that carries the header and whose ``Authorization`` names a caller is
  touched; anything else passes through as if this module did not exist (an
  unauthenticated request gets the route's own 401).
- The key is scoped by who asks: the account whose API key the request carries, or
  ``operator`` for ``CALLMASK_ADMIN_KEY``. Two accounts using the same key never meet.
- The first request inserts its row (``status_code`` NULL) before the route runs; the
  primary key (scope, key) makes a concurrent duplicate fail to insert, on SQLite and on
  PostgreSQL alike, so exactly one of them runs. The duplicate gets 409 while the first
  is running.
- The route's answer is stored before its last byte reaches the client, so a client
  that saw the answer always gets the same one on a retry: 2xx and 4xx, except 401, 408
  and 429 (nothing was done and trying again is the remedy). A 5xx or an exception
  means nothing was done: the row is deleted and a retry runs again.
- A retry with the same method, target (path and query) and body within 24 h gets the
  stored status, headers and body byte for byte, plus ``Idempotent-Replayed: true``.
  The same key with another target or body is 422.
- An answer larger than ``max_stored_bytes`` (1 MiB) is not kept: its row keeps the
  status, and a retry gets 409 saying the request was done and not run again.
- Rows older than 24 h are ignored (the insert path replaces an expired row of the
  same key) and purged by a sweep that runs at most once a minute on each node, inline
  in a keyed POST (no background task to own).

Refusals use the error body of the dialect the path belongs to: Twilio
(``/twilio/...``: ``code``, ``message``, ``more_info``, ``status``), Plivo (a
``/v1/Account/...`` path: ``api_id``, ``error``), Tata (``/v1/...``) and Infobip
(everything else) through ``api/errors.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callmask.api.auth import parse_authorization
from callmask.api.errors import error_response
from callmask.errors import Unauthorized
from callmask.store.database import Database
from callmask.store.models import IdempotentRequest, utcnow
from callmask.store.repositories import Accounts
from callmask.webhooks.repository import as_utc

log = logging.getLogger(__name__)

HEADER = b"idempotency-key"
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
# The width of idempotent_requests.key (migration 0006); Stripe allows 255 too.
MAX_KEY_LENGTH = 255
# The draft suggests at least 24 h; Stripe keeps keys 24 h.
RETENTION = dt.timedelta(hours=24)
# POST answers are objects just created: a few KB. The largest, the operator adding
# thousands of numbers at once, fits well below this.
MAX_STORED_BYTES = 1024 * 1024
SWEEP_INTERVAL = dt.timedelta(minutes=1)
OPERATOR_SCOPE = "operator"
# Answers that say nothing was done and a retry is the remedy: not kept.
NOT_STORED = frozenset({401, 408, 429})
# Twilio's "Invalid parameter"; Twilio has no code of its own for a reused key or for
# a request still in progress, so those carry the HTTP status, as the twilio SDK reads
# a body without a code.
TWILIO_INVALID_PARAMETER = 20001


@dataclass(frozen=True, slots=True)
class Attempt:
    """One keyed POST: who asks, with which key, for what."""

    scope: str
    key: str
    method: str
    target: str  # raw path and query, as the client sent it
    request_sha256: str


def request_sha256(method: str, target: str, body: bytes) -> str:
    """SHA-256 over the method, the target and the body, each part length-prefixed so
    that no two different requests share the bytes hashed."""
    digest = hashlib.sha256()
    for part in (method.encode(), target.encode("latin-1"), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def key_problem(values: list[bytes]) -> str | None:
    """Why the ``Idempotency-Key`` header values are not one usable key, or None."""
    if len(values) > 1:
        return "send one Idempotency-Key header, not several"
    value = values[0]
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not all(0x20 <= b <= 0x7E for b in value):
        return f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
    return None


def refusal(
    scope: Scope, status: int, text: str, headers: dict[str, str] | None = None
) -> Response:
    """A refusal in the error body of the dialect the request's path belongs to."""
    path = str(scope.get("path", ""))
    if path.startswith("/twilio/"):
        code = TWILIO_INVALID_PARAMETER if status in (400, 422) else status
        body: object = {
            "code": code,
            "message": text,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return JSONResponse(body, status, headers=headers)
    if "/v1/Account/" in path:
        return JSONResponse({"api_id": str(uuid.uuid4()), "error": text}, status, headers=headers)
    return error_response(Request(scope), status, text, headers)


def _target(scope: Scope) -> str:
    raw_path = scope.get("raw_path") or str(scope.get("path", "")).encode()
    query = scope.get("query_string", b"")
    return (raw_path + b"?" + query if query else raw_path).decode("latin-1")


def _stamp(value: dt.datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


class IdempotencyKeys:
    """The middleware. ``clock`` gives aware UTC times (tests move it)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        retention: dt.timedelta = RETENTION,
        max_stored_bytes: int = MAX_STORED_BYTES,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.app = app
        self.retention = retention
        self.max_stored_bytes = max_stored_bytes
        self.clock = clock
        self._swept_at: dt.datetime | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        values = [value for name, value in scope.get("headers", []) if name == HEADER]
        services = getattr(getattr(scope.get("app"), "state", None), "services", None)
        if not values or services is None:
            await self.app(scope, receive, send)
            return
        database: Database = services.database
        owner = await self._owner(scope, database, services.settings.admin_key)
        if owner is None:
            await self.app(scope, receive, send)
            return
        problem = key_problem(values)
        if problem is not None:
            await refusal(scope, 400, problem)(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left before sending its body: nothing to do
        target = _target(scope)
        attempt = Attempt(
            scope=owner,
            key=values[0].decode("ascii"),
            method=scope["method"],
            target=target,
            request_sha256=request_sha256(scope["method"], target, body),
        )
        await self._sweep(database)
        first = await self._claim(database, attempt)
        if first is None:
            await self._run(scope, _replaying(body, receive), send, database, attempt)
        else:
            await self._answer_from(first, attempt, scope, receive, send)

    async def _owner(self, scope: Scope, database: Database, admin_key: str | None) -> str | None:
        """The scope of the caller's keys, or None when the request names nobody."""
        header = next(
            (v.decode("latin-1") for n, v in scope.get("headers", []) if n == b"authorization"),
            None,
        )
        path = str(scope.get("path", ""))
        try:
            credentials = parse_authorization(header, allow_bare=path.startswith("/v1/"))
        except Unauthorized:
            return None
        if admin_key and hmac.compare_digest(credentials.api_key.encode(), admin_key.encode()):
            return OPERATOR_SCOPE
        # By the key alone: a Basic user name that does not match is the route's 401,
        # which is not stored; Plivo's auth id alias names the same account.
        async with database.session() as session:
            account = await Accounts(session).by_api_key(credentials.api_key)
        return None if account is None else account.id

    async def _sweep(self, database: Database) -> None:
        now = self.clock()
        if self._swept_at is not None and now - self._swept_at < SWEEP_INTERVAL:
            return
        self._swept_at = now
        async with database.writing() as session:
            result = await session.execute(
                delete(IdempotentRequest).where(IdempotentRequest.created_at < now - self.retention)
            )
        purged = getattr(result, "rowcount", 0)
        if purged:
            log.info("purged %d idempotency keys older than %s", purged, self.retention)

    async def _claim(self, database: Database, attempt: Attempt) -> IdempotentRequest | None:
        """None once this request holds the key; else the live row of the request that
        held it first."""
        row: IdempotentRequest | None = None
        # A row seen by the failed insert can be gone by the read (its request failed
        # and was forgotten); then the insert is tried again, a few times at most.
        for _ in range(3):
            now = self.clock()
            try:
                async with database.writing() as session:
                    await session.execute(
                        delete(IdempotentRequest).where(
                            IdempotentRequest.scope == attempt.scope,
                            IdempotentRequest.key == attempt.key,
                            IdempotentRequest.created_at < now - self.retention,
                        )
                    )
                    session.add(
                        IdempotentRequest(
                            scope=attempt.scope,
                            key=attempt.key,
                            method=attempt.method,
                            path=attempt.target,
                            request_sha256=attempt.request_sha256,
                            created_at=now,
                        )
                    )
                return None
            except IntegrityError:
                pass
            async with database.session() as session:
                row = await session.get(IdempotentRequest, (attempt.scope, attempt.key))
            if row is not None and as_utc(row.created_at) >= now - self.retention:
                return row
        # Taken and forgotten each time: answered as a request still in progress.
        return row or IdempotentRequest(
            scope=attempt.scope,
            key=attempt.key,
            method=attempt.method,
            path=attempt.target,
            request_sha256=attempt.request_sha256,
            status_code=None,
            created_at=self.clock(),
        )

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, database: Database, attempt: Attempt
    ) -> None:
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        settled = False

        async def storing_send(message: Message) -> None:
            nonlocal start, size, settled
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body" and not settled:
                part = message.get("body", b"")
                size += len(part)
                if size <= self.max_stored_bytes:
                    chunks.append(part)
                if not message.get("more_body", False):
                    settled = True
                    too_large = size > self.max_stored_bytes
                    await self._settle(
                        database, attempt, start, b"".join(chunks), too_large=too_large
                    )
            await send(message)

        try:
            await self.app(scope, receive, storing_send)
        except Exception:
            if not settled:
                await self._forget(database, attempt)
            raise
        if not settled:
            await self._forget(database, attempt)

    async def _settle(
        self,
        database: Database,
        attempt: Attempt,
        start: Message | None,
        body: bytes,
        *,
        too_large: bool,
    ) -> None:
        """Keep the answer for the retries, or forget the key when nothing was done."""
        status = int(start["status"]) if start is not None else 500
        if start is None or status >= 500 or status in NOT_STORED:
            await self._forget(database, attempt)
            return
        headers = [
            [name.decode("latin-1"), value.decode("latin-1")]
            for name, value in start.get("headers", [])
        ]
        try:
            async with database.writing() as session:
                await session.execute(
                    update(IdempotentRequest)
                    .where(
                        IdempotentRequest.scope == attempt.scope,
                        IdempotentRequest.key == attempt.key,
                        IdempotentRequest.request_sha256 == attempt.request_sha256,
                        IdempotentRequest.status_code.is_(None),
                    )
                    .values(
                        status_code=status,
                        response_headers=json.dumps(headers),
                        response_body=None if too_large else body,
                    )
                )
        except Exception:
            # The work is done and the client is owed its answer; the key stays "in
            # progress" (409) until it expires rather than letting a retry run again.
            log.exception("could not store the answer for Idempotency-Key %r", attempt.key)

    async def _forget(self, database: Database, attempt: Attempt) -> None:
        """Drop the key of a request that did nothing, so that a retry runs again."""
        try:
            async with database.writing() as session:
                await session.execute(
                    delete(IdempotentRequest).where(
                        IdempotentRequest.scope == attempt.scope,
                        IdempotentRequest.key == attempt.key,
                        IdempotentRequest.request_sha256 == attempt.request_sha256,
                        IdempotentRequest.status_code.is_(None),
                    )
                )
        except Exception:
            # Raised from the route's own failure path: the route's error is the one
            # to report; the key then answers 409 until it expires.
            log.exception("could not forget Idempotency-Key %r", attempt.key)

    async def _answer_from(
        self, first: IdempotentRequest, attempt: Attempt, scope: Scope, receive: Receive, send: Send
    ) -> None:
        key = attempt.key
        if (first.method, first.path) != (attempt.method, attempt.target):
            text = (
                f"Idempotency-Key {key!r} was used for {first.method} {first.path}: a key names "
                "one request; use a new key for another"
            )
            await refusal(scope, 422, text)(scope, receive, send)
            return
        if first.request_sha256 != attempt.request_sha256:
            text = (
                f"Idempotency-Key {key!r} was used with another request body: a key names one "
                "request; use a new key for another"
            )
            await refusal(scope, 422, text)(scope, receive, send)
            return
        if first.status_code is None:
            text = (
                f"a request with Idempotency-Key {key!r} is still being answered (since "
                f"{_stamp(first.created_at)}); retry later to get its answer"
            )
            await refusal(scope, 409, text, {"Retry-After": "1"})(scope, receive, send)
            return
        if first.response_body is None:
            text = (
                f"the request with Idempotency-Key {key!r} was done (status "
                f"{first.status_code}) and is not run again; its answer was larger than the "
                f"{self.max_stored_bytes} bytes kept for retries"
            )
            await refusal(scope, 409, text)(scope, receive, send)
            return
        log.info("replaying the answer to Idempotency-Key %r (%s)", key, first.status_code)
        headers = [
            (str(name).encode("latin-1"), str(value).encode("latin-1"))
            for name, value in json.loads(first.response_headers or "[]")
        ]
        await send(
            {
                "type": "http.response.start",
                "status": first.status_code,
                "headers": [*headers, REPLAYED_HEADER],
            }
        )
        await send({"type": "http.response.body", "body": first.response_body})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (its size is capped by ``BodySizeLimit`` outside), or
    None if the client disconnected first."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the route the body already read, then the real one
    (for the disconnect)."""
    delivered = False

    async def replaying_receive() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replaying_receive
