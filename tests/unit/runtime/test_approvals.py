"""The approval queue and the Guard's QueueApprover: waiting, answering, receipts, replays,
grouping, caps, plans and cancelling.  Deny paths first-class; no timings asserted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from nacl.signing import SigningKey

import ringfence
from ringfence import Action, DeniedError, Effect
from ringfence.core.approvals import (
    ApprovalLimits,
    Scope,
    Status,
    encode_receipt,
    sign_receipt,
)
from ringfence.errors import ApprovalError
from ringfence.runtime.approvals import ApprovalQueue
from ringfence.runtime.approver import QueueApprover
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.guard import Guard
from ringfence.stores.approvals_memory import MemoryApprovalStore
from ringfence.stores.memory import MemoryAuditStore
from ringfence.testing.clock import FixedClock

from ._support import GuardFactory, records_of

MAIL = """
version: 1
tools:
  send_email:
    resources: {to: recipient}
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
  - id: no-attackers
    effect: deny
    tool: send_email
    when: [{arg: to, endswith: "@evil.test"}]
"""
BOB = {"to": "bob@partner.test", "body": "the report"}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def queue(clock: FixedClock) -> Iterator[ApprovalQueue]:
    q = ApprovalQueue(
        MemoryApprovalStore(),
        SigningKey(b"\x05" * 32),
        clock=clock,
        limits=ApprovalLimits(max_pending_per_session=3, remember_denial_s=60),
    )
    yield q


@pytest.fixture
def policy() -> ringfence.Policy:
    return ringfence.policy_from_text(MAIL)


def make(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog, *, wait_s: float = 30
) -> tuple[Guard, QueueApprover]:
    policy = ringfence.policy_from_text(MAIL)
    approver = QueueApprover(queue, wait_s=wait_s, audit=memory_log, resources=policy.resources_of)
    return make_guard(MAIL, approver=approver), approver


def reviewer(queue: ApprovalQueue, act: Callable[[str], Any]) -> threading.Thread:
    """A thread that waits for the first pending request and ``act``s on its id."""

    def run() -> None:
        version = queue.store.version()
        while not (pending := queue.list()):
            version = queue.store.wait(version, 5)
        act(pending[0].id)

    t = threading.Thread(target=run)
    t.start()
    return t


def call(guard: Guard, args: dict[str, Any] = BOB, **ctx: Any) -> ringfence.Decision:
    ctx = {"agent": "mailer", "user": "alice", "session": "s1", **ctx}
    with guard.context(**ctx):
        return guard.check(guard.action("send_email", dict(args)))


# -- blocking: the caller waits ---------------------------------------------------------------


def test_approved_call_runs_once_and_everything_is_recorded(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, _ = make(make_guard, queue, memory_log)
    ran: list[str] = []

    @guard.protect
    def send_email(to: str, body: str) -> None:
        ran.append(to)

    t = reviewer(queue, lambda rid: queue.approve(rid, "alice", note="expected"))
    with guard.context(agent="mailer", user="alice", session="s1", request="send bob the report"):
        send_email(**BOB)
    t.join()
    assert ran == ["bob@partner.test"]
    decision_rec, answer_rec, receipt_rec, approval_rec, _outcome = records_of(memory_log)
    assert decision_rec["effect"] == "require_approval"
    assert answer_rec["type"] == "approval_answer" and answer_rec["status"] == "approved"
    assert (answer_rec["by"], answer_rec["note"]) == ("alice", "expected")
    assert answer_rec["receipt_id"] == receipt_rec["receipt"]["id"]
    assert answer_rec["decision_id"] == decision_rec["decision_id"]
    assert receipt_rec["type"] == "receipt" and receipt_rec["event"] == "redeemed"
    assert receipt_rec["receipt"]["approver"] == "alice"
    assert receipt_rec["receipt"]["decision"] == decision_rec["decision_id"]
    assert approval_rec["approved"] is True and approval_rec["approver"] == "alice"
    assert receipt_rec["receipt"]["id"] in approval_rec["note"]
    assert "expected" in approval_rec["note"]
    (req,) = queue.list(Status.USED)
    assert req.args == {"to": "bob@partner.test", "body": "[REDACTED]"}
    assert req.request == "send bob the report"
    assert [str(r) for r in req.resources] == ["recipient:bob@partner.test"]


def test_denied_call_does_not_run(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, _ = make(make_guard, queue, memory_log)
    t = reviewer(queue, lambda rid: queue.deny(rid, "bob", note="not today"))
    decision = call(guard)
    t.join()
    assert decision.effect is Effect.DENY
    assert (
        decision.reasons[-1]
        == "not approved by bob: request " + queue.list(Status.DENIED)[0].id + " denied: not today"
    )
    approval = records_of(memory_log, "approval")[0]
    assert (approval["approved"], approval["approver"]) == (False, "bob")
    assert records_of(memory_log, "receipt") == []


def test_no_answer_in_time_is_a_deny_and_the_request_expires(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog, clock: FixedClock
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0.01)
    real_wait = queue.wait

    def wait_and_pass_deadline(rid: str, timeout: float, **kw: Any) -> Any:
        clock.advance(1)  # the request's deadline (wait_s after it was made) passes
        return real_wait(rid, timeout, **kw)

    queue.wait = wait_and_pass_deadline  # type: ignore[method-assign]
    decision = call(guard)
    assert decision.effect is Effect.DENY
    assert "a timeout is a deny" in decision.reasons[-1]
    (req,) = queue.list(None)
    assert req.status is Status.EXPIRED
    with pytest.raises(ApprovalError) as info:  # too late to approve now
        queue.approve(req.id, "alice")
    assert info.value.code == "approval.not_pending"


def test_timeout_without_passing_the_deadline_is_still_a_deny(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0.01)
    decision = call(guard)
    assert decision.effect is Effect.DENY and "a timeout is a deny" in decision.reasons[-1]


def test_cancel_while_waiting_is_a_deny(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, _ = make(make_guard, queue, memory_log)
    t = reviewer(queue, lambda rid: queue.cancel(Scope(agent="mailer"), by="kill-switch"))
    decision = call(guard)
    t.join()
    assert decision.effect is Effect.DENY
    assert "not approved by kill-switch" in decision.reasons[-1]
    assert "cancelled" in decision.reasons[-1]


def test_a_deny_rule_is_never_sent_for_approval(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0)
    decision = call(guard, {"to": "x@evil.test", "body": ""})
    assert decision.effect is Effect.DENY and decision.rules == ("no-attackers",)
    assert queue.list(None) == []


def test_grouped_waiters_share_one_approval_which_runs_once(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, _ = make(make_guard, queue, memory_log)
    results: list[Effect] = []
    joined = threading.Event()

    def caller() -> None:
        results.append(call(guard).effect)

    callers = [threading.Thread(target=caller) for _ in range(2)]
    for t in callers:
        t.start()

    def approve_when_grouped() -> None:
        version = queue.store.version()
        while not ((p := queue.list()) and p[0].count == 2):
            version = queue.store.wait(version, 5)
        joined.set()
        queue.approve(p[0].id, "alice")

    approve_when_grouped()
    for t in callers:
        t.join()
    assert joined.is_set()
    assert sorted(results) == [Effect.ALLOW, Effect.DENY]
    assert len(queue.list(None)) == 1  # one request shown to the reviewer, asked twice


# -- non-blocking (the MCP gateway): deny now, retry after approval ---------------------------


def test_nonblocking_first_call_is_pending_and_a_retry_after_approval_runs_once(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, approver = make(make_guard, queue, memory_log, wait_s=0)
    first = call(guard)
    assert first.effect is Effect.DENY
    (req,) = queue.list()
    assert f"approval pending: request {req.id}" in first.reasons[-1]
    with guard.context(agent="mailer", user="alice", session="s1"):
        assert approver.queue.latest_for(guard.action("send_email", dict(BOB))) == req
    retry = call(guard)  # still pending: joins, asks nobody new
    assert retry.effect is Effect.DENY and "asked 2 times" in retry.reasons[-1]
    assert [r.count for r in queue.list(None)] == [2]

    queue.approve(req.id, "alice")
    assert call(guard).effect is Effect.ALLOW
    third = call(guard)  # the receipt is spent: a new request
    assert third.effect is Effect.DENY and "approval pending" in third.reasons[-1]
    assert len(queue.list(None)) == 2
    assert [r["event"] for r in records_of(memory_log, "receipt")] == ["redeemed"]


def test_nonblocking_denial_is_remembered_then_forgotten(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog, clock: FixedClock
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0)
    call(guard)
    (req,) = queue.list()
    queue.deny(req.id, "bob", note="no")
    again = call(guard)
    assert again.effect is Effect.DENY
    assert "an identical call was denied" in again.reasons[-1] and "bob" in again.reasons[-1]
    assert len(queue.list(None)) == 1  # not asked again
    clock.advance(61)
    later = call(guard)
    assert "approval pending" in later.reasons[-1]
    assert len(queue.list(None)) == 2


def test_an_approval_under_an_old_policy_is_refused_and_asked_again(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, approver = make(make_guard, queue, memory_log, wait_s=0)
    call(guard)
    (req,) = queue.list()
    queue.approve(req.id, "alice")
    newer = make_guard(MAIL + "\n# a new version\n  - {id: extra, effect: allow, tool: x}\n")
    newer.approver = approver
    decision = call(newer)
    assert decision.effect is Effect.DENY and "approval pending" in decision.reasons[-1]
    (refused,) = records_of(memory_log, "receipt")
    assert (refused["event"], refused["problem"]) == ("refused", "approval.receipt.policy")


def test_caps_deny_and_name_the_cap(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0)
    for i in range(3):
        call(guard, {"to": f"p{i}@partner.test", "body": ""})
    decision = call(guard, {"to": "p3@partner.test", "body": ""})
    assert decision.effect is Effect.DENY
    assert "max_pending_per_session=3" in decision.reasons[-1]
    assert "not approved by ringfence" in decision.reasons[-1]
    assert len(queue.list(None)) == 3
    # an identical call to a pending one still groups, cap or not
    assert "asked 2 times" in call(guard, {"to": "p0@partner.test", "body": ""}).reasons[-1]


def test_an_audit_failure_on_redemption_denies(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    broken_store = MemoryAuditStore()
    broken = AuditLog(broken_store, SigningKey.generate(), checkpoint_every=10**6)
    broken_store.fail_writes = True
    guard, approver = make(make_guard, queue, memory_log, wait_s=0)
    approver.bind_audit(broken)
    call(guard)
    queue.approve(queue.list()[0].id, "alice")
    decision = call(guard)
    assert decision.effect is Effect.DENY and "audit log unavailable" in decision.reasons[-1]
    assert queue.list(Status.USED)  # the receipt is spent: fail closed
    broken_store.fail_writes = False
    broken.close()


# -- plans ------------------------------------------------------------------------------------


def test_an_approved_plan_lets_each_exact_call_through_once(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog, policy: Any
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0)
    carol = {"to": "carol@partner.test", "body": "b"}
    receipt = queue.approve_plan(
        [("tool_call", "send_email", BOB), ("tool_call", "send_email", carol)],
        agent="mailer",
        user="alice",
        session="s1",
        policy_version=policy.version,
        approver="alice",
    )
    assert len(receipt.steps) == 2
    assert call(guard).effect is Effect.ALLOW
    assert call(guard, carol).effect is Effect.ALLOW
    assert "approval pending" in call(guard).reasons[-1]  # each step once
    assert "approval pending" in call(guard, {"to": "dan@partner.test", "body": ""}).reasons[-1]
    steps = [r["step"] for r in records_of(memory_log, "receipt")]
    assert steps == [0, 1]


@pytest.mark.parametrize(
    "ctx", [{"session": "s2"}, {"agent": "other"}, {"user": "mallory"}, {"session": None}]
)
def test_a_plan_is_not_used_outside_its_agent_user_and_session(
    make_guard: GuardFactory,
    queue: ApprovalQueue,
    memory_log: AuditLog,
    policy: Any,
    ctx: dict[str, Any],
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0)
    queue.approve_plan(
        [("tool_call", "send_email", BOB)],
        agent="mailer",
        user="alice",
        session="s1",
        policy_version=policy.version,
        approver="alice",
    )
    assert call(guard, **ctx).effect is Effect.DENY


def test_an_expired_or_revoked_plan_is_not_used(
    make_guard: GuardFactory,
    queue: ApprovalQueue,
    memory_log: AuditLog,
    policy: Any,
    clock: FixedClock,
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0)
    plan = dict(agent="mailer", user="alice", session="s1", policy_version=policy.version)
    queue.approve_plan([("tool_call", "send_email", BOB)], approver="a", ttl_s=10, **plan)
    clock.advance(10)
    assert call(guard).effect is Effect.DENY
    queue.approve_plan([("tool_call", "send_email", BOB)], approver="a", **plan)
    queue.cancel(Scope(session="s1"), by="ops")
    assert call(guard).effect is Effect.DENY


def test_an_agent_submitted_plan_is_approved_like_a_request(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog, policy: Any
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0)
    sub = queue.submit_plan(
        [("tool_call", "send_email", BOB)],
        agent="mailer",
        user="alice",
        session="s1",
        policy_version=policy.version,
        reason="the weekly reports",
    )
    assert sub.request is not None and sub.request.kind == "plan"
    assert call(guard).effect is Effect.DENY  # not approved yet
    queue.approve(sub.request.id, "alice")
    assert call(guard).effect is Effect.ALLOW


def test_plan_size_is_checked(queue: ApprovalQueue, policy: Any) -> None:
    kw = dict(agent="a", session="s", policy_version=policy.version)
    with pytest.raises(ApprovalError) as info:
        queue.submit_plan([], **kw)  # type: ignore[arg-type]
    assert info.value.code == "approval.plan"
    with pytest.raises(ApprovalError) as info:
        queue.submit_plan([("tool_call", "t", {"n": i}) for i in range(21)], **kw)  # type: ignore[arg-type]
    assert info.value.code == "approval.plan"


# -- the Python API: answering ----------------------------------------------------------------


@pytest.fixture
def pending(queue: ApprovalQueue, policy: Any) -> tuple[str, Action, str]:
    """A pending request: (its id, the action, the policy version)."""
    action = Action(
        kind="tool_call",
        tool="send_email",
        args=dict(BOB),
        agent="mailer",
        user="alice",
        session="s1",
    )
    decision = policy.evaluate(action, "d-1")
    sub = queue.submit(action, decision)
    assert sub.request is not None
    return sub.request.id, action, policy.version


def test_an_agent_cannot_approve_its_own_request(
    queue: ApprovalQueue, pending: tuple[str, Action, str]
) -> None:
    with pytest.raises(ApprovalError) as info:
        queue.approve(pending[0], "mailer")
    assert info.value.code == "approval.approver"
    for name in ("", "  "):
        with pytest.raises(ApprovalError):
            queue.approve(pending[0], name)
    assert queue.show(pending[0]).status is Status.PENDING


def test_only_listed_approvers_may_answer(clock: FixedClock, policy: Any) -> None:
    q = ApprovalQueue(MemoryApprovalStore(), SigningKey.generate(), clock=clock, approvers={"sec"})
    action = Action(kind="tool_call", tool="send_email", args=dict(BOB), agent="mailer")
    sub = q.submit(action, policy.evaluate(action, "d"))
    assert sub.request is not None
    for act in (q.approve, q.deny):
        with pytest.raises(ApprovalError) as info:
            act(sub.request.id, "alice")
        assert info.value.code == "approval.approver"
    q.approve(sub.request.id, "sec")


@pytest.mark.parametrize("ttl", [0, -1, 3601])
def test_receipt_lifetime_is_bounded(
    queue: ApprovalQueue, pending: tuple[str, Action, str], ttl: float
) -> None:
    with pytest.raises(ApprovalError) as info:
        queue.approve(pending[0], "alice", ttl_s=ttl)
    assert info.value.code == "approval.ttl"


def test_a_request_is_answered_once(queue: ApprovalQueue, pending: tuple[str, Action, str]) -> None:
    queue.approve(pending[0], "alice")
    for act in (lambda: queue.approve(pending[0], "bob"), lambda: queue.deny(pending[0], "bob")):
        with pytest.raises(ApprovalError) as info:
            act()
        assert info.value.code == "approval.not_pending"
    assert queue.show(pending[0]).decided_by == "alice"


def test_unknown_requests(queue: ApprovalQueue) -> None:
    for act in (queue.show, lambda i: queue.approve(i, "a"), lambda i: queue.deny(i, "a")):
        with pytest.raises(ApprovalError) as info:
            act("ap-nope")
        assert info.value.code == "approval.not_found"


# -- the Python API: redeeming and replays ----------------------------------------------------


def test_redeem_returns_the_step_and_spends_it(
    queue: ApprovalQueue, pending: tuple[str, Action, str]
) -> None:
    rid, action, version = pending
    receipt = queue.approve(rid, "alice")
    used = queue.redeem(encode_receipt(receipt), action, policy_version=version, decision_id="d-2")
    assert used.receipt == receipt and used.step == 0
    assert queue.show(rid).status is Status.USED


def _other(action: Action, **changes: Any) -> Action:
    return msgspec.structs.replace(action, **changes)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"args": {"to": "eve@partner.test", "body": "the report"}}, "approval.receipt.arguments"),
        ({"args": {**BOB, "body": "the report!"}}, "approval.receipt.arguments"),
        ({"session": "s2"}, "approval.receipt.session"),
        ({"agent": "other"}, "approval.receipt.agent"),
        ({"user": "mallory"}, "approval.receipt.user"),
        ({"tool": "send_sms"}, "approval.receipt.tool"),
    ],
)
def test_replay_for_another_call_is_refused_and_does_not_spend_it(
    queue: ApprovalQueue, pending: tuple[str, Action, str], change: dict[str, Any], code: str
) -> None:
    rid, action, version = pending
    receipt = queue.approve(rid, "alice")
    with pytest.raises(ApprovalError) as info:
        queue.redeem(receipt, _other(action, **change), policy_version=version)
    assert info.value.code == code
    assert queue.redeem(receipt, action, policy_version=version).step == 0


def test_replay_a_second_time_is_refused(
    queue: ApprovalQueue, pending: tuple[str, Action, str]
) -> None:
    rid, action, version = pending
    receipt = queue.approve(rid, "alice")
    queue.redeem(receipt, action, policy_version=version)
    with pytest.raises(ApprovalError) as info:
        queue.redeem(receipt, action, policy_version=version)
    assert info.value.code == "approval.receipt.used"


def test_replay_after_expiry_is_refused(
    queue: ApprovalQueue, pending: tuple[str, Action, str], clock: FixedClock
) -> None:
    rid, action, version = pending
    receipt = queue.approve(rid, "alice", ttl_s=30)
    clock.advance(30)
    with pytest.raises(ApprovalError) as info:
        queue.redeem(receipt, action, policy_version=version)
    assert info.value.code == "approval.receipt.expired"


def test_replay_under_another_policy_version_is_refused(
    queue: ApprovalQueue, pending: tuple[str, Action, str]
) -> None:
    rid, action, _ = pending
    receipt = queue.approve(rid, "alice")
    with pytest.raises(ApprovalError) as info:
        queue.redeem(receipt, action, policy_version="sha256:" + "0" * 64)
    assert info.value.code == "approval.receipt.policy"


def test_forged_and_tampered_receipts_are_refused(
    queue: ApprovalQueue, pending: tuple[str, Action, str]
) -> None:
    rid, action, version = pending
    receipt = queue.approve(rid, "alice", ttl_s=10)
    longer = msgspec.structs.replace(receipt, expires_ns=receipt.expires_ns + 10**15)
    forged = sign_receipt(SigningKey.generate(), longer)
    garbled = encode_receipt(receipt)[:-4] + "AAAA"
    for bad in (longer, forged, garbled, "not a receipt"):
        with pytest.raises(ApprovalError) as info:
            queue.redeem(bad, action, policy_version=version)
        assert info.value.code in ("approval.receipt.signature", "approval.receipt.malformed")
    assert queue.show(rid).status is Status.APPROVED  # nothing was spent


def test_a_receipt_signed_by_the_key_but_never_stored_is_refused(
    queue: ApprovalQueue, pending: tuple[str, Action, str]
) -> None:
    rid, action, version = pending
    real = queue.approve(rid, "alice")
    twin = sign_receipt(queue._key, msgspec.structs.replace(real, id="rc-twin"))
    with pytest.raises(ApprovalError) as info:
        queue.redeem(twin, action, policy_version=version)
    assert info.value.code == "approval.receipt.unknown"


def test_a_revoked_receipt_is_refused(
    queue: ApprovalQueue, pending: tuple[str, Action, str]
) -> None:
    rid, action, version = pending
    receipt = queue.approve(rid, "alice")
    assert queue.cancel(Scope(tool="send_email"), by="ops") == [rid]
    with pytest.raises(ApprovalError) as info:
        queue.redeem(receipt, action, policy_version=version)
    assert info.value.code == "approval.receipt.revoked"


def test_a_receipt_from_a_rotated_key_still_verifies_when_listed(
    clock: FixedClock, policy: Any
) -> None:
    store = MemoryApprovalStore()
    old = ApprovalQueue(store, SigningKey.generate(), clock=clock)
    action = Action(kind="tool_call", tool="send_email", args=dict(BOB), agent="mailer")
    sub = old.submit(action, policy.evaluate(action, "d"))
    assert sub.request is not None
    receipt = old.approve(sub.request.id, "alice")
    new_key = SigningKey.generate()
    strict = ApprovalQueue(store, new_key, clock=clock)
    with pytest.raises(ApprovalError):
        strict.redeem(receipt, action, policy_version=policy.version)
    rotating = ApprovalQueue(store, new_key, clock=clock, verify_keys=old.keys)
    assert rotating.redeem(receipt, action, policy_version=policy.version).step == 0


def test_cancel_with_an_empty_scope_cancels_nothing(
    queue: ApprovalQueue, pending: tuple[str, Action, str]
) -> None:
    assert queue.cancel(Scope()) == []
    assert queue.cancel(Scope(user="alice"), by="ops", note="user offboarded") == [pending[0]]
    req = queue.show(pending[0])
    assert (req.status, req.decided_by, req.note) == (Status.CANCELLED, "ops", "user offboarded")


def test_wait_on_an_answered_request_returns_at_once(
    queue: ApprovalQueue, pending: tuple[str, Action, str]
) -> None:
    queue.deny(pending[0], "bob")
    assert queue.wait(pending[0], 3600).status is Status.DENIED
    with pytest.raises(ApprovalError):
        queue.wait("ap-nope", 1)


def test_resources_that_cannot_be_derived_do_not_block_the_request(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    def boom(action: Action) -> Any:
        raise RuntimeError("no")

    approver = QueueApprover(queue, wait_s=0, audit=memory_log, resources=boom)
    guard = make_guard(MAIL, approver=approver)
    assert "approval pending" in call(guard).reasons[-1]
    # The approver's own derivation failed; the reviewer still sees what the Guard derived.
    assert [str(r) for r in queue.list()[0].resources] == ["recipient:bob@partner.test"]


def test_denied_error_is_raised_by_protected_functions(
    make_guard: GuardFactory, queue: ApprovalQueue, memory_log: AuditLog
) -> None:
    guard, _ = make(make_guard, queue, memory_log, wait_s=0)

    @guard.protect
    def send_email(to: str, body: str) -> None:
        raise AssertionError("must not run")

    with guard.context(agent="mailer", session="s1"), pytest.raises(DeniedError) as info:
        send_email(**BOB)
    assert "approval pending" in str(info.value)


def test_a_failing_store_is_a_deny(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    class Broken(MemoryApprovalStore):
        def submit(self, *a: Any, **kw: Any) -> Any:
            raise OSError("disk full")

    q = ApprovalQueue(Broken(), SigningKey.generate())
    guard = make_guard(MAIL, approver=QueueApprover(q, wait_s=0, audit=memory_log))
    decision = call(guard)
    assert decision.effect is Effect.DENY
    assert decision.reasons[-1] == "not approved by ringfence: approver failed: OSError"


def test_known_secret_values_are_redacted_from_requests(clock: FixedClock, policy: Any) -> None:
    from ringfence.core.redact import Redactor

    current = [Redactor({"db": "correct-horse-battery"})]
    q = ApprovalQueue(
        MemoryApprovalStore(), SigningKey.generate(), clock=clock, redactor=lambda: current[0]
    )
    action = Action(
        kind="tool_call",
        tool="send_email",
        args={"to": "bob@partner.test", "body": "pw correct-horse-battery"},
        agent="mailer",
        reason="sending correct-horse-battery",
    )
    sub = q.submit(action, policy.evaluate(action, "d"))
    assert sub.request is not None
    assert "correct-horse" not in repr(sub.request)
    assert sub.request.args["to"] == "bob@partner.test"


def test_a_queue_without_the_signing_key_redeems_but_cannot_approve(
    tmp_path: Any, policy: Any
) -> None:
    from ringfence.errors import ConfigError
    from ringfence.runtime.approvals import open_approval_queue

    agent_side = open_approval_queue(tmp_path, signing=False)
    reviewer_side = open_approval_queue(tmp_path)
    action = Action(kind="tool_call", tool="send_email", args=dict(BOB), agent="mailer")
    sub = agent_side.submit(action, policy.evaluate(action, "d"))
    assert sub.request is not None
    with pytest.raises(ApprovalError) as info:
        agent_side.approve(sub.request.id, "alice")
    assert info.value.code == "approval.key"
    receipt = reviewer_side.approve(sub.request.id, "alice")
    assert agent_side.redeem(receipt, action, policy_version=policy.version).step == 0
    with pytest.raises(ConfigError):
        ApprovalQueue(MemoryApprovalStore(), None)
    agent_side.store.close()
    reviewer_side.store.close()
