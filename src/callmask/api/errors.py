"""One place that turns errors into the error body of the dialect a client speaks.

Infobip clients (everything outside ``/v1/``) get
``{"requestError": {"serviceException": {"messageId": ..., "text": ...}}}``; Tata
clients (``/v1/...``) get ``{"success": false, "message": ...}``. Every 4xx and 5xx
the API produces goes through here, including FastAPI's own validation and routing
errors, so no client ever sees a body shape it does not know.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from callmask.errors import (
    CallmaskError,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)

log = logging.getLogger(__name__)

STATUS_OF: dict[type[CallmaskError], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
}

# Infobip messageIds, by status.
MESSAGE_ID_OF: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "TOO_MANY_REQUESTS",
}


def error_response(
    request: Request, status: int, text: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    # ``headers`` carries what the status needs besides the body, e.g. Allow on a 405
    # (RFC 9110, 15.5.6).
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Basic realm="callmask"')
    if request.url.path.startswith("/v1/"):
        return JSONResponse({"success": False, "message": text}, status, headers=headers)
    message_id = MESSAGE_ID_OF.get(status, "GENERAL_ERROR" if status >= 500 else "BAD_REQUEST")
    body = {"requestError": {"serviceException": {"messageId": message_id, "text": text}}}
    return JSONResponse(body, status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CallmaskError)
        status = next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 400)
        return error_response(request, status, str(exc))

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, 400, _describe_validation(exc))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        text = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(request, exc.status_code, text, exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal error")

    app.add_exception_handler(CallmaskError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
