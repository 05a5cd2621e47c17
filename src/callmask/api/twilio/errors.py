"""Twilio's error body for every answer under ``/twilio/``: ``{"code", "message",
"more_info", "status"}``, the legacy shape twilio-python turns into a
``TwilioRestException`` with ``code`` and ``status`` (``twilio/base/version.py``,
``Version.exception``).

The app's own handlers (``api/errors.py``) answer every exception, whatever the path,
in the Infobip or Tata shape, so the Twilio routes use their own route class: around
the route's handler (its dependencies included) every exception is turned into Twilio's
answer there and then. Returning an answer, unlike raising, would let the store
session's dependency commit on its way out; so the route takes its session through
``TwilioSessionDep``, which leaves it where the route class finds it and rolls it back
first: bad input changes nothing.

Codes are Twilio's where Twilio has one: 20001 invalid parameter (400), 20003
authenticate (401), 20004 method not allowed (405), 20404 not found (404), 20500
internal error, and the domain's own (``ProxyError``: 80207, 80208, ...). Where Twilio
has none (a conflict of callmask's own, a body over the size limit, not implemented),
``code`` is the HTTP status, which is also what twilio-python reports for a body without
a code.
"""

from __future__ import annotations

import logging
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

INVALID_PARAMETER = 20001
AUTHENTICATE = 20003
METHOD_NOT_ALLOWED = 20004
NOT_FOUND = 20404
INTERNAL_ERROR = 20500

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="callmask"'}


class TwilioProblem(Exception):
    """An answer in Twilio's error shape, raised by a Twilio route."""

    def __init__(
        self, status: int, code: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return twilio_error(self.status, self.code, self.message, self.headers)


def twilio_error(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status, headers=dict(headers or {}))


def problem_of(exc: Exception) -> TwilioProblem:
    """The Twilio answer for an exception raised while serving a Twilio route."""
    # The domain's ProxyError carries Twilio's own code and status; read by attribute so
    # this module does not depend on the domain package.
    code = getattr(exc, "code", None)
    status = getattr(exc, "status", None)
    if isinstance(exc, TwilioProblem):
        return exc
    if isinstance(exc, CallmaskError) and isinstance(code, int) and isinstance(status, int):
        return TwilioProblem(status, code, str(exc))
    if isinstance(exc, InvalidInput):
        return TwilioProblem(400, INVALID_PARAMETER, str(exc))
    if isinstance(exc, Unauthorized):
        return TwilioProblem(401, AUTHENTICATE, f"Authenticate: {exc}", WWW_AUTHENTICATE)
    if isinstance(exc, NotFound):
        return TwilioProblem(404, NOT_FOUND, str(exc))
    if isinstance(exc, Conflict):
        return TwilioProblem(409, 409, str(exc))
    if isinstance(exc, PayloadTooLarge):
        return TwilioProblem(413, 413, str(exc))
    if isinstance(exc, CallmaskError):
        return TwilioProblem(400, INVALID_PARAMETER, str(exc))
    if isinstance(exc, RequestValidationError):
        return TwilioProblem(400, INVALID_PARAMETER, "invalid request")
    if isinstance(exc, StarletteHTTPException):
        code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 400: INVALID_PARAMETER}.get(
            exc.status_code, exc.status_code
        )
        text = exc.detail if isinstance(exc.detail, str) else "request refused"
        return TwilioProblem(exc.status_code, code, text, exc.headers)
    log.exception("unhandled error in a Twilio route", exc_info=exc)
    return TwilioProblem(500, INTERNAL_ERROR, "internal error")


# Every failure of a Twilio route is answered in Twilio's error shape, with the
# request's store session rolled back first (``api.dialect_route``).
TwilioRoute = answering_route(problem_of)
TwilioSessionDep = DialectSessionDep
