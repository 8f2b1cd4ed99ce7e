"""Session states in SQLite: shared by every process on one machine, kept across restarts.

One row per session (``sessions.sqlite`` in the data folder, WAL mode).  ``update`` is a
read-modify-write inside ``BEGIN IMMEDIATE``, so two processes adding labels to the same
session never lose one (a lost ``untrusted`` label would be a lost control).  A row that does
not decode raises InputError, and the Guard denies: a corrupt state never silently becomes a
clean one.  The least recently updated sessions beyond ``max_sessions`` are pruned.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ringfence.core.flow import SessionState, decode_state, encode_state
from ringfence.errors import ConfigError
from ringfence.stores.wal import use_wal

__all__ = ["SQLiteSessionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated);
"""
PRUNE_EVERY = 1000


class SQLiteSessionStore:
    """The ``SessionStore`` port over one SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, max_sessions: int = 100_000) -> None:
        self.path = Path(path)
        self._max = max_sessions
        self._lock = threading.Lock()
        self._writes = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            use_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open session store {self.path}: {exc}") from exc

    def load(self, session: str) -> SessionState | None:
        """The state of ``session``, or None; InputError if the stored row is corrupt."""
        with self._lock:
            row = self._db.execute("SELECT data FROM sessions WHERE id = ?", (session,)).fetchone()
        return None if row is None else decode_state(bytes(row[0]))

    def update(self, session: str, change: Callable[[SessionState], SessionState]) -> SessionState:
        """Apply ``change`` to the stored state atomically (across processes); the new state."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT data FROM sessions WHERE id = ?", (session,)
                ).fetchone()
                state = change(SessionState() if row is None else decode_state(bytes(row[0])))
                self._db.execute(
                    "INSERT OR REPLACE INTO sessions(id, data, updated) VALUES (?, ?, ?)",
                    (session, encode_state(state), time.time_ns()),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                self._prune()
        return state

    def _prune(self) -> None:
        self._db.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ORDER BY updated DESC "
            "LIMIT -1 OFFSET ?)",
            (self._max,),
        )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
