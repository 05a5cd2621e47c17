"""Twilio Proxy v1, wire-compatible, mounted under ``/twilio``: the official twilio SDK's
``https://proxy.twilio.com/v1/...`` paths map one to one below ``/twilio/v1/...``
(``client.proxy.base_url = "http://host:port/twilio"``).

Services, their PhoneNumbers (the pool), Sessions, Participants and Interactions, as
``twilio/twilio-oai`` ``spec/json/twilio_proxy_v1.json`` defines them: form-encoded
requests with Twilio's PascalCase names, JSON answers with its snake_case fields,
Twilio's paging and error body, Basic auth ``AccountSid:AuthToken``. The domain work is
``callmask.sessions``; this package only speaks the wire.

The routes are left out of callmask's generated OpenAPI document: Twilio's own spec is
their document, and a second, hand-shaped one would only drift from it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from callmask.api.dialect_route import allowed_methods
from callmask.api.twilio import (
    interactions,
    messaging,
    participants,
    phone_numbers,
    services,
    sessions,
)
from callmask.api.twilio.errors import (
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    TwilioProblem,
    TwilioRoute,
)

PARTS = (services, phone_numbers, sessions, participants, interactions, messaging)
router = APIRouter(route_class=TwilioRoute, include_in_schema=False)
for part in PARTS:
    router.include_router(part.router)

# The routes themselves (an including router holds wrappers of them, not the routes).
_ROUTES = [route for part in PARTS for route in part.router.routes]
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _no_such_route(request: Request) -> None:
    """Anything else under ``/twilio/``: 405 (with ``Allow``) on a path that exists, else
    404, both in Twilio's shape (the app's own 404 would be Infobip's)."""
    allowed = allowed_methods(_ROUTES, request)
    if allowed:
        raise TwilioProblem(
            405,
            METHOD_NOT_ALLOWED,
            f"method {request.method} is not allowed on {request.url.path}",
            {"Allow": ", ".join(allowed)},
        )
    raise TwilioProblem(404, NOT_FOUND, f"the requested resource {request.url.path} was not found")


router.add_api_route("/twilio/{path:path}", _no_such_route, methods=ALL_METHODS)

__all__ = ["router"]
