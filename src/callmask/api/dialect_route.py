"""What the Twilio and Plivo APIs share in answering failures: every exception a route
raises is answered in the dialect's own error shape (``problem_of``), after the
request's store session is rolled back, and a pool exhaustion the failure reports is
recorded afterwards in a transaction of its own (``sessions.exhaustion``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import Match

from callmask.api.deps import SessionDep
from callmask.sessions.exhaustion import record_exhaustion

STATE_SESSION = "dialect_store_session"


class Problem(Protocol):
    def response(self) -> Response: ...


def answering_route(problem_of: Callable[[Exception], Problem]) -> type[APIRoute]:
    """An ``APIRoute`` class whose failures are answered by ``problem_of``."""

    class AnsweringRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def answering_handler(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as exc:
                    problem = problem_of(exc)
                    session = getattr(request.state, STATE_SESSION, None)
                    if isinstance(session, AsyncSession) and session.in_transaction():
                        await session.rollback()
                    await record_exhaustion(request.app.state.services.database, exc)
                    return problem.response()

            return answering_handler

    return AnsweringRoute


async def get_dialect_session(request: Request, session: SessionDep) -> AsyncSession:
    """The request's store session (``SessionDep``), kept where the answering route
    finds it to roll back on a failure."""
    setattr(request.state, STATE_SESSION, session)
    return session


DialectSessionDep = Annotated[AsyncSession, Depends(get_dialect_session)]


def allowed_methods(routes: list[Any], request: Request) -> list[str]:
    """The methods the dialect's routes take on the request's path (for 405's Allow)."""
    return sorted(
        {
            method
            for route in routes
            if route.matches(request.scope)[0] is not Match.NONE
            for method in getattr(route, "methods", None) or ()
        }
    )
