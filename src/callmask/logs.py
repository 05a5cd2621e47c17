"""Log lines of a node: ``key=value`` text, and the public id of the call a line is about
on every line written while handling that call.

The call id travels in a context variable set when the call's task is created, so
every module (SIP, media, routing, store) logs it without being handed it.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

call_id_var: ContextVar[str | None] = ContextVar("call_id", default=None)

FORMAT = "%(asctime)s %(levelname)s %(name)s call=%(call_id)s %(message)s"


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_id = call_id_var.get() or "-"
        return True


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    # No HTTP client logger to quiet: aiohttp's client writes no line per request.
    for handler in logging.getLogger().handlers:
        handler.addFilter(CallIdFilter())
