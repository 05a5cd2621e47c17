"""Engine and session factory for one node, for SQLite or PostgreSQL.

SQLite needs two things a server database does not: foreign keys switched on per
connection, and a busy timeout so that the API and the background workers, which share
the one file, wait for each other's short write transactions instead of failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from callmask.store.checkpoint import WalCheckpointer


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_file(url: str) -> str | None:
    """The file behind an SQLite URL, or None (not SQLite, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def create_engine(url: str, checkpointer: WalCheckpointer | None = None) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if checkpointer is not None:
                # Checkpoints run on the checkpointer's thread, not in a commit.
                cursor.execute("PRAGMA wal_autocheckpoint=0")
                checkpointer.start()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not at every commit: a process
            # crash loses nothing, only a power cut can lose the last transactions.
            # FULL capped a node at ~100 calls/s on the fsyncs of CDR commits; an
            # operator who needs power-cut durability runs PostgreSQL.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    """Owns the engine; ``session()`` yields a session whose transaction commits on
    success and rolls back on error, so callers never commit piecemeal."""

    def __init__(self, url: str) -> None:
        self.url = url
        path = sqlite_file(url)
        self.checkpointer = None if path is None else WalCheckpointer(path)
        self.engine = create_engine(url, self.checkpointer)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Writers that meet inside SQLite wait in its
        # busy handler, which sleeps in steps growing to 100 ms: at a few hundred calls
        # per second that put 100 ms stalls into CDR writes. The node's own writers
        # (call engine, webhook worker) take turns here instead, in microseconds.
        self._write_turn: asyncio.Lock | None = asyncio.Lock() if is_sqlite(url) else None

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write_turn(self) -> AsyncIterator[None]:
        """Hold the node's turn to write (SQLite only; free on PostgreSQL)."""
        if self._write_turn is None:
            yield
            return
        async with self._write_turn:
            yield

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """``session()`` for a transaction that writes, taken in the node's turn."""
        async with self.write_turn(), self.session() as session:
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.stop)
