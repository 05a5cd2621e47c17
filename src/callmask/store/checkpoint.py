"""WAL checkpoints of an SQLite store, off the writers' path.

SQLite's default is that the commit which takes the write-ahead log past 1,000 pages
copies the log back into the database file there and then, fsync included: every
hundred-odd API writes or call batches, one of them waits about ten milliseconds
more, which is the whole of the p99 of a session create (7 ms without, 13 ms with).
So the node's connections do not checkpoint (``wal_autocheckpoint=0``) and this
thread, on a connection of its own, runs a PASSIVE checkpoint at a short interval: it
copies what no reader still needs and never blocks a writer or a reader. When the
log has been copied in full, the next writer starts it again from the beginning, so
it stays the size of a fraction of a second's writes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

INTERVAL_S = 0.5


class WalCheckpointer:
    def __init__(self, path: str, interval_s: float = INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread, once (called on every new connection of the store)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="sqlite-wal-checkpoint", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA busy_timeout=1000")
            while not self._stop.wait(self.interval_s):
                self.checkpoint(connection, "PASSIVE")
            # On the way out, a full copy, so the file alone is the whole store.
            self.checkpoint(connection, "TRUNCATE")
        finally:
            connection.close()

    def checkpoint(self, connection: sqlite3.Connection, mode: str) -> None:
        try:
            connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error as exc:
            # The store is busy or going away; the next round tries again.
            log.debug("WAL checkpoint (%s) of %s not done: %s", mode, self.path, exc)

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
