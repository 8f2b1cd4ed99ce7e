"""Switching a SQLite database to write-ahead logging when several processes open it at once.

``PRAGMA journal_mode=WAL`` needs an exclusive lock for an instant, and SQLite may report
"database is locked" for it without calling the busy handler (while another connection is
switching the same new file).  :func:`use_wal` retries for up to ``wait_s`` seconds.
"""

from __future__ import annotations

import sqlite3
import time

__all__ = ["use_wal"]


def use_wal(db: sqlite3.Connection, *, wait_s: float = 10.0) -> None:
    """Put ``db`` in WAL mode, waiting out concurrent openers; re-raises after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    delay = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
