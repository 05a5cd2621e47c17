"""Reads that sit on the post-dial delay of every call: which DID is whose, and which
session a (caller, DID) pair belongs to.

Through the async pool on SQLite such a read is a round trip to aiosqlite's thread and
back, which costs a millisecond or more once the event loop is busy and tens of
milliseconds at the tail, for a query SQLite answers in a few microseconds from its
page cache. So on SQLite the node reads with its own synchronous connection, on the
event loop's thread: in WAL mode a reader never waits for a writer, and every read
here is a unique-index probe and a few primary-key joins. On PostgreSQL the read goes
through the pool as any other; asyncpg does its I/O on the loop itself.

The one case in which a WAL reader can be turned away (SQLITE_BUSY while another
connection recovers the WAL index) is not waited out on the loop's thread: that read
goes through the pool instead.

Reads return plain column tuples, not ORM objects: building entities costs more than
the read itself. Values are what the driver gives (so keep to strings and integers:
the synchronous SQLite connection does not turn stored text back into datetimes).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.dialects import sqlite as sqlite_dialect

from callmask.store.database import Database, sqlite_file

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PreparedRead:
    """A SELECT and the same statement as SQLite text with named parameters."""

    statement: Select[*tuple[Any, ...]]
    sqlite_sql: str


def prepare(statement: Select[*tuple[Any, ...]]) -> PreparedRead:
    dialect = sqlite_dialect.dialect(paramstyle="named")
    return PreparedRead(statement, str(statement.compile(dialect=dialect)))


class PostDialReader:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._path = sqlite_file(database.url)
        self._reader: sqlite3.Connection | None = None

    async def first(self, read: PreparedRead, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of ``read`` with ``params``, or None."""
        if self._path is not None:
            try:
                return self._read(read.sqlite_sql, params)
            except sqlite3.OperationalError as exc:
                log.info("post-dial read turned away (%s); reading through the pool", exc)
        async with self.database.engine.connect() as connection:
            row = (await connection.execute(read.statement, params)).first()
        return None if row is None else tuple(row)

    async def all(self, read: PreparedRead, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of ``read`` with ``params`` (keep it bounded with a LIMIT)."""
        if self._path is not None:
            try:
                return self._rows(read.sqlite_sql, params)
            except sqlite3.OperationalError as exc:
                log.info("post-dial read turned away (%s); reading through the pool", exc)
        async with self.database.engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(read.statement, params))]

    def _read(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        if self._reader is None:
            assert self._path is not None
            # Autocommit: every statement sees what was committed before it started.
            reader = sqlite3.connect(self._path, isolation_level=None)
            reader.execute("PRAGMA query_only=ON")
            reader.execute("PRAGMA busy_timeout=0")  # never sleep on the loop's thread
            self._reader = reader
        # fetchall, not fetchone: an unfinished statement would keep its read snapshot
        # open and hold back WAL checkpoints until the cursor is collected.
        rows: list[tuple[Any, ...]] = self._reader.execute(sql, params).fetchall()
        return rows

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
