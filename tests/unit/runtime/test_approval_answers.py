"""Every answer to an approval request is an audit record (``approval_answer``): the outbox in
both approval stores, draining it into a log, at-least-once with recognisable duplicates,
old and malformed store rows, and the Guard recording answers given elsewhere.

No timing is asserted: where a background thread must act, the test waits for the result
with a generous deadline.  Real processes are in test_approval_answers_processes.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nacl.signing import SigningKey

import ringfence
from ringfence import Action, Effect
from ringfence.core.approvals import Scope, Status
from ringfence.core.audit.answer import ANSWER_TYPE, Answer, answer_key, answer_record
from ringfence.core.audit.encoding import canonical, encode_record
from ringfence.core.killswitch import KillScope
from ringfence.errors import ApprovalError, AuditError
from ringfence.runtime.approvals import AnswerOutbox, ApprovalQueue, open_approval_queue
from ringfence.runtime.approver import QueueApprover
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.embedded import open_audit_log
from ringfence.runtime.guard import Guard
from ringfence.stores.approvals import SQLiteApprovalStore
from ringfence.stores.memory import MemoryAuditStore
from ringfence.testing.clock import FixedClock

from ._support import GuardFactory, approval_store, records_of

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
  - id: external-mail
    effect: require_approval
    tool: send_email
    reason: mail leaving the organisation needs a human
    redact: [args.body]
"""
BOB = {"to": "bob@partner.test", "body": "secret quarterly figures"}
POLICY = ringfence.policy_from_text(MAIL)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s = approval_store(request.param, tmp_path)
    yield s
    s.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def queue(store: Any, clock: FixedClock) -> ApprovalQueue:
    return ApprovalQueue(store, SigningKey(b"\x07" * 32), clock=clock)


def ask(queue: ApprovalQueue, args: dict[str, Any] = BOB, **who: Any) -> str:
    fields: dict[str, Any] = {"agent": "mailer", "user": "alice", "session": "s1", **who}
    action = Action(kind="tool_call", tool="send_email", args=dict(args), **fields)
    sub = queue.submit(action, POLICY.evaluate(action, f"d-{len(queue.list(None))}"))
    assert sub.request is not None
    return sub.request.id


def answers(log: AuditLog) -> list[dict[str, Any]]:
    return records_of(log, ANSWER_TYPE)


# -- the outbox, in both stores -----------------------------------------------------------------


def test_every_kind_of_answer_is_queued_once(queue: ApprovalQueue, clock: FixedClock) -> None:
    store = queue.store
    assert isinstance(store, AnswerOutbox)
    a, d, c, r, e = (ask(queue, {"to": f"{n}@x.test"}) for n in "adcre")
    receipt = queue.approve(a, "carol", note="fine", ttl_s=60)
    queue.deny(d, "bob", note="no")
    queue.cancel(Scope(user="nobody"))  # reaches nothing: no answer
    receipt_r = queue.approve(r, "carol")
    queue.cancel(Scope(agent="mailer"), by="ops", note="incident")  # cancels c and e, revokes a, r
    assert queue.show(e).status is Status.CANCELLED
    queued = [(x.request, x.status, x.by) for _, x in store.unaudited()]
    assert queued[:3] == [(a, "approved", "carol"), (d, "denied", "bob"), (r, "approved", "carol")]
    assert sorted(queued[3:]) == sorted(
        [
            (a, "revoked", "ops"),
            (c, "cancelled", "ops"),
            (r, "revoked", "ops"),
            (e, "cancelled", "ops"),
        ]
    )
    first = store.unaudited()[0][1]
    assert (first.receipt_id, first.receipt_expires) == (receipt.id, receipt.expires_ns)
    assert first.note == "fine" and first.agent == "mailer" and first.session == "s1"
    assert first.args_sha256 == queue.show(a).args_hash and first.decision_id
    revoked = next(x for _, x in store.unaudited() if x.request == r and x.status == "revoked")
    assert revoked.receipt_id == receipt_r.id  # what was withdrawn


def test_expiry_is_an_answer(queue: ApprovalQueue, clock: FixedClock) -> None:
    rid = ask(queue)
    assert queue.expire_overdue() == []
    clock.advance(queue.limits.request_timeout_s)
    assert queue.expire_overdue() == [rid]
    assert queue.expire_overdue() == []
    assert queue.show(rid).status is Status.EXPIRED
    ((_, answer),) = queue.store.unaudited()  # type: ignore[attr-defined]
    assert (answer.status, answer.by, answer.note) == ("expired", "ringfence", "no answer in time")


def test_a_refused_answer_queues_nothing(queue: ApprovalQueue) -> None:
    rid = ask(queue)
    queue.deny(rid, "bob")
    with pytest.raises(ApprovalError):
        queue.approve(rid, "carol")
    assert [x.status for _, x in queue.store.unaudited()] == ["denied"]  # type: ignore[attr-defined]


# -- draining into a log --------------------------------------------------------------------------


def test_answers_are_recorded_in_order_then_marked(
    queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    a, d = ask(queue, {"to": "a@x.test"}), ask(queue, {"to": "d@x.test"})
    receipt = queue.approve(a, "carol", note="ok")
    queue.deny(d, "bob", note="no")
    assert queue.record_answers(memory_log) == 2
    assert queue.record_answers(memory_log) == 0  # marked: never again
    assert queue.store.unaudited() == []  # type: ignore[attr-defined]
    first, second = answers(memory_log)
    assert (first["request"], first["status"], first["by"], first["note"]) == (
        a,
        "approved",
        "carol",
        "ok",
    )
    assert (first["receipt_id"], first["receipt_expires"]) == (receipt.id, receipt.expires_ns)
    assert (second["request"], second["status"], second["receipt_id"]) == (d, "denied", None)
    assert memory_log.verify().ok


def test_the_arguments_never_reach_the_record(queue: ApprovalQueue, memory_log: AuditLog) -> None:
    rid = ask(queue)
    queue.deny(rid, "bob")
    queue.record_answers(memory_log)
    raw = b"".join(d for _, d in memory_log.store.records())
    assert b"secret quarterly figures" not in raw and b"bob@partner.test" not in raw
    (rec,) = answers(memory_log)
    assert rec["args_sha256"] == queue.show(rid).args_hash


def test_a_plan_answer_names_its_steps(queue: ApprovalQueue, memory_log: AuditLog) -> None:
    receipt = queue.approve_plan(
        [("tool_call", "send_email", {"to": "a@x.test"}), ("tool_call", "send_email", {"to": "b"})],
        agent="mailer",
        session="s1",
        policy_version=POLICY.version,
        approver="carol",
        note="weekly",
    )
    queue.record_answers(memory_log)
    (rec,) = answers(memory_log)
    assert (rec["kind"], rec["status"], rec["receipt_id"]) == ("plan", "approved", receipt.id)
    assert rec["decision_id"] is None
    assert [s["args"] for s in rec["steps"]] == [s.args for s in receipt.steps]


def test_a_failing_log_marks_nothing_and_a_later_drain_records_it(
    queue: ApprovalQueue, memory_log: AuditLog, memory_store: MemoryAuditStore
) -> None:
    queue.deny(ask(queue), "bob")
    memory_store.fail_writes = True
    with pytest.raises(AuditError):
        queue.record_answers(memory_log)
    memory_store.fail_writes = False
    assert len(queue.store.unaudited()) == 1  # type: ignore[attr-defined]
    assert queue.record_answers(memory_log) == 1
    assert len(answers(memory_log)) == 1


class CrashAfterAppend:
    """An audit log whose process "dies" right after the record is durable: the append goes
    through, then the drain is interrupted before it can mark the answer."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def append(self, record: Any) -> int:
        self.log.append(record)
        raise KeyboardInterrupt("killed between append and mark")


def test_a_crash_between_append_and_mark_records_twice_recognisably(
    queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    rid = ask(queue)
    queue.approve(rid, "carol")
    with pytest.raises(KeyboardInterrupt):
        queue.record_answers(CrashAfterAppend(memory_log))
    assert queue.record_answers(memory_log) == 1  # still queued: recorded again
    first, again = answers(memory_log)
    assert answer_key(first) == answer_key(again) == (rid, "approved", first["at"])
    assert first["seq"] != again["seq"] and first["ts"] <= again["ts"]
    assert len({answer_key(r) for r in answers(memory_log)}) == 1  # one answer, counted once
    assert memory_log.verify().ok


def test_concurrent_drains_write_each_answer_once(
    queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    for n in range(20):
        queue.deny(ask(queue, {"to": f"{n}@x.test"}), "bob")
    barrier = threading.Barrier(4)

    def drain() -> None:
        barrier.wait()
        queue.record_answers(memory_log, batch=3)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [answer_key(r) for r in answers(memory_log)]
    assert len(keys) == len(set(keys)) == 20


def test_the_record_struct_is_already_canonical() -> None:
    answer = Answer(
        request="ap-1",
        status="approved",
        by="carol",
        at=5,
        agent="a",
        steps=({"kind": "tool_call", "tool": "t", "args": "sha256:00"},),
        receipt_id="rc-1",
        receipt_expires=9,
    )
    record = answer_record(answer, time_ns=7)
    assert encode_record(record) == canonical(msgspec.to_builtins(record))
    assert list(msgspec.structs.asdict(record)) == sorted(msgspec.structs.asdict(record))


# -- old and malformed SQLite rows ----------------------------------------------------------------


def downgrade(path: Path) -> None:
    """Make ``path`` look like a file written before the outbox existed."""
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE answers; PRAGMA user_version = 0;")
    db.close()


def test_an_old_store_is_migrated_and_its_answers_queued(
    tmp_path: Path, clock: FixedClock, memory_log: AuditLog
) -> None:
    path = tmp_path / "approvals.sqlite"
    old = ApprovalQueue(SQLiteApprovalStore(path), SigningKey(b"\x07" * 32), clock=clock)
    ids = {n: ask(old, {"to": f"{n}@x"}, session=n) for n in ("a", "u", "r", "d", "c", "p")}
    old.approve(ids["a"], "carol", note="ok")
    used = old.approve(ids["u"], "carol", note="go")
    action = Action(
        kind="tool_call",
        tool="send_email",
        args={"to": "u@x"},
        agent="mailer",
        user="alice",
        session="u",
    )
    old.redeem(used, action, policy_version=POLICY.version)
    old.approve(ids["r"], "dave", note="lost")
    old.cancel(Scope(session="r"), by="ops", note="incident")
    old.deny(ids["d"], "bob", note="no")
    old.cancel(Scope(session="c"), by="ops", note="incident")
    old.store.close()  # type: ignore[attr-defined]
    downgrade(path)
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO requests(id, grp, status, kind, agent, session, bucket, created, deadline, "
        "count, decided_by, decided, note, data) VALUES ('ap-bad', 'g', 'denied', 'tool_call', "
        "'mailer', 's1', 's1', 1, 2, 1, 'eve', 42, 'n', x'00ff')"
    )
    db.commit()
    db.close()

    store = SQLiteApprovalStore(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (1,)
    queued = [(x.request, x.status, x.by) for _, x in store.unaudited()]
    assert sorted(queued) == sorted(
        [
            (ids["a"], "approved", "carol"),
            (ids["u"], "approved", "carol"),  # used since: still an approval
            (ids["r"], "approved", "dave"),  # revoked since: the approval, then the revocation
            (ids["r"], "revoked", "ops"),
            (ids["d"], "denied", "bob"),
            (ids["c"], "cancelled", "ops"),
            ("ap-bad", "denied", "eve"),
        ]
    )  # the pending request has no answer yet
    bad = next(x for _, x in store.unaudited() if x.request == "ap-bad")
    assert bad.at == 42 and bad.agent is None and "unreadable" in (bad.problem or "")
    used_answer = next(x for _, x in store.unaudited() if x.request == ids["u"])
    assert (used_answer.receipt_id, used_answer.at) == (used.id, used.issued_ns)
    store.close()

    again = SQLiteApprovalStore(path)  # migrated once only
    assert len(again.unaudited()) == len(queued)
    queue = ApprovalQueue(again, SigningKey(b"\x07" * 32), clock=clock)
    assert queue.record_answers(memory_log) == len(queued)
    recs = answers(memory_log)
    assert sorted((r["request"], r["status"], r["by"]) for r in recs) == sorted(queued)
    assert next(r for r in recs if r["request"] == "ap-bad")["problem"]
    assert memory_log.verify().ok
    again.close()


def test_a_malformed_outbox_entry_is_still_recorded(
    tmp_path: Path, memory_log: AuditLog, clock: FixedClock
) -> None:
    path = tmp_path / "approvals.sqlite"
    store = SQLiteApprovalStore(path)
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO answers(request, status, at, data) VALUES ('ap-x', 'denied', 5, 'junk')"
    )
    db.execute("INSERT INTO answers(request, status, at, data) VALUES ('ap-y', 'odd', 'late', 7)")
    db.commit()
    db.close()
    queue = ApprovalQueue(store, SigningKey(b"\x07" * 32), clock=clock)
    assert queue.record_answers(memory_log) == 2
    x, y = answers(memory_log)
    assert (x["request"], x["status"], x["at"], x["by"]) == ("ap-x", "denied", 5, "")
    assert "unreadable" in x["problem"] and x["agent"] is None
    assert (y["request"], y["status"], y["at"]) == ("ap-y", "odd", 0)
    assert store.unaudited() == []
    store.close()


# -- the Guard records answers ----------------------------------------------------------------


def make(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog, wait_s: float = 30
) -> tuple[Guard, QueueApprover]:
    approver = QueueApprover(queue, wait_s=wait_s, audit=memory_log)
    return make_guard(MAIL, approver=approver), approver


def call(guard: Guard) -> ringfence.Decision:
    with guard.context(agent="mailer", user="alice", session="s1"):
        return guard.check(guard.action("send_email", dict(BOB)))


def answer_later(queue: ApprovalQueue, act: Callable[[str], Any]) -> threading.Thread:
    def run() -> None:
        version = queue.store.version()
        while not (pending := queue.list()):
            version = queue.store.wait(version, 5)
        act(pending[0].id)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_a_denial_is_recorded_before_the_deny_returns(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, _ = make(make_guard, queue, memory_log)
    t = answer_later(queue, lambda rid: queue.deny(rid, "bob", note="not today"))
    decision = call(guard)
    t.join()
    assert decision.effect is Effect.DENY
    types = [r["type"] for r in records_of(memory_log)]
    assert types == ["decision", ANSWER_TYPE, "approval"]
    (rec,) = answers(memory_log)
    assert (rec["status"], rec["by"], rec["note"]) == ("denied", "bob", "not today")
    assert rec["decision_id"] == decision.decision_id


def test_a_timeout_is_recorded_as_expired(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog, clock: FixedClock
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0.01)
    real_wait = queue.wait

    def wait_and_pass_deadline(rid: str, timeout: float, **kw: Any) -> Any:
        clock.advance(1)
        return real_wait(rid, timeout, **kw)

    queue.wait = wait_and_pass_deadline  # type: ignore[method-assign]
    assert call(guard).effect is Effect.DENY
    (rec,) = answers(memory_log)
    assert (rec["status"], rec["by"]) == ("expired", "ringfence")


def test_a_nonblocking_guard_records_answers_given_elsewhere(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, approver = make(make_guard, queue, memory_log, wait_s=0)
    assert call(guard).effect is Effect.DENY  # "approval pending"
    (req,) = queue.list()
    approver.watch()
    try:
        queue.deny(req.id, "bob", note="no")  # as a reviewer would, from elsewhere
        until(lambda: answers(memory_log))
    finally:
        approver.close()
    (rec,) = answers(memory_log)
    assert (rec["request"], rec["status"]) == (req.id, "denied")


def until(found: Callable[[], Any], deadline_s: float = 20) -> Any:
    """Poll ``found`` until it is truthy (the deadline only stops a broken test hanging)."""
    end = time.monotonic() + deadline_s
    while not (result := found()):
        assert time.monotonic() < end, "never happened"
        time.sleep(0.01)
    return result


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_open_guard_records_answers_left_over_when_it_opens(data: Path) -> None:
    queue = open_approval_queue(data)
    rid = ask(queue)
    queue.approve(rid, "carol", note="while no agent ran")
    queue.store.close()  # type: ignore[attr-defined]
    guard = ringfence.open_guard(POLICY, data_dir=data, approval_queue=True, approval_wait_s=0)
    try:
        (rec,) = answers(guard.audit)
        assert (rec["request"], rec["status"], rec["by"]) == (rid, "approved", "carol")
    finally:
        guard.close()


def test_a_kill_cancels_pending_requests_and_the_cancel_is_recorded(data: Path) -> None:
    guard = ringfence.open_guard(POLICY, data_dir=data, approval_queue=True, approval_wait_s=0)
    try:
        assert call(guard).effect is Effect.DENY
        assert guard.controls is not None
        kill = guard.controls.kill(KillScope.of("agent", "mailer"), "incident", "ops")
        (rec,) = answers(guard.audit)  # recorded before kill() returned
        assert (rec["status"], rec["by"]) == ("cancelled", "ops")
        assert rec["note"] == f"kill {kill.id}: incident"
        assert {r["type"] for r in records_of(guard.audit)} >= {"control", ANSWER_TYPE}
    finally:
        guard.close()


def test_a_kill_made_elsewhere_is_recorded_by_the_guard(data: Path) -> None:
    from ringfence.runtime.controls import open_controls

    guard = ringfence.open_guard(POLICY, data_dir=data, approval_queue=True, approval_wait_s=0)
    try:
        assert call(guard).effect is Effect.DENY
        other = open_controls(data, watch_seconds=None)  # as `ringfence kill` would
        other.kill(KillScope.of("session", "s1"), "incident", "ops")
        other.close()
        (rec,) = until(lambda: answers(guard.audit))
        assert (rec["status"], rec["by"]) == ("cancelled", "ops")
    finally:
        guard.close()


def test_closing_the_guard_records_what_is_left(data: Path) -> None:
    guard = ringfence.open_guard(POLICY, data_dir=data, approval_queue=True, approval_wait_s=0)
    assert call(guard).effect is Effect.DENY
    reviewer = open_approval_queue(data)
    (req,) = reviewer.list()
    approver = guard.approver
    assert isinstance(approver, QueueApprover)
    approver._stop.set()  # the watcher stops; close() must still record the answer
    reviewer.deny(req.id, "bob")
    reviewer.store.close()  # type: ignore[attr-defined]
    guard.close()
    log = open_audit_log(data)
    try:
        recs = answers(log)
    finally:
        log.close()
    assert [(r["request"], r["status"]) for r in recs] == [(req.id, "denied")]
