"""The embedded audit store: SQLite in WAL mode, fed through a write-ahead journal.

Layout of a store directory::

    audit.sqlite        records(seq, data) and checkpoints(...), WAL mode
    audit-journal2.N    frames not yet (or just) committed to SQLite — see journal.py
                        (audit-journal.N: the same, from a version before hashed frames)
    audit.lock          held (flock) by the one process appending
    audit-ingest.lock   held by the ingest helper process while it runs — see ingest.py

A record is durable once its journal frame is written.  Moving records into SQLite is done by
the writer in batches while load is light; once the journal first rotates (sustained load) a
helper process does it for rotated files, on the other core.  ``close`` moves whatever is
left and deletes a journal file only when SQLite holds every record in it.

Open it for appending with ``SQLiteAuditStore(path)``; for reading (verify, tail, export,
also while another process appends) with ``SQLiteAuditStore(path, readonly=True)``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec

from ringfence.core.audit.checkpoint import Checkpoint
from ringfence.errors import AuditError
from ringfence.stores.ingest import (
    ingest_journals,
    insert_records,
    unpack_checkpoint,
    wait_for_helper,
)
from ringfence.stores.journal import (
    CHECKPOINT,
    RECORD,
    JournalFile,
    journal_files,
    journal_path,
    read_frames,
)
from ringfence.stores.wal import use_wal

__all__ = ["SQLiteAuditStore"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    state BLOB NOT NULL
);
"""
_encode_texts = msgspec.json.Encoder().encode
ROTATE_BYTES = 8 << 20
# Room past the rotation point: records appended between inline flushes (which rotate) still
# land in the map.  Frames beyond it are written with pwritev.
JOURNAL_CAPACITY = ROTATE_BYTES + (4 << 20)
FLUSH_BATCH = 4096


def _pack_checkpoint(cp: Checkpoint, state: bytes) -> bytes:
    body = cp.to_json()
    return len(body).to_bytes(4, "little") + body + state


class SQLiteAuditStore:
    """Audit records and checkpoints in one directory; see the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        readonly: bool = False,
        durability: str = "process",
        flush_interval: float = 0.05,
        ingest: str = "auto",
    ) -> None:
        if ingest not in ("auto", "inline"):
            raise AuditError(f"ingest must be 'auto' or 'inline', not {ingest!r}")
        # "auto": under sustained load (the journal rotates) a helper process moves records
        # into SQLite on the other core; with fsync durability the writer always does it.
        self._use_helper = ingest == "auto" and durability == "process"
        self._helper: subprocess.Popen[bytes] | None = None
        # Once a helper has run, the journal files are the only copy of recent records (no
        # pending list): every later flush moves them from the files, helper or not.
        self._from_files = False
        self._last_record = -1
        if durability not in ("process", "fsync"):
            raise AuditError(f"durability must be 'process' or 'fsync', not {durability!r}")
        self.path = Path(directory)
        self.readonly = readonly
        self.durability = durability
        self._fsync = durability == "fsync"
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = 0
        self._synced = 0
        self._pending: list[tuple[int, int, bytes]] = []
        self._closed = False
        self._journal: JournalFile | None = None
        self._lock_fd = -1
        self._retired: list[Path] = []
        self._failure: str | None = None
        try:
            if readonly:
                if not (self.path / "audit.sqlite").exists():
                    raise AuditError(f"no audit log at {self.path}", code="audit.not_found")
                self._db = sqlite3.connect(
                    f"file:{self.path / 'audit.sqlite'}?mode=ro", uri=True, check_same_thread=False
                )
                self._log_id = self._meta("log_id") or ""
                self._reader = self._db
                return
            self.path.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            self._db = sqlite3.connect(
                self.path / "audit.sqlite", isolation_level=None, check_same_thread=False
            )
            # 64 KiB pages: ~25 % less work per inserted record (measured); only takes effect
            # on a new database, an existing one keeps its page size.
            self._db.execute("PRAGMA page_size=65536")
            self._db.execute("PRAGMA busy_timeout=30000")
            use_wal(self._db)
            self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'fsync' else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            log_id = self._meta("log_id")
            if log_id is None:
                log_id = str(uuid.uuid4())
                self._db.execute("INSERT INTO meta VALUES ('log_id', ?)", (log_id,))
                self._db.execute("INSERT INTO meta VALUES ('format', 'rf-cjson-1')")
            self._log_id = log_id
            wait_for_helper(self.path)  # one left behind by a writer that was killed
            self._recover()
            self._reader = sqlite3.connect(
                self.path / "audit.sqlite", isolation_level=None, check_same_thread=False
            )
            existing = journal_files(self.path)
            self._generation = (existing[-1][0] if existing else 0) + 1
            self._open_journal()
        except BaseException as exc:
            # Release what was opened, the lock above all: a retry in this process (after
            # fixing a corrupt journal, say) must not find the store "open by another process".
            self._release()
            if isinstance(exc, OSError | sqlite3.Error):
                raise AuditError(f"cannot open audit store {self.path}: {exc}") from exc
            raise
        self._wake = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_loop,
            args=(flush_interval,),
            name="ringfence-audit-flush",
            daemon=True,
        )
        self._flusher.start()

    # -- opening -------------------------------------------------------------------------

    def _take_lock(self) -> None:
        fd = os.open(self.path / "audit.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AuditError(
                f"audit store {self.path} is open for writing by another process",
                code="audit.locked",
            ) from None
        self._lock_fd = fd

    def _release(self) -> None:
        """Close the connections and files a failed open had opened."""
        for name in ("_reader", "_db"):
            conn = self.__dict__.pop(name, None)
            if conn is not None:
                conn.close()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
        self._lock_fd = -1

    def _meta(self, key: str) -> str | None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else str(row[0])

    def _recover(self) -> None:
        """Move journal frames left by a process that was killed into SQLite."""
        if not journal_files(self.path):
            return
        records, checkpoints = ingest_journals(self._db, self.path, include_current=True)
        if records or checkpoints:
            log.warning(
                "audit store %s: recovered %d record(s) and %d checkpoint(s) from the journal",
                self.path,
                records,
                checkpoints,
            )
        for _, path in journal_files(self.path):  # SQLite holds all of them now
            path.unlink()

    def _open_journal(self) -> None:
        path = journal_path(self.path, self._generation)
        # Memory-mapped only when a record need not reach the disk before append returns:
        # fdatasync would flush the whole preallocated file's metadata for nothing.
        self._journal = JournalFile(
            path, mapped=self.durability == "process", capacity=JOURNAL_CAPACITY
        )
        if self.durability == "fsync":
            # The new file's directory entry must survive a power cut too.
            folder = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------

    @property
    def log_id(self) -> str:
        """This log's id (a UUID chosen when the store was created)."""
        return self._log_id

    def append_checkpoint(self, checkpoint: Checkpoint, state: bytes) -> None:
        """Make a signed checkpoint durable, with the tree state to resume from it."""
        self.append(checkpoint.size, _pack_checkpoint(checkpoint, state), CHECKPOINT)

    def append(
        self, seq: int, payload: bytes, kind: int = RECORD, leaf: bytes | None = None
    ) -> None:
        """Make record ``seq`` durable (see the durability setting) before returning.

        ``kind`` is for this store's own use (checkpoint frames go through here too).
        ``leaf``: the record's RFC 9162 leaf hash, if the caller has it: the journal frame
        is then checked by it instead of by a CRC32.
        """
        with self._lock:
            journal = self._journal
            if self._closed or self.readonly or self._failure is not None or journal is None:
                raise self._refusal()
            try:
                journal.write(kind, seq, payload, leaf)
            except OSError as exc:
                # Part of the frame may be in the file: a frame written after it would be
                # unreadable on recovery, so nothing more is written by this store.
                self._failure = f"write: {exc}"
                raise AuditError(f"cannot write the audit journal: {exc}") from exc
            self._written = ticket = self._written + 1
            if kind == RECORD:
                self._last_record = seq
            if not self._from_files:
                pending = self._pending
                pending.append((kind, seq, payload))
                due = len(pending) >= FLUSH_BATCH
            else:
                due = False
                if journal.used >= ROTATE_BYTES:
                    self._rotate()
        if self._fsync:
            self._sync(ticket)
        if due:
            # Moved into SQLite by the writing thread itself, in one batch: a background
            # thread doing this while the writer runs convoys on the GIL (measured 3x slower).
            try:
                self.flush()
            except Exception:
                # The record is durable in the journal, so this append has succeeded; raising
                # would make the log writer hand the same seq to the next record.  The batch
                # stays pending and is retried.
                log.exception("audit store %s: moving records into SQLite failed", self.path)

    def append_hashed(self, seq: int, payload: bytes, leaf: bytes) -> None:
        """:meth:`append` a record whose RFC 9162 leaf hash the caller has computed: its
        journal frame is checked by that hash instead of a CRC32 (≈ 0.3 µs less a record)."""
        self.append(seq, payload, RECORD, leaf)

    def _refusal(self) -> AuditError:
        if self._closed:
            return AuditError("audit store is closed")
        if self.readonly:
            return AuditError("store is read-only")
        return AuditError(
            f"audit journal failed earlier ({self._failure}); reopen the store to recover"
        )

    def _sync(self, ticket: int) -> None:
        # Group commit: whoever holds the lock syncs everything written so far.
        with self._sync_lock:
            if self._synced >= ticket:
                return
            with self._lock:
                upto, journal = self._written, self._journal
            assert journal is not None
            try:
                os.fdatasync(journal.fd)
            except OSError as exc:
                # The frame is in the journal but its append failed, so the writer will hand
                # its seq to the next record: no further record may follow it (see append).
                self._failure = f"sync: {exc}"
                raise AuditError(f"cannot sync the audit journal: {exc}") from exc
            self._synced = upto

    def _flush_loop(self, interval: float) -> None:
        # Only flushes a writer that has gone quiet (nothing written for a whole interval);
        # a busy writer flushes inline.
        last_seen = flushed = -1
        while not self._closed:
            self._wake.wait(interval)
            self._wake.clear()
            written = self._written
            quiet, last_seen = written == last_seen, written
            dirty = bool(self._pending) or (self._from_files and written != flushed)
            if not dirty or not quiet:
                continue
            flushed = written
            try:
                self.flush()
            except Exception:  # the journal still holds the records; retried next round
                log.exception("audit store %s: moving records into SQLite failed", self.path)

    def flush(self) -> None:
        """Move journaled records into SQLite now; delete journal files fully committed."""
        if self.readonly:
            return
        with self._flush_lock:
            self._flush()

    def _next_journal(self) -> bool:
        """Close the journal file and start the next one (the lock is held); False on failure.

        Called after a record was written, so a failure here must not fail that append:
        the store refuses every later write instead (nothing may be numbered after a record
        whose journal cannot be continued).
        """
        journal = self._journal
        assert journal is not None
        try:
            journal.close()
            self._generation += 1
            self._open_journal()
        except OSError as exc:
            self._failure = f"rotate: {exc}"
            log.error("audit store %s: cannot start a new journal file: %s", self.path, exc)
            return False
        return True

    def _rotate(self) -> None:
        """Start a new journal file (the lock is held); the helper takes the old one."""
        if not self._next_journal():
            return
        helper = self._helper
        if helper is not None and helper.poll() is not None:
            log.warning(
                "audit store %s: ingest helper exited (%s); restarting",
                self.path,
                helper.returncode,
            )
            self._start_helper()

    def _start_helper(self) -> None:
        self._helper = subprocess.Popen(
            [sys.executable, "-m", "ringfence.stores.ingest", str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            close_fds=True,
        )

    def _stop_helper(self) -> None:
        helper, self._helper = self._helper, None
        if helper is None:
            return
        assert helper.stdin is not None
        helper.stdin.close()
        try:
            helper.wait(timeout=60)
        except subprocess.TimeoutExpired:
            log.error("audit store %s: ingest helper did not stop; killing it", self.path)
            helper.kill()
            helper.wait()

    def _flush(self) -> None:
        if self._from_files:
            # Everything is in the journal files; move what SQLite lacks, current file too.
            with self._lock:
                self._pending = []
            ingest_journals(self._db, self.path, include_current=True)
            return
        # In fsync mode the sync lock is taken first (the order _sync uses), so a rotation
        # can never close the descriptor a concurrent group commit is about to sync.
        syncing = self._sync_lock if self.durability == "fsync" else contextlib.nullcontext()
        with syncing, self._lock:
            batch, self._pending = self._pending, []
            journal = self._journal
            assert journal is not None
            if journal.used >= ROTATE_BYTES and not self._closed:
                if self.durability == "fsync":
                    try:
                        os.fdatasync(journal.fd)
                    except OSError as exc:
                        self._failure = f"sync: {exc}"
                        raise AuditError(f"cannot sync the audit journal: {exc}") from exc
                    self._synced = self._written
                if self._next_journal():
                    self._retired.append(journal.path)
        if batch:
            try:
                with self._transaction():
                    insert_records(self._db, [(seq, p) for kind, seq, p in batch if kind == RECORD])
                    for kind, _, payload in batch:
                        if kind == CHECKPOINT:
                            cp, state = unpack_checkpoint(payload)
                            self._db.execute(
                                "INSERT INTO checkpoints(size, data, state) VALUES (?, ?, ?)",
                                (cp.size, cp.to_json(), state),
                            )
            except BaseException:
                with self._lock:
                    self._pending[:0] = batch
                raise
        retired, self._retired = self._retired, []
        for path in retired:
            path.unlink(missing_ok=True)
        if retired and self._use_helper and not self._closed:
            with self._lock:  # from here on append keeps no pending list and rotates itself
                self._start_helper()
                self._from_files = True

    def close(self) -> None:
        """Flush, remove the journal, release the lock.  Idempotent."""
        if self._closed:
            return
        if self.readonly:
            self._closed = True
            self._db.close()
            return
        self._closed = True
        self._wake.set()
        self._flusher.join()
        self._stop_helper()  # it finishes the rotated files; the rest is moved below
        self.flush()
        stored = self._db.execute("SELECT COALESCE(MAX(seq), -1) FROM records").fetchone()[0]
        # Never delete the only copy: if SQLite lacks anything written, the journal stays
        # and the next writer recovers from it.
        keep = stored < self._last_record
        with self._lock:
            journal, self._journal = self._journal, None
            assert journal is not None
            journal.close()
            if not keep:
                journal.path.unlink(missing_ok=True)
        self._reader.close()
        self._db.close()
        os.close(self._lock_fd)
        if keep:
            raise AuditError(
                f"audit store {self.path}: SQLite holds records up to {stored} but "
                f"{self._last_record} was written; the journal is kept for recovery",
                code="audit.corrupt",
            )

    # -- reading ---------------------------------------------------------------------------

    def _journal_tail(self) -> tuple[list[tuple[int, bytes]], list[Checkpoint]]:
        records, cps = [], []
        for _, path in journal_files(self.path):
            for kind, seq, payload in read_frames(path):
                if kind == RECORD:
                    records.append((seq, payload))
                else:
                    cps.append(unpack_checkpoint(payload)[0])
        return records, cps

    def records(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """(seq, bytes) of every record from ``start`` on, in order — including journaled ones."""
        journal, _ = self._journal_tail() if self.readonly else ([], [])
        self.flush()
        last = start - 1
        cursor = self._reader.execute(
            "SELECT seq, data FROM records WHERE seq >= ? ORDER BY seq", (start,)
        )
        for seq, data in cursor:
            last = seq
            yield seq, bytes(data)
        for seq, data in journal:
            if seq > last and seq >= start:
                last = seq
                yield seq, data

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first."""
        _, journal = self._journal_tail() if self.readonly else ([], [])
        self.flush()
        rows = self._reader.execute("SELECT data FROM checkpoints ORDER BY id").fetchall()
        out = [Checkpoint.from_json(bytes(r[0])) for r in rows]
        seen = {(c.size, c.signature) for c in out}
        out.extend(c for c in journal if (c.size, c.signature) not in seen)
        return out

    def resume_point(self) -> tuple[int, bytes] | None:
        """(size, tree state) of the latest checkpoint."""
        self.flush()
        row = self._reader.execute(
            "SELECT size, state FROM checkpoints ORDER BY size DESC, id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def count(self) -> int:
        """How many records the log holds."""
        return sum(1 for _ in self.records())
