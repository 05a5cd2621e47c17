"""Plivo's Number Masking Sessions API, wire-compatible, mounted under ``/plivo``: the
official plivo SDK's ``https://api.plivo.com/v1/Account/{auth_id}/Masking/Session/...``
paths map one to one below ``/plivo/v1/...`` (plivo-python builds every voice URL from
the module constants ``API_VOICE_BASE_URI`` and its two fallbacks in
``plivo/rest/client.py``: point them at ``http://host:port/plivo/v1/Account``).

JSON bodies and answers with Plivo's field names, Plivo's error body, Basic auth
``auth_id:auth_token`` (``auth.py`` maps a callmask account to its auth_id). The domain
work is ``callmask.sessions`` (``shared.py``); this package only speaks the wire. Left
out of callmask's OpenAPI document, as the Twilio routes are: Plivo's reference is
their document.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from callmask.api.dialect_route import allowed_methods
from callmask.api.plivo import recordings, sessions
from callmask.api.plivo.errors import PlivoProblem, PlivoRoute

router = APIRouter(route_class=PlivoRoute, include_in_schema=False)
router.include_router(sessions.router)
router.include_router(recordings.router)

_ROUTES = [*sessions.router.routes, *recordings.router.routes]
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _no_such_route(request: Request) -> None:
    """Anything else under ``/plivo/``: 405 (with ``Allow``) on a path that exists, else
    404, both in Plivo's shape (the app's own 404 would be Infobip's)."""
    allowed = allowed_methods(_ROUTES, request)
    if allowed:
        raise PlivoProblem(
            405,
            f"method {request.method} is not allowed on {request.url.path}",
            {"Allow": ", ".join(allowed)},
        )
    raise PlivoProblem(404, f"the requested resource {request.url.path} was not found")


router.add_api_route("/plivo/{path:path}", _no_such_route, methods=ALL_METHODS)

__all__ = ["router"]
