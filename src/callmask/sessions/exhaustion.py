"""Pool exhaustion events: every session or participant create that found no number
(``ProxyError`` with an ``Exhaustion``) leaves a row for the console's pool view.

The failed request's transaction is rolled back, the row with it, so the API's error
path records it afterwards in a short transaction of its own (``record_exhaustion``).
A failure to record is logged: it must never turn the customer's clear 400 into a 500.
"""

from __future__ import annotations

import logging

from callmask.sessions.errors import ProxyError
from callmask.store.database import Database
from callmask.store.models import ProxyPoolExhaustion, utcnow

log = logging.getLogger(__name__)


async def record_exhaustion(database: Database, exc: Exception) -> None:
    exhaustion = getattr(exc, "exhaustion", None) if isinstance(exc, ProxyError) else None
    if exhaustion is None:
        return
    assert isinstance(exc, ProxyError)
    try:
        async with database.writing() as session:
            session.add(
                ProxyPoolExhaustion(
                    account_id=exhaustion.account_id,
                    service_sid=exhaustion.service_sid,
                    identifier=exhaustion.identifier,
                    code=exc.code,
                    created_at=utcnow(),
                )
            )
    except Exception:
        log.exception("pool exhaustion of %s not recorded", exhaustion.service_sid)
