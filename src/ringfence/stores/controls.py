"""Stores of the kill switch and the limits: SQLite (shared by processes) and in memory.

Layout of a controls folder::

    controls.sqlite     kills, kill history, limit cells, generation (WAL mode)
    controls.gen        the generation number, 8 bytes, memory-mapped by every process
    controls.lock       held (flock) while a new generation is published

Every kill, unkill and change of a flagged cell (a budget used up, a breaker not closed)
bumps a generation number in SQLite in the same transaction; the writer then copies it to
``controls.gen`` under the lock, so the published number only ever moves forward.  Every
process maps that file and reads the word before each decision (~0.05 µs), re-reading kills
and flagged cells only when it moved: a kill is seen by the next check in every process once
``add_kill`` has returned.  If a writer dies between its commit and the copy, the others
notice within ``POLL_SECONDS`` (:meth:`SQLiteControlStore.poll`, called by the Controls
watcher thread, compares ``PRAGMA data_version``) and repair the word.

Cells are opaque bytes updated by read-modify-write inside ``BEGIN IMMEDIATE`` (one
transaction per update, ~20 µs): two processes never both take the last token.  Cells whose
``expires_ns`` has passed (a bucket that is full again, a budget window that is over) are
deleted now and then; cells without one are kept.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ringfence.core.killswitch import Kill, KillEvent, KillScope
from ringfence.errors import ConfigError
from ringfence.runtime.ports import Cell
from ringfence.stores.generation import SharedWord
from ringfence.stores.wal import use_wal

__all__ = ["MemoryControlStore", "SQLiteControlStore"]

POLL_SECONDS = 0.25
PRUNE_EVERY = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER);
INSERT OR IGNORE INTO generation VALUES (1, 0);
CREATE TABLE IF NOT EXISTS kills (
    kind TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL,
    by TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS kill_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, kind TEXT NOT NULL,
    value TEXT NOT NULL, kill_id TEXT NOT NULL, reason TEXT NOT NULL, by TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, data BLOB NOT NULL, flagged INTEGER NOT NULL, expires INTEGER
);
CREATE INDEX IF NOT EXISTS cells_flagged ON cells(flagged) WHERE flagged = 1;
CREATE INDEX IF NOT EXISTS cells_expires ON cells(expires) WHERE expires IS NOT NULL;
"""


class MemoryControlStore:
    """The ControlStore port in memory: for tests and single-process use (nothing durable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gen = 0
        self._kills: dict[KillScope, Kill] = {}
        self._events: list[KillEvent] = []
        self._cells: dict[str, Cell] = {}

    def generation(self) -> int:
        """Bumped by every kill, unkill and flagged-cell change."""
        return self._gen

    def kills(self) -> tuple[Kill, ...]:
        """The active kills, oldest first."""
        with self._lock:
            return tuple(self._kills.values())

    def add_kill(self, kill: Kill) -> KillEvent | None:
        """Activate ``kill`` unless its scope is killed already."""
        with self._lock:
            if kill.scope in self._kills:
                return None
            self._kills[kill.scope] = kill
            event = KillEvent(
                len(self._events) + 1, "kill", kill.scope, kill.id, kill.reason, kill.by, kill.at_ns
            )
            self._events.append(event)
            self._gen += 1
            return event

    def remove_kill(
        self, scope: KillScope, *, by: str, reason: str, at_ns: int
    ) -> KillEvent | None:
        """Lift the kill of ``scope``."""
        with self._lock:
            kill = self._kills.pop(scope, None)
            if kill is None:
                return None
            event = KillEvent(len(self._events) + 1, "unkill", scope, kill.id, reason, by, at_ns)
            self._events.append(event)
            self._gen += 1
            return event

    def events(self, after: int = 0) -> tuple[KillEvent, ...]:
        """History entries after ``after``."""
        with self._lock:
            return tuple(self._events[after:])

    def update(self, key: str, change: Callable[[bytes | None], Cell]) -> None:
        """Apply ``change`` to cell ``key`` atomically."""
        with self._lock:
            old = self._cells.get(key)
            cell = change(None if old is None else old.data)
            if cell.data is None:
                self._cells.pop(key, None)
            else:
                self._cells[key] = cell
            if cell.flagged or (old is not None and old.flagged):
                self._gen += 1

    def flagged(self) -> dict[str, bytes]:
        """Every flagged cell."""
        with self._lock:
            return {k: c.data for k, c in self._cells.items() if c.flagged and c.data is not None}

    def close(self) -> None:
        """Nothing to release."""


class SQLiteControlStore:
    """The ControlStore port over one folder; see the module docstring."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory)
        self._lock = threading.Lock()
        self._data_version = -1
        self._writes = 0
        self._closed = False
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(
                self.path / "controls.sqlite",
                isolation_level=None,
                check_same_thread=False,
                timeout=30,
            )
            use_wal(self._db)
            # Cells (buckets, usage, breakers) need only survive the process; kills are
            # written with synchronous=FULL (see _durable) and survive a power cut.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)  # idempotent; waits out a concurrent opener
            self._word = SharedWord(self.path, "controls")
            self._publish()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open controls store {self.path}: {exc}") from exc

    # -- generation ---------------------------------------------------------------------

    def generation(self) -> int:
        """The shared generation word (one memory read)."""
        return self._word.read()

    def poll(self) -> None:
        """Repair the shared word if SQLite changed without it (a writer died between its
        commit and the copy).  Controls' watcher calls this every ``POLL_SECONDS``."""
        with self._lock:
            if self._closed:
                return
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._publish()

    def _publish(self) -> None:
        """Copy SQLite's generation to the shared word, under the file lock (so the word
        only moves forward: each publisher copies the latest committed number)."""
        with self._lock, self._word.locked():
            self._word.set(self._db.execute("SELECT value FROM generation").fetchone()[0])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextlib.contextmanager
    def _durable(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that is on disk when it commits (the lock is held)."""
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction() as db:
                yield db
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute("UPDATE generation SET value = value + 1")

    # -- kills --------------------------------------------------------------------------

    def kills(self) -> tuple[Kill, ...]:
        """The active kills, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, value, id, reason, by, at FROM kills ORDER BY at, id"
            ).fetchall()
        return tuple(Kill(KillScope(k, v), i, r, b, a) for k, v, i, r, b, a in rows)

    def _event(
        self,
        db: sqlite3.Connection,
        op: str,
        scope: KillScope,
        kill_id: str,
        r: str,
        b: str,
        at: int,
    ) -> KillEvent:
        cur = db.execute(
            "INSERT INTO kill_events(op, kind, value, kill_id, reason, by, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (op, scope.kind, scope.value, kill_id, r, b, at),
        )
        seq = cur.lastrowid
        assert seq is not None
        return KillEvent(seq, op, scope, kill_id, r, b, at)

    def add_kill(self, kill: Kill) -> KillEvent | None:
        """Activate ``kill`` unless its scope is killed already; durable once it returns."""
        s = kill.scope
        with self._lock, self._durable() as db:
            row = db.execute(
                "SELECT 1 FROM kills WHERE kind = ? AND value = ?", (s.kind, s.value)
            ).fetchone()
            if row is not None:
                return None
            db.execute(
                "INSERT INTO kills VALUES (?, ?, ?, ?, ?, ?)",
                (s.kind, s.value, kill.id, kill.reason, kill.by, kill.at_ns),
            )
            event = self._event(db, "kill", s, kill.id, kill.reason, kill.by, kill.at_ns)
            self._bump(db)
        self._publish()
        return event

    def remove_kill(
        self, scope: KillScope, *, by: str, reason: str, at_ns: int
    ) -> KillEvent | None:
        """Lift the kill of ``scope``; durable once it returns."""
        with self._lock, self._durable() as db:
            row = db.execute(
                "SELECT id FROM kills WHERE kind = ? AND value = ?", (scope.kind, scope.value)
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM kills WHERE kind = ? AND value = ?", (scope.kind, scope.value))
            event = self._event(db, "unkill", scope, row[0], reason, by, at_ns)
            self._bump(db)
        self._publish()
        return event

    def events(self, after: int = 0) -> tuple[KillEvent, ...]:
        """History entries with ``seq > after``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, op, kind, value, kill_id, reason, by, at FROM kill_events "
                "WHERE seq > ? ORDER BY seq",
                (after,),
            ).fetchall()
        return tuple(
            KillEvent(q, o, KillScope(k, v), i, r, b, a) for q, o, k, v, i, r, b, a in rows
        )

    # -- cells --------------------------------------------------------------------------

    def update(self, key: str, change: Callable[[bytes | None], Cell]) -> None:
        """Apply ``change`` to cell ``key`` in one write transaction."""
        with self._lock:
            with self._transaction() as db:
                row = db.execute("SELECT data, flagged FROM cells WHERE key = ?", (key,)).fetchone()
                cell = change(None if row is None else bytes(row[0]))
                if cell.data is None:
                    if row is not None:
                        db.execute("DELETE FROM cells WHERE key = ?", (key,))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?)",
                        (key, cell.data, int(cell.flagged), cell.expires_ns),
                    )
                bump = cell.flagged or (row is not None and bool(row[1]))
                if bump:
                    self._bump(db)
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                bump = self._prune() or bump
        if bump:
            self._publish()

    def _prune(self) -> bool:
        """Delete expired cells (the lock is held); True if a flagged one went."""
        now = time.time_ns()
        with self._transaction() as db:
            flagged = db.execute(
                "SELECT COUNT(*) FROM cells WHERE expires < ? AND flagged = 1", (now,)
            ).fetchone()[0]
            db.execute("DELETE FROM cells WHERE expires < ?", (now,))
            if flagged:
                self._bump(db)
        return bool(flagged)

    def flagged(self) -> dict[str, bytes]:
        """Every flagged cell."""
        with self._lock:
            rows = self._db.execute("SELECT key, data FROM cells WHERE flagged = 1").fetchall()
        return {k: bytes(d) for k, d in rows}

    def close(self) -> None:
        """Close the database and the shared word.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()
            self._word.close()
