"""Moving journaled audit records into SQLite, and the helper process that does it under load.

A busy writer spends about 2 µs per record on SQLite row inserts.  When the journal first
rotates (sustained load), the store starts ``python -m ringfence.stores.ingest DIR``: it moves
every *rotated* journal file into SQLite and deletes it, on the other core, while the writer
only appends frames.  The helper exits when its standard input closes — when the writer closes
the store, or when the writer's process dies.  It holds ``audit-ingest.lock`` while it runs, so
a writer opening the store after a crash waits for a leftover helper before recovering.

The journal stays the durable point throughout: a record is never deleted from a journal file
before a committed SQLite transaction holds it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import sqlite3
import sys
import time
from pathlib import Path

import msgspec

from ringfence.core.audit.checkpoint import Checkpoint
from ringfence.errors import AuditError
from ringfence.stores.journal import CHECKPOINT, RECORD, journal_files, read_frames

__all__ = ["INGEST_LOCK", "ingest_journals", "insert_records", "wait_for_helper"]

log = logging.getLogger(__name__)
INGEST_LOCK = "audit-ingest.lock"
_encode_texts = msgspec.json.Encoder().encode


def unpack_checkpoint(payload: bytes) -> tuple[Checkpoint, bytes]:
    """A checkpoint frame's payload: (checkpoint, tree state)."""
    n = int.from_bytes(payload[:4], "little")
    return Checkpoint.from_json(payload[4 : 4 + n]), payload[4 + n :]


def insert_records(db: sqlite3.Connection, rows: list[tuple[int, bytes]]) -> None:
    """Insert (seq, bytes) rows; one statement when the seqs are contiguous."""
    if not rows:
        return
    first, last = rows[0][0], rows[-1][0]
    if last - first + 1 == len(rows):
        # One statement for the whole batch: SQLite runs it with the GIL released.  JSON
        # string escaping round-trips the record bytes exactly (they are UTF-8 JSON text).
        texts = _encode_texts([data.decode("utf-8") for _, data in rows])
        db.execute(
            "INSERT OR IGNORE INTO records SELECT ? + key, CAST(value AS BLOB) FROM json_each(?)",
            (first, texts),
        )
    else:
        db.executemany("INSERT OR IGNORE INTO records VALUES (?, ?)", rows)


def ingest_journals(
    db: sqlite3.Connection, directory: Path, *, include_current: bool
) -> tuple[int, int]:
    """Move journal records and checkpoints SQLite lacks into it; delete rotated files it holds.

    The newest journal file is the one a writer appends to: it is read only when
    ``include_current`` and never deleted here.  Files are read *before* the transaction
    starts, so a file another ingester deletes meanwhile was committed before it went.
    Returns how many records and checkpoints were added.
    """
    files = journal_files(directory)
    current = files[-1][1] if files else None
    if not include_current:
        files = files[:-1]
    if not files:
        return 0, 0
    read = [(path, list(read_frames(path))) for _, path in files]
    db.execute("BEGIN IMMEDIATE")
    try:
        have = db.execute("SELECT COALESCE(MAX(seq), -1) FROM records").fetchone()[0]
        known = {(r[0], bytes(r[1])) for r in db.execute("SELECT size, data FROM checkpoints")}
        rows: list[tuple[int, bytes]] = []
        cps: list[tuple[int, bytes, bytes]] = []
        for path, frames in read:
            for kind, seq, payload in frames:
                if kind == RECORD:
                    if seq <= have:
                        continue
                    if seq != have + 1:
                        raise AuditError(
                            f"journal {path.name} skips from record {have} to {seq}",
                            code="audit.corrupt",
                        )
                    rows.append((seq, payload))
                    have = seq
                elif kind == CHECKPOINT:
                    cp, state = unpack_checkpoint(payload)
                    key = (cp.size, cp.to_json())
                    if key not in known:
                        known.add(key)
                        cps.append((cp.size, key[1], state))
        insert_records(db, rows)
        db.executemany("INSERT INTO checkpoints(size, data, state) VALUES (?, ?, ?)", cps)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    for path, frames in read:
        if path != current and all(seq <= have for kind, seq, _ in frames if kind == RECORD):
            path.unlink(missing_ok=True)
    return len(rows), len(cps)


def wait_for_helper(directory: Path, timeout: float = 30.0) -> None:
    """Wait until no ingest helper (say, one left by a killed writer) is running."""
    fd = os.open(directory / INGEST_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AuditError(
                        f"an audit ingest helper for {directory} is still running",
                        code="audit.locked",
                    ) from None
                time.sleep(0.02)
    finally:
        os.close(fd)  # closing releases the lock


def main(argv: list[str]) -> int:
    """The helper process: ingest rotated journals until standard input closes."""
    logging.basicConfig(level=logging.WARNING, format="ringfence-ingest: %(message)s")
    directory = Path(argv[1])
    lock = os.open(directory / INGEST_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    db = sqlite3.connect(directory / "audit.sqlite", isolation_level=None)
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA synchronous=NORMAL")
    stdin = sys.stdin.fileno()
    while True:
        try:
            ingest_journals(db, directory, include_current=False)
        except Exception:  # the journal keeps the records; the writer ingests them on close
            log.exception("moving %s into SQLite failed", directory)
            time.sleep(0.5)
        ready, _, _ = select.select([stdin], [], [], 0.05)
        if ready and not os.read(stdin, 1):
            break  # the writer closed the store, or its process is gone
    try:
        ingest_journals(db, directory, include_current=False)
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
