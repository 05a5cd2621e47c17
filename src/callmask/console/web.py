"""The console's plumbing: who is looking (the session cookie checked against the
store), CSRF checks on POSTs, HTML pages from the package's Jinja2 templates, and the
headers every console response carries.

Every console route is a ``ConsoleRoute``: its errors become HTML pages (a missing or
stale session goes to the login form; another account's object is the same 404 the
APIs give) and its responses get a strict Content-Security-Policy: scripts, styles,
and connections only from callmask itself, no inline script or style, no framing.
"""

from __future__ import annotations

import hmac
import logging
import urllib.parse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from callmask.api.deps import ServicesDep, SessionDep
from callmask.console.session import (
    COOKIE_NAME,
    COOKIE_PATH,
    ConsoleSession,
    Role,
    SessionCodec,
    csrf_matches,
    load_secret,
    new_session,
)
from callmask.errors import InvalidInput, NotFound
from callmask.store.models import Account, ApiKey

log = logging.getLogger(__name__)

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show calls and numbers: no shared cache keeps them.
    "Cache-Control": "no-store",
}
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 16_384


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login form."""


class CsrfRejected(Exception):
    """A POST without this session's CSRF token (or from another origin)."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: an account, or the operator (``account`` None) who sees all."""

    session: ConsoleSession
    account: Account | None

    @property
    def is_operator(self) -> bool:
        return self.session.is_operator

    @property
    def account_id(self) -> str | None:
        """The tenancy filter for repositories: None means every account."""
        return None if self.account is None else self.account.id

    @property
    def label(self) -> str:
        return "operator" if self.account is None else f"{self.account.name} ({self.account.id})"


def codec(request: Request, services: ServicesDep) -> SessionCodec:
    state = request.app.state
    existing: SessionCodec | None = getattr(state, "console_codec", None)
    if existing is None:
        existing = SessionCodec(load_secret(services.settings.data_dir))
        state.console_codec = existing
    return existing


CodecDep = Annotated[SessionCodec, Depends(codec)]


def cookie_session(request: Request, session_codec: CodecDep) -> ConsoleSession | None:
    return session_codec.decode(request.cookies.get(COOKIE_NAME))


async def current_viewer(
    request: Request, session: SessionDep, services: ServicesDep, session_codec: CodecDep
) -> Viewer:
    console = session_codec.decode(request.cookies.get(COOKIE_NAME))
    if console is None:
        raise LoginRequired
    match console.role:
        case Role.OPERATOR:
            admin_key = services.settings.admin_key
            expected = session_codec.operator_tag(admin_key or "")
            if not admin_key or not hmac.compare_digest(
                (console.operator_tag or "").encode(), expected.encode()
            ):
                raise LoginRequired
            return Viewer(console, None)
        case Role.ACCOUNT:
            key = None if console.key_id is None else await session.get(ApiKey, console.key_id)
            if key is None or key.account_id != console.account_id:
                raise LoginRequired  # the key that logged in is gone
            account = await session.get(Account, key.account_id)
            if account is None:
                raise LoginRequired
            return Viewer(console, account)
        case Role.ANONYMOUS:
            raise LoginRequired


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the console's forms post nothing else); first value of
    each field. Parsed here rather than through python-multipart, which the API does
    not otherwise need."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InvalidInput("form too large")
    if content_type not in ("application/x-www-form-urlencoded", "") and body:
        raise InvalidInput("forms must be application/x-www-form-urlencoded")
    try:
        fields = urllib.parse.parse_qs(body.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("malformed form") from exc
    return {name: values[0] for name, values in fields.items()}


def check_csrf(request: Request, console: ConsoleSession, form: dict[str, str]) -> None:
    # A browser names the page that sent a POST; one from another site is refused even
    # before the token is looked at.
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise CsrfRejected
    if not csrf_matches(console, form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)):
        raise CsrfRejected


async def checked_form(request: Request, viewer: ViewerDep) -> dict[str, str]:
    """The POST's form, once its CSRF token proved it came from a console page."""
    form = await read_form(request)
    check_csrf(request, viewer.session, form)
    return form


FormDep = Annotated[dict[str, str], Depends(checked_form)]


def set_session_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def page(
    request: Request,
    template: str,
    viewer: Viewer | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {"viewer": viewer, "csrf": viewer.session.csrf if viewer else "", **context},
        status_code=status_code,
    )


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    return page(request, "error.html", None, status_code, status=status_code, message=message)


def anonymous_session() -> ConsoleSession:
    return new_session(Role.ANONYMOUS)


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            response: Response
            try:
                response = await handler(request)
            except LoginRequired:
                response = RedirectResponse("/console/login", status_code=303)
            except CsrfRejected:
                log.warning(
                    "console: POST %s refused: CSRF token missing or wrong", request.url.path
                )
                response = error_page(request, 403, "This form has expired; reload the page.")
            except NotFound as exc:
                response = error_page(request, 404, str(exc))
            except InvalidInput as exc:
                response = error_page(request, 400, str(exc))
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
                    for e in exc.errors()
                )
                response = error_page(request, 400, problems or "bad request")
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler
