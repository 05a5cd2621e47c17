"""Refusal of a NUL character in the request target (path or query), with a 400 in the
dialect's error shape, before any route runs.

A client may percent-encode any octet in a URI (RFC 3986, 2.1), and ``%00`` decodes to
a NUL that no key, filter or name of either dialect can contain. PostgreSQL refuses
NUL in text ("invalid byte sequence for encoding UTF8: 0x00"), so a NUL that reached a
query was a 500: in Tata lead list, broadcast key and account ids, in the call records
filters, in webhook event ids and event types. One check at the door covers every
path parameter and query filter, present and future.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from callmask.api.errors import error_response


def nul_in_target(scope: Scope) -> str | None:
    """What in the target carries a NUL (``"path"`` or a query parameter's name), or
    None. The path is already percent-decoded; the query string is raw."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" not in query and "\x00" not in query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "") or "query"
    return "query"


class NulFreeTarget:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = nul_in_target(scope) if scope["type"] == "http" else None
        if where is not None:
            response = error_response(Request(scope), 400, f"{where} contains a NUL character")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
