"""The ApprovalStore contract, run against the memory and the SQLite store; SQLite across
connections (as two processes would use it); the receipt key file."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nacl.signing import SigningKey

from ringfence.core.action import Action
from ringfence.core.approvals import (
    ApprovalLimits,
    PendingRequest,
    Problem,
    Receipt,
    Scope,
    Status,
    Step,
    args_hash,
    new_request,
    plan_request,
    sign_receipt,
)
from ringfence.core.decision import Decision, Effect
from ringfence.errors import ConfigError
from ringfence.runtime.ports import ApprovalStore
from ringfence.stores.approvals import (
    SQLiteApprovalStore,
    load_approval_public_key,
    load_or_create_approval_key,
)
from ringfence.stores.approvals_memory import MemoryApprovalStore

T0 = 1_700_000_000_000_000_000
S = 10**9
POLICY = "sha256:" + "ab" * 32
KEY = SigningKey(b"\x03" * 32)
LIMITS = ApprovalLimits(
    max_pending_per_session=3, max_requests_per_session=6, max_requests_per_window=8, window_s=60
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApprovalStore]:
    s: Any = (
        MemoryApprovalStore()
        if request.param == "memory"
        else SQLiteApprovalStore(tmp_path / "approvals.sqlite", poll_s=0.005)
    )
    yield s
    s.close()


_n = iter(range(1, 10**6))


def req(*, now: int = T0, timeout: int = 60 * S, **changes: Any) -> PendingRequest:
    fields: dict[str, Any] = {
        "kind": "tool_call",
        "tool": "send_email",
        "args": {"to": "bob@partner.test"},
        "agent": "mailer",
        "user": "alice",
        "session": "s1",
    }
    fields.update(changes)
    decision = Decision(Effect.REQUIRE_APPROVAL, ("r",), ("why",), POLICY, f"d-{next(_n)}")
    return new_request(
        Action(**fields), decision, request_id=f"ap-{next(_n)}", now_ns=now, timeout_ns=timeout
    )


def receipt_for(r: PendingRequest, *, steps: tuple[Step, ...] | None = None, **kw: Any) -> Receipt:
    fields: dict[str, Any] = {
        "id": f"rc-{r.id}",
        "request": r.id,
        "decision": r.decision_id,
        "agent": r.agent,
        "user": r.user,
        "session": r.session,
        "steps": steps or (Step(r.kind, r.tool, r.args_hash),),
        "policy": POLICY,
        "approver": "alice",
        "issued_ns": T0,
        "expires_ns": T0 + 300 * S,
        "nonce": "00",
    }
    fields.update(kw)
    return sign_receipt(KEY, Receipt(**fields))


def approved(store: ApprovalStore, r: PendingRequest, **kw: Any) -> Receipt:
    assert store.submit(r, None, T0).request is not None
    rc = receipt_for(r, **kw)
    out = store.decide(r.id, Status.APPROVED, by="alice", note="ok", now_ns=T0, receipt=rc)
    assert isinstance(out, PendingRequest)
    return rc


# -- submitting and grouping ------------------------------------------------------------------


def test_submit_stores_and_reads_back(store: ApprovalStore) -> None:
    r = req()
    sub = store.submit(r, LIMITS, T0)
    assert sub.request == r and not sub.joined and sub.refused is None
    assert store.get(r.id) == r
    assert store.latest(r.group) == r
    assert store.get("ap-nope") is None and store.latest("g:nope") is None


def test_identical_pending_requests_are_grouped(store: ApprovalStore) -> None:
    first = req()
    store.submit(first, LIMITS, T0)
    again = store.submit(req(now=T0 + S, timeout=120 * S), LIMITS, T0 + S)
    assert again.joined and again.request is not None
    assert again.request.id == first.id and again.request.count == 2
    assert again.request.deadline_ns == T0 + 121 * S  # the later waiter keeps it open
    stored = store.get(first.id)
    assert stored is not None and stored.count == 2 and stored.deadline_ns == T0 + 121 * S
    assert len(store.requests(status=Status.PENDING, limit=10, now_ns=T0 + S)) == 1


def test_a_different_call_is_not_grouped(store: ApprovalStore) -> None:
    a = store.submit(req(), LIMITS, T0)
    b = store.submit(req(args={"to": "carol@partner.test"}), LIMITS, T0)
    assert not b.joined and b.request is not None and a.request is not None
    assert b.request.id != a.request.id


def test_an_expired_request_is_not_joined(store: ApprovalStore) -> None:
    first = req(timeout=S)
    store.submit(first, LIMITS, T0)
    later = req(now=T0 + 2 * S)
    sub = store.submit(later, LIMITS, T0 + 2 * S)
    assert not sub.joined and sub.request == later
    assert store.latest(first.group) == later


def test_answered_requests_are_not_joined(store: ApprovalStore) -> None:
    first = req()
    store.submit(first, LIMITS, T0)
    store.decide(first.id, Status.DENIED, by="bob", note="", now_ns=T0)
    sub = store.submit(req(), LIMITS, T0)
    assert not sub.joined and sub.request is not None and sub.request.id != first.id


# -- caps -------------------------------------------------------------------------------------


def test_cap_on_pending_requests_per_session(store: ApprovalStore) -> None:
    for i in range(3):
        assert store.submit(req(args={"n": i}), LIMITS, T0).request is not None
    sub = store.submit(req(args={"n": 3}), LIMITS, T0)
    assert sub.request is None and sub.refused is not None
    assert "max_pending_per_session=3" in sub.refused
    assert len(store.requests(status=None, limit=10, now_ns=T0)) == 3  # nothing stored
    # another session is not affected
    assert store.submit(req(args={"n": 3}, session="s2"), LIMITS, T0).request is not None


def test_joining_does_not_count_against_caps(store: ApprovalStore) -> None:
    for i in range(3):
        store.submit(req(args={"n": i}), LIMITS, T0)
    sub = store.submit(req(args={"n": 0}), LIMITS, T0)
    assert sub.joined and sub.refused is None


def test_answered_requests_free_pending_slots_but_count_per_session(store: ApprovalStore) -> None:
    for i in range(6):
        r = req(args={"n": i})
        assert store.submit(r, LIMITS, T0).request is not None, i
        store.decide(r.id, Status.DENIED, by="bob", note="", now_ns=T0)
    sub = store.submit(req(args={"n": 6}), LIMITS, T0)
    assert sub.request is None and "max_requests_per_session=6" in (sub.refused or "")


def test_cap_per_agent_per_window_spans_sessions_and_slides(store: ApprovalStore) -> None:
    for i in range(8):
        r = req(args={"n": i}, session=f"s{i}")
        assert store.submit(r, LIMITS, T0).request is not None
    sub = store.submit(req(args={"n": 8}, session="s9"), LIMITS, T0)
    assert sub.request is None and "max_requests_per_window=8" in (sub.refused or "")
    other_agent = req(args={"n": 8}, session="s9", agent="helper")
    assert store.submit(other_agent, LIMITS, T0).request is not None
    later = T0 + 61 * S  # the window has moved past the first eight
    assert store.submit(req(now=later, args={"n": 9}, session="s9"), LIMITS, later).request


def test_sessionless_requests_are_capped_per_agent(store: ApprovalStore) -> None:
    for i in range(3):
        assert store.submit(req(args={"n": i}, session=None), LIMITS, T0).request is not None
    assert store.submit(req(args={"n": 3}, session=None), LIMITS, T0).request is None
    assert store.submit(req(args={"n": 3}, session=None, agent="b"), LIMITS, T0).request


def test_no_limits_means_no_caps(store: ApprovalStore) -> None:
    for i in range(10):
        assert store.submit(req(args={"n": i}), None, T0).request is not None


# -- answering --------------------------------------------------------------------------------


def test_decide_answers_a_pending_request_once(store: ApprovalStore) -> None:
    r = req()
    store.submit(r, LIMITS, T0)
    rc = receipt_for(r)
    out = store.decide(r.id, Status.APPROVED, by="alice", note="fine", now_ns=T0 + S, receipt=rc)
    assert isinstance(out, PendingRequest)
    assert (out.status, out.decided_by, out.decided_ns, out.note) == (
        Status.APPROVED,
        "alice",
        T0 + S,
        "fine",
    )
    assert store.get(r.id) == out and out.receipt == rc
    for status in (Status.APPROVED, Status.DENIED, Status.CANCELLED, Status.EXPIRED):
        again = store.decide(r.id, status, by="bob", note="", now_ns=T0 + S)
        assert isinstance(again, Problem) and again.code == "approval.not_pending"
    assert store.get(r.id) == out


def test_decide_refuses_a_request_past_its_deadline_but_may_expire_it(
    store: ApprovalStore,
) -> None:
    r = req(timeout=S)
    store.submit(r, LIMITS, T0)
    late = T0 + S
    for status in (Status.APPROVED, Status.DENIED):
        problem = store.decide(r.id, status, by="alice", note="", now_ns=late)
        assert isinstance(problem, Problem) and "expired" in problem.message
    out = store.decide(r.id, Status.EXPIRED, by="ringfence", note="", now_ns=late)
    assert isinstance(out, PendingRequest) and out.status is Status.EXPIRED


def test_decide_unknown(store: ApprovalStore) -> None:
    out = store.decide("ap-nope", Status.DENIED, by="a", note="", now_ns=T0)
    assert isinstance(out, Problem) and out.code == "approval.not_found"


def test_requests_by_effective_status(store: ApprovalStore) -> None:
    p, d, e = req(args={"n": 1}), req(args={"n": 2}), req(args={"n": 3}, timeout=S)
    for r in (p, d, e):
        store.submit(r, None, T0)
    store.decide(d.id, Status.DENIED, by="a", note="", now_ns=T0)
    now = T0 + 2 * S
    ids = lambda s: [r.id for r in store.requests(status=s, limit=10, now_ns=now)]  # noqa: E731
    assert ids(Status.PENDING) == [p.id]
    assert ids(Status.DENIED) == [d.id]
    assert ids(Status.EXPIRED) == [e.id]
    assert sorted(ids(None)) == sorted([p.id, d.id, e.id])
    assert len(store.requests(status=None, limit=2, now_ns=now)) == 2


# -- redeeming --------------------------------------------------------------------------------


def test_a_receipt_is_redeemed_once(store: ApprovalStore) -> None:
    r = req()
    rc = approved(store, r)
    assert store.redeem(rc, (0,), decision_id="d-x", now_ns=T0) == 0
    assert store.get(r.id).status is Status.USED  # type: ignore[union-attr]
    again = store.redeem(rc, (0,), decision_id="d-y", now_ns=T0)
    assert isinstance(again, Problem) and again.code == "approval.receipt.used"


def test_a_receipt_the_store_did_not_issue_is_refused(store: ApprovalStore) -> None:
    r = req()
    rc = approved(store, r)
    for other in (
        receipt_for(r, id="rc-other"),  # same request, another receipt id
        receipt_for(r, nonce="11"),  # same id, other signature: not the stored one
        receipt_for(req(), request="ap-unknown"),
    ):
        problem = store.redeem(other, (0,), decision_id="d", now_ns=T0)
        assert isinstance(problem, Problem) and problem.code == "approval.receipt.unknown"
    assert store.redeem(rc, (0,), decision_id="d", now_ns=T0) == 0  # the real one still works


def test_a_pending_or_denied_request_has_no_receipt_to_redeem(store: ApprovalStore) -> None:
    r = req()
    store.submit(r, None, T0)
    problem = store.redeem(receipt_for(r), (0,), decision_id="d", now_ns=T0)
    assert isinstance(problem, Problem) and problem.code == "approval.receipt.unknown"


def test_plan_steps_are_used_one_by_one(store: ApprovalStore) -> None:
    step = Step("tool_call", "a", args_hash({}))
    plan = plan_request(
        [("tool_call", "a", {})] * 2 + [("tool_call", "b", {})],
        request_id="ap-plan",
        agent="mailer",
        user="alice",
        session="s1",
        policy_version=POLICY,
        now_ns=T0,
        timeout_ns=60 * S,
    )
    assert plan.steps[:2] == (step, step)
    rc = approved(store, plan, steps=plan.steps)
    assert store.redeem(rc, (0, 1), decision_id="d1", now_ns=T0) == 0
    assert store.redeem(rc, (0, 1), decision_id="d2", now_ns=T0) == 1
    assert isinstance(store.redeem(rc, (0, 1), decision_id="d3", now_ns=T0), Problem)
    assert store.get(plan.id).status is Status.APPROVED  # type: ignore[union-attr]
    assert [p.id for p in store.plans("mailer", "s1", T0)] == [plan.id]
    assert store.redeem(rc, (2,), decision_id="d4", now_ns=T0) == 2
    assert store.get(plan.id).status is Status.USED  # type: ignore[union-attr]
    assert store.plans("mailer", "s1", T0) == []


def test_plans_are_found_by_agent_and_session_until_they_expire(store: ApprovalStore) -> None:
    plan = plan_request(
        [("tool_call", "a", {})],
        request_id="ap-p",
        agent="mailer",
        user=None,
        session=None,
        policy_version=POLICY,
        now_ns=T0,
        timeout_ns=60 * S,
    )
    rc = approved(store, plan, steps=plan.steps, expires_ns=T0 + 10 * S)
    assert [p.id for p in store.plans("mailer", None, T0)] == [plan.id]
    assert store.plans("mailer", "s1", T0) == []
    assert store.plans("other", None, T0) == []
    assert store.plans("mailer", None, rc.expires_ns) == []


# -- cancelling -------------------------------------------------------------------------------


def test_cancel_reaches_pending_and_approved_requests_in_scope(store: ApprovalStore) -> None:
    pending = req(args={"n": 1})
    store.submit(pending, None, T0)
    ok = req(args={"n": 2})
    rc = approved(store, ok)
    other_session = req(args={"n": 3}, session="s2")
    store.submit(other_session, None, T0)
    denied = req(args={"n": 4})
    store.submit(denied, None, T0)
    store.decide(denied.id, Status.DENIED, by="bob", note="", now_ns=T0)

    assert store.cancel(Scope(), by="ops", note="", now_ns=T0) == []
    done = store.cancel(Scope(session="s1"), by="ops", note="kill switch", now_ns=T0)
    assert sorted(done) == sorted([pending.id, ok.id])
    assert store.get(pending.id).status is Status.CANCELLED  # type: ignore[union-attr]
    revoked = store.get(ok.id)
    assert revoked is not None and revoked.status is Status.REVOKED
    assert (revoked.decided_by, revoked.note) == ("ops", "kill switch")
    assert store.get(other_session.id).status is Status.PENDING  # type: ignore[union-attr]
    assert store.get(denied.id).status is Status.DENIED  # type: ignore[union-attr]
    problem = store.redeem(rc, (0,), decision_id="d", now_ns=T0)
    assert isinstance(problem, Problem) and problem.code == "approval.receipt.revoked"
    assert store.cancel(Scope(everything=True), by="ops", note="", now_ns=T0) == [other_session.id]


def test_cancel_by_tool_reaches_plans_naming_it(store: ApprovalStore) -> None:
    plan = plan_request(
        [("tool_call", "a", {}), ("tool_call", "wire", {})],
        request_id="ap-p",
        agent="mailer",
        user=None,
        session="s1",
        policy_version=POLICY,
        now_ns=T0,
        timeout_ns=60 * S,
    )
    store.submit(plan, None, T0)
    assert store.cancel(Scope(tool="other"), by="ops", note="", now_ns=T0) == []
    assert store.cancel(Scope(tool="wire"), by="ops", note="", now_ns=T0) == [plan.id]


# -- waking waiters ---------------------------------------------------------------------------


def test_wait_returns_at_once_when_something_changed(store: ApprovalStore) -> None:
    v = store.version()
    store.submit(req(), None, T0)
    assert store.wait(v, 5) != v


def test_wait_times_out_unchanged(store: ApprovalStore) -> None:
    v = store.version()
    assert store.wait(v, 0.01) == v


def test_wait_wakes_when_another_thread_answers(store: ApprovalStore) -> None:
    r = req()
    store.submit(r, None, T0)
    v = store.version()
    t = threading.Timer(0.02, lambda: store.decide(r.id, Status.DENIED, by="a", note="", now_ns=T0))
    t.start()
    while store.get(r.id).status is Status.PENDING:  # type: ignore[union-attr]
        v = store.wait(v, 5)
    t.join()


# -- SQLite across connections (as two processes) ---------------------------------------------


def test_sqlite_two_connections_share_requests_and_wake_each_other(tmp_path: Path) -> None:
    agent = SQLiteApprovalStore(tmp_path / "a.sqlite", poll_s=0.005)
    reviewer = SQLiteApprovalStore(tmp_path / "a.sqlite")
    try:
        r = req()
        agent.submit(r, LIMITS, T0)
        assert [x.id for x in reviewer.requests(status=Status.PENDING, limit=5, now_ns=T0)] == [
            r.id
        ]
        v = agent.version()
        rc = receipt_for(r)
        reviewer.decide(r.id, Status.APPROVED, by="alice", note="", now_ns=T0, receipt=rc)
        assert agent.wait(v, 5) != v  # noticed through PRAGMA data_version
        assert agent.get(r.id).receipt == rc  # type: ignore[union-attr]
    finally:
        agent.close()
        reviewer.close()


def test_sqlite_concurrent_redemptions_from_many_connections_succeed_once(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    first = SQLiteApprovalStore(path)
    r = req()
    rc = approved(first, r)
    stores = [SQLiteApprovalStore(path) for _ in range(6)]
    results: list[int | Problem] = []
    barrier = threading.Barrier(len(stores))

    def redeem(s: SQLiteApprovalStore) -> None:
        barrier.wait()
        results.append(s.redeem(rc, (0,), decision_id="d", now_ns=T0))

    threads = [threading.Thread(target=redeem, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in [first, *stores]:
        s.close()
    assert results.count(0) == 1
    assert all(
        isinstance(x, Problem) and x.code == "approval.receipt.used" for x in results if x != 0
    )


def test_sqlite_concurrent_answers_from_many_connections_succeed_once(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    first = SQLiteApprovalStore(path)
    r = req()
    first.submit(r, None, T0)
    stores = [SQLiteApprovalStore(path) for _ in range(6)]
    results: list[Any] = []
    barrier = threading.Barrier(len(stores))

    def answer(i: int, s: SQLiteApprovalStore) -> None:
        barrier.wait()
        status = Status.APPROVED if i % 2 else Status.DENIED
        rc = receipt_for(r, id=f"rc-{i}") if i % 2 else None
        results.append(s.decide(r.id, status, by=f"r{i}", note="", now_ns=T0, receipt=rc))

    threads = [threading.Thread(target=answer, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [x for x in results if isinstance(x, PendingRequest)]
    assert len(winners) == 1
    assert first.get(r.id) == winners[0]
    for s in [first, *stores]:
        s.close()


def test_sqlite_round_trips_every_field(tmp_path: Path) -> None:
    s = SQLiteApprovalStore(tmp_path / "a.sqlite")
    r = msgspec.structs.replace(req(args={"nested": {"a": [1, 2.5, None, "é"]}}), roles=("x",))
    s.submit(r, None, T0)
    assert s.get(r.id) == r
    s.close()


def test_sqlite_unusable_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError):
        SQLiteApprovalStore(tmp_path / "file" / "a.sqlite")


# -- the key file -----------------------------------------------------------------------------


def test_key_is_created_private_and_reloaded(tmp_path: Path) -> None:
    key = load_or_create_approval_key(tmp_path / "keys")
    path = tmp_path / "keys" / "approvals-signing.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert bytes(load_or_create_approval_key(tmp_path / "keys")) == bytes(key)
    names = sorted(p.name for p in (tmp_path / "keys").iterdir())
    assert names == ["approvals-signing.key", "approvals-signing.pub"]  # no temp file left
    assert load_approval_public_key(tmp_path / "keys") == key.verify_key


def test_public_key_alone(tmp_path: Path) -> None:
    public = load_approval_public_key(tmp_path)  # no pair yet: one is made
    key = load_or_create_approval_key(tmp_path)
    assert key.verify_key == public
    (tmp_path / "approvals-signing.pub").unlink()  # an older folder: written from the key
    assert load_or_create_approval_key(tmp_path) == key
    assert (tmp_path / "approvals-signing.pub").exists()
    (tmp_path / "approvals-signing.key").unlink()  # the agent's side: public key only
    assert load_approval_public_key(tmp_path) == public
    (tmp_path / "approvals-signing.pub").write_text("zz\n")
    with pytest.raises(ConfigError):
        load_approval_public_key(tmp_path)


def test_a_world_readable_key_is_refused(tmp_path: Path) -> None:
    load_or_create_approval_key(tmp_path)
    os.chmod(tmp_path / "approvals-signing.key", 0o644)
    with pytest.raises(ConfigError) as info:
        load_or_create_approval_key(tmp_path)
    assert info.value.code == "config.key_permissions"


def test_a_garbled_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "approvals-signing.key"
    path.write_text("not hex\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        load_or_create_approval_key(tmp_path)
    assert info.value.code == "config.key"


def test_racing_creators_agree_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        keys.append(bytes(load_or_create_approval_key(tmp_path / "k")))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1
