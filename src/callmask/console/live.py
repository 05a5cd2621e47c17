"""Live calls for the console: the engine's ``CallControl.live_calls`` for the viewer's
account (or every account, for the operator), and a server-sent-event stream
(WHATWG HTML, "Server-sent events") that pushes the rendered table whenever it
changes, which htmx's SSE extension swaps into the page.

The stream polls the engine's in-memory table (no store access) once a second, sends
only when the table changed, sends a comment line as a keep-alive so proxies do not
cut an idle stream, and ends after ``STREAM_LIFETIME_S``: the browser's EventSource
reconnects by itself, and that reconnect re-checks the session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from callmask.api.deps import Services
from callmask.calls.control import LiveCall
from callmask.console.web import TEMPLATES, Viewer
from callmask.store.repositories import Accounts

POLL_INTERVAL_S = 1.0
KEEPALIVE_INTERVAL_S = 15.0
STREAM_LIFETIME_S = 300.0
EVENT_NAME = "calls"


def calls_of(services: Services, account_ids: list[str]) -> list[LiveCall] | None:
    """None when this node does not run the call path."""
    if services.calls is None:
        return None
    calls = [c for account_id in account_ids for c in services.calls.live_calls(account_id)]
    return sorted(calls, key=lambda c: c.started_at)


async def live_calls(
    viewer: Viewer, services: Services, session: AsyncSession
) -> list[LiveCall] | None:
    if viewer.account_id is not None:
        return calls_of(services, [viewer.account_id])
    if services.calls is None:
        return None
    return calls_of(services, [a.id for a in await Accounts(session).list()])


def render_table(viewer: Viewer, calls: list[LiveCall] | None) -> str:
    return TEMPLATES.get_template("_live_table.html").render(
        calls=calls or [], running=calls is not None, viewer=viewer, csrf=viewer.session.csrf
    )


def sse_event(name: str, data: str) -> str:
    # Each line of the payload is its own "data:" field; the client joins them with \n.
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {name}\n{lines}\n"


async def _events(
    request: Request, viewer: Viewer, services: Services, account_ids: list[str]
) -> AsyncIterator[str]:
    started = last_sent = time.monotonic()
    previous = None
    # The first event tells the client how long to wait before reconnecting (ms).
    yield "retry: 2000\n\n"
    while time.monotonic() - started < STREAM_LIFETIME_S:
        html = render_table(viewer, calls_of(services, account_ids))
        now = time.monotonic()
        if html != previous:
            previous, last_sent = html, now
            yield sse_event(EVENT_NAME, html)
        elif now - last_sent >= KEEPALIVE_INTERVAL_S:
            last_sent = now
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_INTERVAL_S)


def stream_response(
    request: Request, viewer: Viewer, services: Services, operator_accounts: list[str] | None
) -> StreamingResponse:
    account_ids = operator_accounts if operator_accounts is not None else [viewer.account_id or ""]
    return StreamingResponse(
        _events(request, viewer, services, account_ids),
        media_type="text/event-stream",
        # X-Accel-Buffering: a reverse proxy such as nginx must pass events on at once.
        headers={"X-Accel-Buffering": "no"},
    )
