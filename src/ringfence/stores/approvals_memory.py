"""Approval requests in memory: the ``ApprovalStore`` contract for tests and single processes.

Same semantics as the SQLite store (one test suite runs against both): every change happens
under one lock, and a waiter is woken by a condition variable the moment anything changes.
Answers are queued for the audit log (the outbox) under the same lock that makes them.

Retention (:class:`~ringfence.runtime.approvals.Retention`): :meth:`~MemoryApprovalStore.prune`
deletes finished requests that ended before a time (their answer, or their receipt's expiry
if later: :func:`ended_ns`) and whose every answer is audited; every ``prune_every`` writes
the store does it itself for requests that ended more than ``retention_s`` ago.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection

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
from ringfence.core.audit.answer import Answer, answer_of
from ringfence.runtime.approvals import DEFAULT_RETENTION_S, Pruned

__all__ = ["PRUNE_BATCH", "PRUNE_EVERY", "MemoryApprovalStore", "ended_ns"]

PRUNE_EVERY = 200  # writes between two prunes a store does by itself
PRUNE_BATCH = 500  # requests one prune deletes at most
_replace = msgspec.structs.replace


def ended_ns(req: PendingRequest) -> int | None:
    """When a finished request stopped mattering: its answer, or its receipt's expiry if that
    is later (an approval can be used until then); None while it is pending."""
    if req.status is Status.PENDING:
        return None
    ended = req.decided_ns if req.decided_ns is not None else req.created_ns
    return ended if req.receipt is None else max(ended, req.receipt.expires_ns)


def not_pending(req: PendingRequest, now_ns: int) -> Problem:
    """The problem of answering a request that is no longer pending."""
    return Problem(
        "approval.not_pending", f"request {req.id} is {req.status_at(now_ns).value}, not pending"
    )


def redeem_problem(row: PendingRequest | None, receipt: Receipt) -> Problem | None:
    """Why ``receipt`` cannot be redeemed against its stored request ``row``, if it cannot."""
    stored = row.receipt if row is not None else None
    if row is None or stored is None or stored.id != receipt.id or stored.sig != receipt.sig:
        return Problem("approval.receipt.unknown", "receipt was not issued by this approval store")
    if row.status is Status.REVOKED:
        return Problem("approval.receipt.revoked", f"receipt was revoked by {row.decided_by}")
    if row.status is Status.USED:
        return Problem("approval.receipt.used", "receipt has already been used")
    if row.status is not Status.APPROVED:
        return Problem("approval.receipt.unknown", f"request {row.id} is {row.status.value}")
    return None


class MemoryApprovalStore:
    """The ``ApprovalStore`` port in memory (nothing survives the process).  ``retention_s``:
    finished requests older than this are pruned every ``prune_every`` writes (None: never)."""

    def __init__(
        self, *, retention_s: float | None = DEFAULT_RETENTION_S, prune_every: int = PRUNE_EVERY
    ) -> None:
        self.retention_s = retention_s
        self.prune_every = prune_every
        self._rows: dict[str, PendingRequest] = {}  # in creation order
        self._groups: dict[str, str] = {}  # group -> newest request id
        self._redeemed: set[tuple[str, int]] = set()
        self._answers: dict[int, Answer] = {}  # the outbox, by entry id (ascending)
        self._entries = 0  # the last entry id given
        self._unaudited: dict[int, None] = {}  # entry ids not yet in the audit log, in order
        self._cond = threading.Condition()  # an RLock: a write may prune under it
        self._version = 0
        self._writes = 0

    def _enqueue(self, answer: Answer) -> None:
        self._entries += 1
        self._answers[self._entries] = answer
        self._unaudited[self._entries] = None

    def _changed(self, now_ns: int | None = None) -> None:
        """Wake waiters; a write at ``now_ns`` counts towards the next prune."""
        self._version += 1
        self._cond.notify_all()
        if now_ns is None or self.retention_s is None:
            return
        self._writes += 1
        if self._writes % self.prune_every == 0:
            self._prune(now_ns - int(self.retention_s * 1e9), PRUNE_BATCH)

    def submit(
        self, request: PendingRequest, limits: ApprovalLimits | None, now_ns: int
    ) -> Submission:
        """Join an identical pending request, or check the caps and store ``request``."""
        with self._cond:
            latest = self._rows.get(self._groups.get(request.group, ""))
            if latest is not None and latest.status_at(now_ns) is Status.PENDING:
                joined = _replace(
                    latest,
                    count=latest.count + 1,
                    deadline_ns=max(latest.deadline_ns, request.deadline_ns),
                )
                self._rows[joined.id] = joined
                self._changed(now_ns)
                return Submission(joined, joined=True)
            if limits is not None:
                problem = cap_problem(limits, self._counts(request, limits, now_ns))
                if problem is not None:
                    return Submission(None, refused=problem)
            self._rows[request.id] = request
            self._groups[request.group] = request.id
            self._changed(now_ns)
            return Submission(request)

    def _counts(self, request: PendingRequest, limits: ApprovalLimits, now_ns: int) -> Counts:
        bucket, since = request.bucket, now_ns - int(limits.window_s * 1e9)
        pending = in_session = in_window = 0
        for row in self._rows.values():
            if row.bucket == bucket:
                in_session += 1
                pending += row.status_at(now_ns) is Status.PENDING
            if row.agent == request.agent and row.created_ns >= since:
                in_window += 1
        return Counts(pending, in_session, in_window)

    def get(self, request_id: str) -> PendingRequest | None:
        """The request, or None."""
        with self._cond:
            return self._rows.get(request_id)

    def latest(self, group: str) -> PendingRequest | None:
        """The newest request of ``group``, or None."""
        with self._cond:
            return self._rows.get(self._groups.get(group, ""))

    def requests(
        self, *, status: Status | None = Status.PENDING, limit: int = 100, now_ns: int
    ) -> list[PendingRequest]:
        """Requests, newest first, with the given (effective) status."""
        with self._cond:
            rows = list(self._rows.values())
        rows.sort(key=lambda r: r.created_ns, reverse=True)
        return [r for r in rows if status is None or r.status_at(now_ns) is status][:limit]

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
        with self._cond:
            row = self._rows.get(request_id)
            if row is None:
                return Problem("approval.not_found", f"no approval request {request_id!r}")
            effective = row.status_at(now_ns)
            if row.status is not Status.PENDING or (
                effective is Status.EXPIRED and status is not Status.EXPIRED
            ):
                return not_pending(row, now_ns)
            self._enqueue(answer_of(row, status, by=by, note=note, at=now_ns, receipt=receipt))
            row = _replace(
                row, status=status, decided_by=by, decided_ns=now_ns, note=note, receipt=receipt
            )
            self._rows[request_id] = row
            self._changed(now_ns)
            return row

    def plans(self, agent: str, session: str | None, now_ns: int) -> list[PendingRequest]:
        """Approved, unexpired plans of ``agent`` in ``session``."""
        with self._cond:
            return [
                r
                for r in self._rows.values()
                if r.kind == PLAN_KIND
                and r.status is Status.APPROVED
                and r.agent == agent
                and r.session == session
                and r.receipt is not None
                and r.receipt.expires_ns > now_ns
            ]

    def redeem(
        self, receipt: Receipt, steps: tuple[int, ...], *, decision_id: str, now_ns: int
    ) -> int | Problem:
        """Use the first unused step of ``steps``; the step, or why none could be used."""
        with self._cond:
            row = self._rows.get(receipt.request)
            problem = redeem_problem(row, receipt)
            if problem is not None:
                return problem
            assert row is not None
            for step in steps:
                if (receipt.id, step) in self._redeemed:
                    continue
                self._redeemed.add((receipt.id, step))
                total = len(receipt.steps)
                if all((receipt.id, i) in self._redeemed for i in range(total)):
                    self._rows[row.id] = _replace(row, status=Status.USED)
                self._changed(now_ns)
                return step
            return Problem("approval.receipt.used", "receipt has already been used")

    def cancel(self, scope: Scope, *, by: str, note: str, now_ns: int) -> list[str]:
        """Cancel pending and revoke approved requests in ``scope``."""
        done: list[str] = []
        with self._cond:
            for row in list(self._rows.values()):
                effective = row.status_at(now_ns)
                if effective not in (Status.PENDING, Status.APPROVED) or not scope.matches(row):
                    continue
                new = Status.CANCELLED if effective is Status.PENDING else Status.REVOKED
                self._rows[row.id] = _replace(
                    row, status=new, decided_by=by, decided_ns=now_ns, note=note
                )
                self._enqueue(answer_of(row, new, by=by, note=note, at=now_ns, receipt=row.receipt))
                done.append(row.id)
            if done:
                self._changed(now_ns)
        return done

    def expire_overdue(self, now_ns: int, *, by: str, note: str) -> list[str]:
        """Mark pending requests past their deadline expired (queueing the answer); their ids."""
        done: list[str] = []
        with self._cond:
            for row in list(self._rows.values()):
                if row.status is Status.PENDING and now_ns >= row.deadline_ns:
                    self._rows[row.id] = _replace(
                        row, status=Status.EXPIRED, decided_by=by, decided_ns=now_ns, note=note
                    )
                    self._enqueue(answer_of(row, Status.EXPIRED, by=by, note=note, at=now_ns))
                    done.append(row.id)
            if done:
                self._changed(now_ns)
        return done

    def unaudited(self, limit: int = 100) -> list[tuple[int, Answer]]:
        """Answers not yet in the audit log, oldest first, with their outbox ids."""
        with self._cond:
            return [(e, self._answers[e]) for e in list(self._unaudited)[:limit]]

    def answers(self) -> list[tuple[Answer, bool]]:
        """Every answer kept, oldest first, with whether it is in the audit log (for tests)."""
        with self._cond:
            return [(a, e not in self._unaudited) for e, a in self._answers.items()]

    def mark_audited(self, entries: Collection[int]) -> None:
        """Mark outbox entries as written to the audit log."""
        with self._cond:
            for entry in entries:
                self._unaudited.pop(entry, None)

    def prune(self, before_ns: int, *, limit: int = PRUNE_BATCH) -> Pruned:
        """Delete at most ``limit`` finished requests that ended before ``before_ns`` and whose
        every answer is audited, with their answers and redeemed steps (see the module doc)."""
        with self._cond:
            return self._prune(before_ns, limit)

    def _prune(self, before_ns: int, limit: int) -> Pruned:
        entries: dict[str, list[int]] = {}
        for entry, answer in self._answers.items():
            entries.setdefault(answer.request, []).append(entry)
        gone: list[PendingRequest] = []
        kept = 0
        for row in self._rows.values():
            ended = ended_ns(row)
            if ended is None or ended >= before_ns:
                continue
            mine = entries.get(row.id, [])
            if not mine or any(e in self._unaudited for e in mine):
                kept += 1  # its answer is not in the audit log (or was never queued)
            elif len(gone) < limit:
                gone.append(row)
        answers = 0
        for row in gone:
            del self._rows[row.id]
            for entry in entries[row.id]:
                del self._answers[entry]
                answers += 1
            if row.receipt is not None:
                self._redeemed -= {(row.receipt.id, i) for i in range(len(row.receipt.steps))}
            if self._groups.get(row.group) == row.id:
                newest = [r.id for r in self._rows.values() if r.group == row.group]
                if newest:
                    self._groups[row.group] = newest[-1]
                else:
                    del self._groups[row.group]
        if gone:
            self._changed()
        return Pruned(len(gone), answers, kept)

    def version(self) -> int:
        """Changes whenever anything in the store changes."""
        with self._cond:
            return self._version

    def wait(self, since: int, timeout_s: float) -> int:
        """Block until something changes (version differs from ``since``) or the timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._version == since:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._version

    def close(self) -> None:
        """Nothing to release."""
