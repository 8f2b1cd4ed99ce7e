"""Retention of the approval store, in both stores: finished requests and their answers go once
they are older than the retention period *and* their answers are in the audit log; pending
requests, usable approvals and anything whose answer is not audited stay.  Deny paths (what
must be kept) first, then what goes, then the store pruning by itself.  No timings: time is a
FixedClock."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

import ringfence
from ringfence import Action
from ringfence.core.approvals import ApprovalLimits, Problem, Scope, Status, group_key
from ringfence.errors import ApprovalError
from ringfence.runtime.approvals import (
    DEFAULT_RETENTION_S,
    ApprovalQueue,
    Pruned,
    Retention,
    open_approval_queue,
)
from ringfence.runtime.audit import AuditLog
from ringfence.stores import approvals as sqlite_mod
from ringfence.stores.approvals import SQLiteApprovalStore
from ringfence.stores.approvals_memory import MemoryApprovalStore
from ringfence.testing.clock import FixedClock

from ._support import approval_store

MAIL = """
version: 1
tools:
  send_email:
    args:
      type: object
      properties:
        to: {type: string}
        body: {type: string}
rules:
  - {id: external-mail, effect: require_approval, tool: send_email, reason: needs a human}
"""
POLICY = ringfence.policy_from_text(MAIL)
DAY = 86400.0
MONTH = DEFAULT_RETENTION_S


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[Any]:
    s = approval_store(kind, tmp_path, retention_s=None)  # only explicit prunes, unless a test says
    yield s
    s.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def queue(store: Any, clock: FixedClock) -> ApprovalQueue:
    return ApprovalQueue(store, SigningKey(b"\x09" * 32), clock=clock)


def call(to: str, session: str = "s1") -> Action:
    return Action(
        kind="tool_call",
        tool="send_email",
        args={"to": to, "body": "hi"},
        agent="mailer",
        user="alice",
        session=session,
    )


def ask(queue: ApprovalQueue, to: str, *, timeout_s: float | None = None, **kw: Any) -> str:
    action = call(to, **kw)
    sub = queue.submit(action, POLICY.evaluate(action, f"d-{to}"), timeout_s=timeout_s)
    assert sub.request is not None
    return sub.request.id


def gone(queue: ApprovalQueue, rid: str) -> bool:
    return queue.store.get(rid) is None


def answers_of(store: Any, rid: str) -> int:
    """How many answers of ``rid`` the outbox still holds (audited or not)."""
    if isinstance(store, MemoryApprovalStore):
        return sum(a.request == rid for a, _ in store.answers())
    (n,) = store._db.execute("SELECT COUNT(*) FROM answers WHERE request = ?", (rid,)).fetchone()
    return int(n)


def every_kind_of_finished(queue: ApprovalQueue, clock: FixedClock) -> dict[str, str]:
    """One request per finished status: denied, cancelled, expired, revoked, used, approved
    (its receipt expired unused)."""
    ids = {s: ask(queue, f"{s}@x.test", session=s) for s in ("denied", "cancelled", "expired")}
    ids |= {s: ask(queue, f"{s}@x.test", session=s) for s in ("revoked", "used", "approved")}
    queue.deny(ids["denied"], "bob", note="no")
    queue.cancel(Scope(session="cancelled"), by="ops")
    queue.approve(ids["revoked"], "carol")
    queue.cancel(Scope(session="revoked"), by="ops")
    used = queue.approve(ids["used"], "carol")
    queue.redeem(used, call("used@x.test", "used"), policy_version=POLICY.version)
    queue.approve(ids["approved"], "carol", ttl_s=60)
    clock.advance(400)  # past the 300 s deadline of the one nobody answered
    queue.expire_overdue()
    statuses = {s: queue.show(r).status.value for s, r in ids.items()}
    assert statuses == {s: s for s in ids}
    return ids


# -- what must stay -------------------------------------------------------------------------


def test_an_answer_not_in_the_audit_log_keeps_its_request(
    queue: ApprovalQueue, clock: FixedClock, memory_log: AuditLog
) -> None:
    rid = ask(queue, "a@x.test")
    queue.deny(rid, "bob", note="no")
    clock.advance(MONTH + DAY)
    assert queue.prune() == Pruned(0, 0, kept=1)
    assert queue.show(rid).status is Status.DENIED
    assert answers_of(queue.store, rid) == 1
    assert queue.record_answers(memory_log) == 1  # the answer still reaches the log
    assert queue.prune() == Pruned(1, 1, 0)
    assert gone(queue, rid) and answers_of(queue.store, rid) == 0


def test_a_revocation_not_yet_audited_keeps_the_request(
    queue: ApprovalQueue, clock: FixedClock, memory_log: AuditLog
) -> None:
    rid = ask(queue, "a@x.test")
    queue.approve(rid, "carol")
    queue.record_answers(memory_log)  # the approval is audited ...
    clock.advance(MONTH + DAY)
    queue.cancel(Scope(everything=True), by="ops")  # ... the revocation not yet
    clock.advance(MONTH + DAY)
    assert queue.prune().kept == 1
    assert queue.show(rid).status is Status.REVOKED
    queue.record_answers(memory_log)
    assert queue.prune() == Pruned(1, 2, 0)


def test_pending_requests_are_never_pruned(
    queue: ApprovalQueue, clock: FixedClock, memory_log: AuditLog
) -> None:
    waiting = ask(queue, "wait@x.test", timeout_s=90 * DAY)
    overdue = ask(queue, "late@x.test")  # past its deadline, not yet marked expired
    clock.advance(MONTH + DAY)
    queue.store.prune(clock() + 1)  # even a cut-off after now: pending is never a candidate
    assert queue.show(waiting).status is Status.PENDING
    assert queue.show(overdue).status is Status.PENDING
    # once marked expired, it is an answer like any other: audited first, then pruned later
    queue.record_answers(memory_log)
    assert queue.show(overdue).status is Status.EXPIRED
    assert queue.prune() == Pruned(0, 0, 0)  # it ended just now
    clock.advance(MONTH + DAY)
    assert queue.prune() == Pruned(1, 1, 0)
    assert gone(queue, overdue) and not gone(queue, waiting)


def test_an_approval_whose_receipt_can_still_be_used_is_kept(
    store: Any, clock: FixedClock, memory_log: AuditLog
) -> None:
    limits = ApprovalLimits(max_receipt_ttl_s=10 * DAY, window_s=60, remember_denial_s=60)
    queue = ApprovalQueue(store, SigningKey(b"\x09" * 32), clock=clock, limits=limits)
    rid = ask(queue, "a@x.test")
    receipt = queue.approve(rid, "carol", ttl_s=5 * DAY)
    queue.record_answers(memory_log)
    clock.advance(2 * DAY)
    assert queue.prune(older_than_s=DAY) == Pruned(0, 0, 0)  # answered 2 days ago, usable
    assert queue.redeem(receipt, call("a@x.test"), policy_version=POLICY.version).step == 0
    assert queue.prune(older_than_s=DAY) == Pruned(0, 0, 0)  # used: kept until it expires
    clock.advance(3 * DAY + DAY + 1)  # expired a day and a second ago
    assert queue.prune(older_than_s=DAY) == Pruned(1, 1, 0)


def test_nothing_younger_than_the_retention_goes(
    queue: ApprovalQueue, clock: FixedClock, memory_log: AuditLog
) -> None:
    ids = every_kind_of_finished(queue, clock)
    queue.record_answers(memory_log)
    clock.advance(MONTH - DAY)
    assert queue.prune() == Pruned(0, 0, 0)
    assert not any(gone(queue, r) for r in ids.values())


def test_a_retention_shorter_than_the_caps_is_refused(queue: ApprovalQueue, tmp_path: Path) -> None:
    for seconds in (0.0, 60.0, 3599.0, float("nan"), -1.0):
        with pytest.raises(ApprovalError) as info:
            queue.prune(older_than_s=seconds)
        assert info.value.code == "approval.retention"
    with pytest.raises(ApprovalError, match="window_s or remember_denial_s"):
        open_approval_queue(tmp_path / "d", retention_s=60)
    assert not (tmp_path / "d").exists()  # refused before anything was made
    long_window = ApprovalLimits(window_s=40 * DAY)
    with pytest.raises(ApprovalError):
        open_approval_queue(tmp_path / "d", limits=long_window)  # the 30-day default is short


def test_at_the_shortest_retention_a_remembered_denial_survives(
    store: Any, clock: FixedClock, memory_log: AuditLog
) -> None:
    limits = ApprovalLimits(window_s=600, remember_denial_s=600)
    queue = ApprovalQueue(store, SigningKey(b"\x09" * 32), clock=clock, limits=limits)
    rid = ask(queue, "a@x.test")
    queue.deny(rid, "bob")
    queue.record_answers(memory_log)
    clock.advance(599)
    assert queue.prune(older_than_s=600) == Pruned(0, 0, 0)
    latest = queue.store.latest(group_key(call("a@x.test")))
    assert latest is not None and latest.status is Status.DENIED


def test_a_request_answered_by_an_older_ringfence_is_kept(
    tmp_path: Path, clock: FixedClock
) -> None:
    store = SQLiteApprovalStore(tmp_path / "approvals.sqlite", retention_s=None)
    queue = ApprovalQueue(store, SigningKey(b"\x09" * 32), clock=clock)
    rid = ask(queue, "a@x.test")
    # An answer written without queueing it (what a pre-outbox Ringfence did): no audit
    # record of it exists, so the request is the only trace and must stay.
    store._db.execute(
        "UPDATE requests SET status = 'denied', decided = ?, decided_by = 'old' WHERE id = ?",
        (clock(), rid),
    )
    clock.advance(MONTH + DAY)
    assert queue.prune() == Pruned(0, 0, kept=1)
    assert queue.show(rid).status is Status.DENIED
    store.close()


# -- what goes ------------------------------------------------------------------------------


def test_every_kind_of_finished_request_goes_once_audited_and_old(
    queue: ApprovalQueue, clock: FixedClock, memory_log: AuditLog
) -> None:
    ids = every_kind_of_finished(queue, clock)
    keep = ask(queue, "keep@x.test", timeout_s=90 * DAY)
    queue.record_answers(memory_log)
    clock.advance(MONTH + DAY)
    pruned = queue.prune()
    # revoked: approved + revoked; the others one answer each
    assert pruned == Pruned(requests=6, answers=7, kept=0)
    assert all(gone(queue, r) and answers_of(queue.store, r) == 0 for r in ids.values())
    assert queue.show(keep).status is Status.PENDING
    assert queue.list(None) == [queue.show(keep)]
    assert queue.prune() == Pruned(0, 0, 0)


def test_a_pruned_receipt_cannot_be_redeemed(
    queue: ApprovalQueue, clock: FixedClock, memory_log: AuditLog
) -> None:
    rid = ask(queue, "a@x.test")
    receipt = queue.approve(rid, "carol")
    queue.record_answers(memory_log)
    clock.advance(MONTH + DAY)
    assert queue.prune().requests == 1
    with pytest.raises(ApprovalError):
        queue.redeem(receipt, call("a@x.test"), policy_version=POLICY.version)
    # past the signature and expiry checks, the store itself no longer knows the receipt
    outcome = queue.store.redeem(receipt, (0,), decision_id="d", now_ns=clock())
    assert isinstance(outcome, Problem) and outcome.code == "approval.receipt.unknown"


def test_prune_goes_in_batches_until_done(
    queue: ApprovalQueue, clock: FixedClock, memory_log: AuditLog
) -> None:
    ids = [ask(queue, f"{i}@x.test", session=f"s{i}") for i in range(7)]
    for rid in ids:
        queue.deny(rid, "bob")
    queue.record_answers(memory_log)
    clock.advance(MONTH + DAY)
    assert queue.prune(batch=2) == Pruned(7, 7, 0)
    assert all(gone(queue, r) for r in ids)


def test_the_newest_surviving_request_of_a_group_is_still_found(
    queue: ApprovalQueue, clock: FixedClock, memory_log: AuditLog
) -> None:
    old = ask(queue, "a@x.test")
    queue.deny(old, "bob")
    queue.record_answers(memory_log)
    clock.advance(MONTH + DAY)
    new = ask(queue, "a@x.test")  # the same call again: a new request in the same group
    group = group_key(call("a@x.test"))
    assert queue.prune().requests == 1
    latest = queue.store.latest(group)
    assert latest is not None and latest.id == new
    queue.deny(new, "bob")
    queue.record_answers(memory_log)
    clock.advance(MONTH + DAY)
    assert queue.prune().requests == 1
    assert queue.store.latest(group) is None


def test_redeemed_steps_go_with_their_request(
    tmp_path: Path, clock: FixedClock, memory_log: AuditLog
) -> None:
    store = SQLiteApprovalStore(tmp_path / "approvals.sqlite", retention_s=None)
    queue = ApprovalQueue(store, SigningKey(b"\x09" * 32), clock=clock)
    rid = ask(queue, "a@x.test")
    receipt = queue.approve(rid, "carol")
    queue.redeem(receipt, call("a@x.test"), policy_version=POLICY.version)
    queue.record_answers(memory_log)
    clock.advance(MONTH + DAY)
    assert queue.prune().requests == 1
    assert store._db.execute("SELECT COUNT(*) FROM redeemed").fetchone() == (0,)
    assert store._db.execute("SELECT COUNT(*) FROM requests").fetchone() == (0,)
    store.close()


# -- the store prunes by itself -------------------------------------------------------------


def test_the_store_prunes_every_n_writes(
    kind: str, tmp_path: Path, clock: FixedClock, memory_log: AuditLog
) -> None:
    store = approval_store(kind, tmp_path, retention_s=MONTH, prune_every=4)
    assert isinstance(store, Retention)
    queue = ApprovalQueue(store, SigningKey(b"\x09" * 32), clock=clock)
    old = ask(queue, "old@x.test", session="a")  # write 1
    queue.deny(old, "bob")  # write 2
    queue.record_answers(memory_log)  # marks: not a write that prunes
    clock.advance(MONTH + DAY)
    ask(queue, "n1@x.test", session="b")  # write 3
    assert not gone(queue, old)
    ask(queue, "n2@x.test", session="c")  # write 4: prunes
    assert gone(queue, old)
    store.close()


def test_the_store_does_not_prune_unaudited_answers_by_itself_either(
    kind: str, tmp_path: Path, clock: FixedClock
) -> None:
    store = approval_store(kind, tmp_path, retention_s=MONTH, prune_every=1)
    queue = ApprovalQueue(store, SigningKey(b"\x09" * 32), clock=clock)
    old = ask(queue, "old@x.test", session="a")
    queue.deny(old, "bob")
    clock.advance(MONTH + DAY)
    for i in range(3):
        ask(queue, f"n{i}@x.test", session=f"s{i}")
    assert queue.show(old).status is Status.DENIED
    assert [a.request for _, a in store.unaudited()] == [old]
    store.close()


def test_a_store_without_retention_keeps_everything(
    kind: str, tmp_path: Path, clock: FixedClock, memory_log: AuditLog
) -> None:
    store = approval_store(kind, tmp_path, retention_s=None, prune_every=1)
    queue = ApprovalQueue(store, SigningKey(b"\x09" * 32), clock=clock)
    old = ask(queue, "old@x.test", session="a")
    queue.deny(old, "bob")
    queue.record_answers(memory_log)
    clock.advance(10 * MONTH)
    for i in range(3):
        ask(queue, f"n{i}@x.test", session=f"s{i}")
    assert not gone(queue, old)
    store.close()


def test_a_failing_prune_does_not_fail_the_write(
    tmp_path: Path,
    clock: FixedClock,
    memory_log: AuditLog,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SQLiteApprovalStore(tmp_path / "approvals.sqlite", retention_s=MONTH, prune_every=1)
    queue = ApprovalQueue(store, SigningKey(b"\x09" * 32), clock=clock)

    def broken(*args: object, **kwargs: object) -> Pruned:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(sqlite_mod, "prune_rows", broken)
    with caplog.at_level(logging.WARNING, logger="ringfence.approvals"):
        rid = ask(queue, "a@x.test")  # the write that triggers the failing prune
        queue.deny(rid, "bob")
    assert queue.show(rid).status is Status.DENIED
    assert "pruning the approval store" in caplog.text and "database is locked" in caplog.text
    store.close()


def test_open_approval_queue_wires_the_retention(tmp_path: Path) -> None:
    queue = open_approval_queue(tmp_path / "d", retention_s=2 * MONTH)
    assert queue.store.retention_s == 2 * MONTH  # type: ignore[attr-defined]
    queue.store.close()  # type: ignore[attr-defined]
    forever = open_approval_queue(tmp_path / "d", retention_s=None)
    assert forever.store.retention_s is None  # type: ignore[attr-defined]
    forever.store.close()  # type: ignore[attr-defined]
    default = open_approval_queue(tmp_path / "d")
    assert default.store.retention_s == MONTH  # type: ignore[attr-defined]
    default.store.close()  # type: ignore[attr-defined]
