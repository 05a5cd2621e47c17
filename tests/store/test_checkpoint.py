"""An SQLite store's write-ahead log is copied into the database file by the store's
checkpoint thread, not by whichever commit crosses SQLite's threshold, and is empty
once the store is closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from callmask.store.database import Database

ROWS = 40
ROW_BYTES = 50_000  # 2 MB in all: far past a page cache's worth, in 40 commits


async def test_commits_leave_checkpoints_to_the_checkpoint_thread(tmp_path: Path) -> None:
    path = tmp_path / "callmask.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with database.session() as session:
            await session.execute(text("CREATE TABLE payloads (body BLOB)"))
            automatic = (await session.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
        assert automatic == 0, "commits must not checkpoint"
        for _ in range(ROWS):
            async with database.session() as session:
                await session.execute(
                    text("INSERT INTO payloads VALUES (randomblob(:n))"), {"n": ROW_BYTES}
                )
        # Only a checkpoint moves pages from the log into the database file, from
        # another thread: polled, for 5 s at most.
        for _ in range(50):
            if path.stat().st_size >= ROWS * ROW_BYTES:
                break
            await asyncio.sleep(0.1)
        assert path.stat().st_size >= ROWS * ROW_BYTES
    finally:
        await database.close()
    wal = tmp_path / "callmask.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
