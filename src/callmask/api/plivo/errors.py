"""Plivo's error body for every answer under ``/plivo/``: ``{"api_id", "error"}``, the
shape plivo-python reads (``plivo/rest/client.py``, ``Client.process_response``: on
400, 401, 404, 405, 409, 422 and 500 it raises ``ValidationError``,
``AuthenticationError``, ``ResourceNotFoundError``, ``InvalidRequestError`` or
``PlivoServerError`` with the body's ``error``), with Plivo's HTTP statuses (400 a
parameter is missing or invalid, 401 authentication failed, 404 not found, 405 method
not allowed, 500 server error).

As for the Twilio routes (``api/twilio/errors.py``), the app's own handlers would
answer in Infobip's shape, so the Plivo routes use their own route class, which turns
every exception into Plivo's answer and rolls the request's store session back first:
bad input changes nothing. Nothing here answers with a 5xx other than 500 for a fault
of callmask's: the SDK retries a voice request on any 5xx (``Client.request``), which
for a refusal would only send the same request twice more.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from callmask.api.dialect_route import DialectSessionDep, answering_route
from callmask.errors import (
    CallmaskError,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)

log = logging.getLogger(__name__)

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="callmask"'}


def api_id() -> str:
    """Plivo's per-request id: a new UUID in every answer."""
    return str(uuid.uuid4())


class PlivoProblem(Exception):
    """An answer in Plivo's error shape, raised by a Plivo route."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"api_id": api_id(), "error": self.message}, self.status, headers=self.headers
        )


def invalid(message: str) -> PlivoProblem:
    return PlivoProblem(400, message)


def not_supported(what: str) -> PlivoProblem:
    """A Plivo feature callmask's call path does not carry out yet: refused, never
    stored as if it would happen."""
    return PlivoProblem(400, f"{what} is not supported by callmask yet")


def not_found(message: str = "session not found") -> PlivoProblem:
    return PlivoProblem(404, message)


def problem_of(exc: Exception) -> PlivoProblem:
    """The Plivo answer for an exception raised while serving a Plivo route."""
    if isinstance(exc, PlivoProblem):
        return exc
    # The sessions domain's ProxyError carries an HTTP status (and Twilio's code, which
    # has no place in Plivo's body); read by attribute to stay off the domain package.
    status = getattr(exc, "status", None)
    if isinstance(exc, CallmaskError) and isinstance(status, int):
        return PlivoProblem(status if status in (400, 404, 409) else 400, str(exc))
    if isinstance(exc, InvalidInput):
        return PlivoProblem(400, str(exc))
    if isinstance(exc, Unauthorized):
        return PlivoProblem(401, f"authentication failed: {exc}", WWW_AUTHENTICATE)
    if isinstance(exc, NotFound):
        return PlivoProblem(404, str(exc))
    if isinstance(exc, Conflict):
        return PlivoProblem(409, str(exc))
    if isinstance(exc, PayloadTooLarge):
        return PlivoProblem(413, str(exc))
    if isinstance(exc, CallmaskError):
        return PlivoProblem(400, str(exc))
    if isinstance(exc, RequestValidationError):
        return PlivoProblem(400, "invalid request")
    if isinstance(exc, StarletteHTTPException):
        text = exc.detail if isinstance(exc.detail, str) else "request refused"
        return PlivoProblem(exc.status_code, text, exc.headers)
    log.exception("unhandled error in a Plivo route", exc_info=exc)
    return PlivoProblem(500, "internal error")


# Every failure of a Plivo route is answered in Plivo's error shape, with the
# request's store session rolled back first (``api.dialect_route``).
PlivoRoute = answering_route(problem_of)
PlivoSessionDep = DialectSessionDep
