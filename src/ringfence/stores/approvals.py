"""Approval requests in SQLite: the agent process waits while a reviewer answers from another.

``approvals.sqlite`` in the data folder (WAL mode).  Every change is one ``BEGIN IMMEDIATE``
transaction, so two processes answering the same request, or redeeming the same receipt, see
exactly one of them succeed; caps are counted in the same transaction that stores a request.
A waiter notices another process's change through ``PRAGMA data_version`` (read every
``poll_s``, a few microseconds, no disk read) and a change made through the same store object
at once (a condition variable).

The request as submitted is kept as JSON (``data``); what changes afterwards — status, count,
deadline, who answered and when, the receipt — lives in columns.  Redeemed steps are rows of
``redeemed`` keyed by (receipt, step): a second redemption is a primary-key conflict.

Every answer (approve, deny, cancel, revoke, expire) also adds a row to ``answers``, the
audit outbox, in the same transaction: ``audited`` is 0 until the holder of the audit log has
written it there (:meth:`SQLiteApprovalStore.unaudited`, :meth:`~SQLiteApprovalStore.mark_audited`).
A file made before the outbox existed (``user_version`` 0) is migrated when opened: the table
is added and every answer its requests imply is queued, so it reaches the audit log too.

Retention: :meth:`~SQLiteApprovalStore.prune` deletes finished requests that ended before a
time (answer, or receipt expiry if later) and whose answers are all audited, with their
answers and redeemed steps, in one transaction; every ``prune_every`` writes the store prunes
what ended more than ``retention_s`` ago (a failure there is logged, never the write's).

Receipts are signed with ``keys/approvals-signing.key`` (:func:`load_or_create_approval_key`,
mode 0600, in :mod:`ringfence.stores.approval_keys`, re-exported here): whoever can read that
file can approve, so on a shared machine it is readable by the reviewers' group only, never
by the agent's user (see docs/approvals.md).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

import msgspec

from ringfence.core.approvals import (
    PLAN_KIND,
    ApprovalLimits,
    Counts,
    PendingRequest,
    Problem,
    Receipt,
    Scope,
    Status,
    Submission,
    cap_problem,
)
from ringfence.core.audit.answer import Answer, answer_of, stored_answers, unreadable_answer
from ringfence.errors import ConfigError
from ringfence.runtime.approvals import DEFAULT_RETENTION_S, Pruned
from ringfence.stores.approval_keys import (
    KEY_FILE,
    PUB_FILE,
    load_approval_public_key,
    load_or_create_approval_key,
)
from ringfence.stores.approvals_memory import (
    PRUNE_BATCH,
    PRUNE_EVERY,
    not_pending,
    redeem_problem,
)
from ringfence.stores.approvals_retention import prune_rows
from ringfence.stores.wal import use_wal

__all__ = [
    "KEY_FILE",
    "PUB_FILE",
    "SQLiteApprovalStore",
    "load_approval_public_key",
    "load_or_create_approval_key",
]

log = logging.getLogger("ringfence.approvals")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    agent TEXT NOT NULL,
    session TEXT,
    bucket TEXT NOT NULL,
    created INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    count INTEGER NOT NULL,
    decided_by TEXT,
    decided INTEGER,
    note TEXT NOT NULL DEFAULT '',
    receipt BLOB,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_grp ON requests(grp, created);
CREATE INDEX IF NOT EXISTS requests_status ON requests(status, created);
CREATE INDEX IF NOT EXISTS requests_bucket ON requests(bucket, status);
CREATE INDEX IF NOT EXISTS requests_agent ON requests(agent, created);
CREATE TABLE IF NOT EXISTS redeemed (
    receipt TEXT NOT NULL,
    step INTEGER NOT NULL,
    decision TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (receipt, step)
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    at INTEGER NOT NULL,
    audited INTEGER NOT NULL DEFAULT 0,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_unaudited ON answers(id) WHERE audited = 0;
CREATE INDEX IF NOT EXISTS answers_request ON answers(request);
"""
SCHEMA_VERSION = 1  # PRAGMA user_version: 1 = answers are kept in the audit outbox
_SET_VERSION = "PRAGMA user_version = 1"
# Every query written out whole (no SQL is built at run time).
_BY_ID = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "WHERE id = ?"
)
_PENDING_OF_GROUP = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "WHERE grp = ? AND status = 'pending' AND deadline > ? ORDER BY created DESC LIMIT 1"
)
_LATEST_OF_GROUP = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "WHERE grp = ? ORDER BY created DESC, rowid DESC LIMIT 1"
)
_PLANS = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "WHERE kind = ? AND status = 'approved' AND agent = ? AND session IS ?"
)
_LIVE = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "WHERE (status = 'pending' AND deadline > ?) OR status = 'approved'"
)
_LIST_ALL = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "ORDER BY created DESC, rowid DESC LIMIT ?"
)
_LIST_PENDING = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "WHERE status = 'pending' AND deadline > ? ORDER BY created DESC, rowid DESC LIMIT ?"
)
_LIST_EXPIRED = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "WHERE status = 'expired' OR (status = 'pending' AND deadline <= ?) "
    "ORDER BY created DESC, rowid DESC LIMIT ?"
)
_LIST_STATUS = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "WHERE status = ? ORDER BY created DESC, rowid DESC LIMIT ?"
)
_OVERDUE = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data FROM requests "
    "WHERE status = 'pending' AND deadline <= ? ORDER BY created LIMIT 100"
)
_ANSWERED = (
    "SELECT status, count, deadline, decided_by, decided, note, receipt, data, id, created "
    "FROM requests WHERE status != 'pending' ORDER BY created, rowid"
)
_UNAUDITED = (
    "SELECT id, request, status, at, data FROM answers WHERE audited = 0 ORDER BY id LIMIT ?"
)
_ENQUEUE = "INSERT INTO answers(request, status, at, data) VALUES (?, ?, ?, ?)"
_UNREADABLE = (msgspec.DecodeError, ValueError, TypeError)
_request_decoder = msgspec.json.Decoder(PendingRequest)
_answer_decoder = msgspec.json.Decoder(Answer)
_receipt_decoder = msgspec.json.Decoder(Receipt)
_encode = msgspec.json.encode
_replace = msgspec.structs.replace


def _row(row: tuple[object, ...]) -> PendingRequest:
    status, count, deadline, by, decided, note, receipt, data = row
    req = _request_decoder.decode(data)  # type: ignore[arg-type]
    return _replace(
        req,
        status=Status(str(status)),
        count=count,
        deadline_ns=deadline,
        decided_by=by,
        decided_ns=decided,
        note=note,
        receipt=None if receipt is None else _receipt_decoder.decode(receipt),  # type: ignore[arg-type]
    )


def _enqueue(db: sqlite3.Connection, answer: Answer) -> None:
    """Queue ``answer`` for the audit log (inside the transaction that made it)."""
    db.execute(_ENQUEUE, (answer.request, answer.status, answer.at, _encode(answer)))


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a file to SCHEMA_VERSION: queue the answers of a store made before the outbox.
    A request row that cannot be read is queued with what its columns say."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version >= SCHEMA_VERSION:
        return
    for found in db.execute(_ANSWERED).fetchall():
        status, decided_by, decided, rid, created = found[0], found[3], found[4], found[8], found[9]
        try:
            answers = stored_answers(_row(found[:8]))
        except _UNREADABLE as exc:
            at = next((t for t in (decided, created) if isinstance(t, int)), 0)
            why = f"request row unreadable: {type(exc).__name__}"
            odd = unreadable_answer(str(rid), str(status), at, why)
            answers = [_replace(odd, by=str(decided_by or ""))]
        for answer in answers:
            _enqueue(db, answer)
    db.execute(_SET_VERSION)


class SQLiteApprovalStore:
    """The ``ApprovalStore`` port over one SQLite file, shared by processes.  ``retention_s``:
    finished requests older than this are pruned every ``prune_every`` writes (None: never)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        poll_s: float = 0.02,
        retention_s: float | None = DEFAULT_RETENTION_S,
        prune_every: int = PRUNE_EVERY,
    ) -> None:
        self.path = Path(path)
        self.poll_s = poll_s
        self.retention_s = retention_s
        self.prune_every = prune_every
        self._writes = 0
        self._prune_at = prune_every
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._generation = 0
        self._data_version = -1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            use_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version < SCHEMA_VERSION:
                self._write(_migrate)  # checks again inside: another process may have done it
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open approval store {self.path}: {exc}") from exc

    # -- plumbing ------------------------------------------------------------------------------

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _write(self, change: Callable[[sqlite3.Connection], T], now_ns: int | None = None) -> T:
        """Run ``change`` in one IMMEDIATE transaction (other processes wait for it); a write
        at ``now_ns`` (asking, answering, redeeming) counts towards the next prune."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = change(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        if now_ns is not None:
            self._wrote(now_ns)
        return result

    def _wrote(self, now_ns: int) -> None:
        """After a write at ``now_ns``: prune, every ``prune_every`` writes.  A failure is
        logged (and retried after as many writes): the write itself succeeded."""
        if self.retention_s is None:
            return
        with self._lock:
            self._writes += 1
            if self._writes < self._prune_at:
                return
            self._prune_at = self._writes + self.prune_every
        before = now_ns - int(self.retention_s * 1e9)
        try:
            self._write(lambda db: prune_rows(db, before, PRUNE_BATCH, count_kept=False))
        except sqlite3.Error as exc:
            log.warning("pruning the approval store %s failed: %s", self.path, exc)

    # -- the port ------------------------------------------------------------------------------

    def submit(
        self, request: PendingRequest, limits: ApprovalLimits | None, now_ns: int
    ) -> Submission:
        """Join an identical pending request, or check the caps and store ``request``."""

        def change(db: sqlite3.Connection) -> Submission:
            found = db.execute(_PENDING_OF_GROUP, (request.group, now_ns)).fetchone()
            if found is not None:
                latest = _row(found)
                deadline = max(latest.deadline_ns, request.deadline_ns)
                db.execute(
                    "UPDATE requests SET count = count + 1, deadline = ? WHERE id = ?",
                    (deadline, latest.id),
                )
                return Submission(
                    _replace(latest, count=latest.count + 1, deadline_ns=deadline), joined=True
                )
            if limits is not None:
                problem = cap_problem(limits, self._counts(db, request, limits, now_ns))
                if problem is not None:
                    return Submission(None, refused=problem)
            db.execute(
                "INSERT INTO requests(id, grp, status, kind, agent, session, bucket, created, "
                "deadline, count, data) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.id,
                    request.group,
                    request.kind,
                    request.agent,
                    request.session,
                    request.bucket,
                    request.created_ns,
                    request.deadline_ns,
                    request.count,
                    _encode(request),
                ),
            )
            return Submission(request)

        return self._write(change, now_ns)

    @staticmethod
    def _counts(
        db: sqlite3.Connection, request: PendingRequest, limits: ApprovalLimits, now_ns: int
    ) -> Counts:
        pending, in_session = db.execute(
            "SELECT COALESCE(SUM(status = 'pending' AND deadline > ?), 0), COUNT(*) "
            "FROM requests WHERE bucket = ?",
            (now_ns, request.bucket),
        ).fetchone()
        (in_window,) = db.execute(
            "SELECT COUNT(*) FROM requests WHERE agent = ? AND created >= ?",
            (request.agent, now_ns - int(limits.window_s * 1e9)),
        ).fetchone()
        return Counts(pending, in_session, in_window)

    def get(self, request_id: str) -> PendingRequest | None:
        """The request, or None."""
        rows = self._read(_BY_ID, (request_id,))
        return _row(rows[0]) if rows else None

    def latest(self, group: str) -> PendingRequest | None:
        """The newest request of ``group``, or None."""
        rows = self._read(_LATEST_OF_GROUP, (group,))
        return _row(rows[0]) if rows else None

    def requests(
        self, *, status: Status | None = Status.PENDING, limit: int = 100, now_ns: int
    ) -> list[PendingRequest]:
        """Requests, newest first, with the given (effective) status."""
        if status is None:
            rows = self._read(_LIST_ALL, (limit,))
        elif status is Status.PENDING:
            rows = self._read(_LIST_PENDING, (now_ns, limit))
        elif status is Status.EXPIRED:
            rows = self._read(_LIST_EXPIRED, (now_ns, limit))
        else:
            rows = self._read(_LIST_STATUS, (status.value, limit))
        return [_row(r) for r in rows]

    def decide(
        self,
        request_id: str,
        status: Status,
        *,
        by: str,
        note: str,
        now_ns: int,
        receipt: Receipt | None = None,
    ) -> PendingRequest | Problem:
        """Answer a pending request (see ``ApprovalStore.decide``)."""

        def change(db: sqlite3.Connection) -> PendingRequest | Problem:
            found = db.execute(_BY_ID, (request_id,)).fetchone()
            if found is None:
                return Problem("approval.not_found", f"no approval request {request_id!r}")
            row = _row(found)
            if row.status is not Status.PENDING or (
                row.status_at(now_ns) is Status.EXPIRED and status is not Status.EXPIRED
            ):
                return not_pending(row, now_ns)
            db.execute(
                "UPDATE requests SET status = ?, decided_by = ?, decided = ?, note = ?, "
                "receipt = ? WHERE id = ? AND status = 'pending'",
                (
                    status.value,
                    by,
                    now_ns,
                    note,
                    None if receipt is None else _encode(receipt),
                    request_id,
                ),
            )
            _enqueue(db, answer_of(row, status, by=by, note=note, at=now_ns, receipt=receipt))
            return _replace(
                row, status=status, decided_by=by, decided_ns=now_ns, note=note, receipt=receipt
            )

        return self._write(change, now_ns)

    def plans(self, agent: str, session: str | None, now_ns: int) -> list[PendingRequest]:
        """Approved, unexpired plans of ``agent`` in ``session``."""
        rows = self._read(_PLANS, (PLAN_KIND, agent, session))
        plans = [_row(r) for r in rows]
        return [p for p in plans if p.receipt is not None and p.receipt.expires_ns > now_ns]

    def redeem(
        self, receipt: Receipt, steps: tuple[int, ...], *, decision_id: str, now_ns: int
    ) -> int | Problem:
        """Use the first unused step of ``steps``; the step, or why none could be used."""

        def change(db: sqlite3.Connection) -> int | Problem:
            found = db.execute(_BY_ID, (receipt.request,)).fetchone()
            problem = redeem_problem(None if found is None else _row(found), receipt)
            if problem is not None:
                return problem
            for step in steps:
                inserted = db.execute(
                    "INSERT OR IGNORE INTO redeemed(receipt, step, decision, ts) "
                    "VALUES (?, ?, ?, ?)",
                    (receipt.id, step, decision_id, now_ns),
                ).rowcount
                if not inserted:
                    continue
                (used,) = db.execute(
                    "SELECT COUNT(*) FROM redeemed WHERE receipt = ?", (receipt.id,)
                ).fetchone()
                if used >= len(receipt.steps):
                    db.execute(
                        "UPDATE requests SET status = 'used' WHERE id = ?", (receipt.request,)
                    )
                return step
            return Problem("approval.receipt.used", "receipt has already been used")

        return self._write(change, now_ns)

    def cancel(self, scope: Scope, *, by: str, note: str, now_ns: int) -> list[str]:
        """Cancel pending and revoke approved requests in ``scope``."""

        def change(db: sqlite3.Connection) -> list[str]:
            found = db.execute(_LIVE, (now_ns,)).fetchall()
            done = []
            for row in map(_row, found):
                if not scope.matches(row):
                    continue
                new = Status.CANCELLED if row.status is Status.PENDING else Status.REVOKED
                db.execute(
                    "UPDATE requests SET status = ?, decided_by = ?, decided = ?, note = ? "
                    "WHERE id = ?",
                    (new.value, by, now_ns, note, row.id),
                )
                _enqueue(db, answer_of(row, new, by=by, note=note, at=now_ns, receipt=row.receipt))
                done.append(row.id)
            return done

        return self._write(change, now_ns)

    # -- the audit outbox ------------------------------------------------------------------------

    def expire_overdue(self, now_ns: int, *, by: str, note: str) -> list[str]:
        """Mark pending requests past their deadline expired (queueing the answer); their ids.
        Reads first: nothing is written (no lock taken) when nothing is overdue."""
        if not self._read(_OVERDUE, (now_ns,)):
            return []

        def change(db: sqlite3.Connection) -> list[str]:
            done = []
            for row in map(_row, db.execute(_OVERDUE, (now_ns,)).fetchall()):
                db.execute(
                    "UPDATE requests SET status = 'expired', decided_by = ?, decided = ?, "
                    "note = ? WHERE id = ? AND status = 'pending'",
                    (by, now_ns, note, row.id),
                )
                _enqueue(db, answer_of(row, Status.EXPIRED, by=by, note=note, at=now_ns))
                done.append(row.id)
            return done

        return self._write(change, now_ns)

    def unaudited(self, limit: int = 100) -> list[tuple[int, Answer]]:
        """Answers not yet in the audit log, oldest first, with their outbox ids.  An entry
        that cannot be read comes back with what its columns say and a ``problem``."""
        out = []
        for entry, request, status, at, data in self._read(_UNAUDITED, (limit,)):
            assert isinstance(entry, int)  # INTEGER PRIMARY KEY
            try:
                if not isinstance(data, bytes):
                    raise TypeError("not a blob")
                answer = _answer_decoder.decode(data)
            except _UNREADABLE as exc:
                why = f"outbox entry unreadable: {type(exc).__name__}"
                when = at if isinstance(at, int) else 0
                answer = unreadable_answer(str(request), str(status), when, why)
            out.append((entry, answer))
        return out

    def mark_audited(self, entries: Collection[int]) -> None:
        """Mark outbox entries as written to the audit log."""
        if not entries:
            return

        def change(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE answers SET audited = 1 WHERE id = ?", [(e,) for e in entries])

        self._write(change)

    def prune(self, before_ns: int, *, limit: int = PRUNE_BATCH) -> Pruned:
        """Delete at most ``limit`` finished requests that ended before ``before_ns`` and whose
        every answer is audited, with their answers and redeemed steps, in one transaction;
        ``kept`` counts those old enough but held back by an answer not yet audited."""
        return self._write(lambda db: prune_rows(db, before_ns, limit, count_kept=True))

    def version(self) -> int:
        """Changes when this store object writes, or another connection commits."""
        with self._lock:
            (data_version,) = self._db.execute("PRAGMA data_version").fetchone()
        with self._cond:
            if data_version != self._data_version:
                self._data_version = data_version
                self._generation += 1
            return self._generation

    def wait(self, since: int, timeout_s: float) -> int:
        """Block until something changes or ``timeout_s`` passes, polling every ``poll_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.version()
            remaining = deadline - time.monotonic()
            if current != since or remaining <= 0:
                return current
            with self._cond:
                if self._generation == since:
                    self._cond.wait(min(self.poll_s, remaining))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
