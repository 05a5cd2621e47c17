"""The routing lookup of an inbound call: whose DID it is, what its action is, and
where the account's call details go, in one read.

This read sits on the post-dial delay of every call. Through the async pool on
SQLite it is a round trip to aiosqlite's thread and back, which costs a millisecond
or more once the event loop is busy and tens of milliseconds at the tail, for a query
SQLite answers in a few microseconds from its page cache. So on SQLite the node reads
it with its own synchronous connection, on the event loop's thread: in WAL mode a
reader never waits for a writer, and the statement is a unique-index probe and two
primary-key joins. On PostgreSQL the read goes through the pool as any other; asyncpg
does its I/O on the loop itself.

The one case in which a WAL reader can be turned away (SQLITE_BUSY while another
connection recovers the WAL index) is not waited out on the loop's thread: that read
goes through the pool instead.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url

from callmask.store.database import Database
from callmask.store.models import AccountSettings, Action, Number

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Route:
    account_id: str
    action_key: str
    action_type: str
    callback_url: str
    status_url: str | None
    account_webhook_url: str | None  # the account's Tata webhook (call details)


ROUTE_QUERY = (
    select(
        Number.account_id,
        Action.action_key,
        Action.type,
        Action.callback_url,
        Action.status_url,
        AccountSettings.webhook_url,
    )
    .join(Action, Action.number_key == Number.number_key)
    .outerjoin(AccountSettings, AccountSettings.account_id == Number.account_id)
    .where(Number.e164 == bindparam("e164"), Number.account_id.is_not(None))
)
# The same statement as SQLite text with one positional parameter (the DID).
ROUTE_SQL = str(ROUTE_QUERY.compile(dialect=sqlite_dialect.dialect()))


def _route(row: tuple[object, ...] | None) -> Route | None:
    if row is None:
        return None
    account_id, action_key, action_type, callback_url, status_url, webhook_url = row
    return Route(
        account_id=str(account_id),
        action_key=str(action_key),
        action_type=str(action_type),
        callback_url=str(callback_url),
        status_url=None if status_url is None else str(status_url),
        account_webhook_url=None if webhook_url is None else str(webhook_url),
    )


def sqlite_file(url: str) -> str | None:
    """The file behind an SQLite URL, or None (not SQLite, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


class RouteLookup:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._path = sqlite_file(database.url)
        self._reader: sqlite3.Connection | None = None

    async def find(self, did: str) -> Route | None:
        """The route of ``did`` (E.164), or None when no account owns it with an action."""
        if self._path is not None:
            try:
                return _route(self._read(did))
            except sqlite3.OperationalError as exc:
                log.info("routing read for %s turned away (%s); reading through the pool", did, exc)
        async with self.database.session() as session:
            row = (await session.execute(ROUTE_QUERY, {"e164": did})).first()
        return _route(None if row is None else tuple(row))

    def _read(self, did: str) -> tuple[object, ...] | None:
        if self._reader is None:
            assert self._path is not None
            # Autocommit: every statement sees what was committed before it started.
            reader = sqlite3.connect(self._path, isolation_level=None)
            reader.execute("PRAGMA query_only=ON")
            reader.execute("PRAGMA busy_timeout=0")  # never sleep on the loop's thread
            self._reader = reader
        # fetchall, not fetchone: an unfinished statement would keep its read snapshot
        # open and hold back WAL checkpoints until the cursor is collected.
        rows: list[tuple[object, ...]] = self._reader.execute(ROUTE_SQL, (did,)).fetchall()
        return rows[0] if rows else None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
