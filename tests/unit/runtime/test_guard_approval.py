"""require_approval: the approver decides; no approver, a "no", or a failing approver denies."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ringfence import Action, ApprovalAnswer, Decision, DeniedError, Effect
from ringfence.runtime.audit import AuditLog
from ringfence.stores.memory import MemoryAuditStore

from ._support import GuardFactory, records_of

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
  - id: internal-mail
    effect: allow
    tool: send_email
    when: [{arg: to, endswith: "@example.com"}]
  - id: external-mail
    effect: require_approval
    tool: send_email
    reason: mail leaving the organisation needs a human
    when: [{not: {arg: to, endswith: "@example.com"}}]
  - id: no-attackers
    effect: deny
    tool: send_email
    when: [{arg: to, endswith: "@evil.test"}]
"""


class RecordingApprover:
    """Answers with ``answer`` and remembers what it was asked."""

    def __init__(self, answer: ApprovalAnswer) -> None:
        self.answer = answer
        self.asked: list[tuple[Action, Decision]] = []

    def __call__(self, action: Action, decision: Decision) -> ApprovalAnswer:
        self.asked.append((action, decision))
        return self.answer


def test_no_approver_means_deny(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(MAIL)
    ran: list[str] = []

    @guard.protect
    def send_email(to: str, body: str = "") -> None:
        ran.append(to)

    with pytest.raises(DeniedError) as info:
        send_email("bob@partner.test", "hi")
    assert ran == []
    decision = info.value.decision
    assert decision.effect is Effect.DENY
    assert decision.rules == ("external-mail", "ringfence:approval")
    assert decision.reasons == (
        "mail leaving the organisation needs a human",
        "not approved by ringfence: approval required but no approver is configured",
    )
    decision_rec, approval = records_of(memory_log)
    assert decision_rec["effect"] == "require_approval"
    assert approval["type"] == "approval"
    assert approval["decision_id"] == decision_rec["decision_id"] == decision.decision_id
    assert approval["approved"] is False
    assert approval["approver"] == "ringfence"


def test_approver_approving_lets_the_call_run(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    approver = RecordingApprover(ApprovalAnswer(True, "alice", "checked with Bob"))
    guard = make_guard(MAIL, approver=approver)
    ran: list[str] = []

    @guard.protect
    def send_email(to: str, body: str = "") -> str:
        ran.append(to)
        return "sent"

    assert send_email("bob@partner.test") == "sent"
    assert ran == ["bob@partner.test"]
    ((action, asked),) = approver.asked
    assert action.tool == "send_email"
    assert action.args == {"to": "bob@partner.test", "body": ""}  # bound, defaults applied
    assert asked.effect is Effect.REQUIRE_APPROVAL
    assert [r["type"] for r in records_of(memory_log)] == ["decision", "approval", "outcome"]
    approval = records_of(memory_log, "approval")[0]
    assert approval["approved"] is True
    assert approval["approver"] == "alice"
    assert approval["note"] == "checked with Bob"
    assert approval["decision_id"] == asked.decision_id


def test_approved_decision_says_who_approved(make_guard: GuardFactory) -> None:
    approver = RecordingApprover(ApprovalAnswer(True, "alice"))
    guard = make_guard(MAIL, approver=approver)
    decision = guard.check(guard.action("send_email", {"to": "bob@partner.test"}))
    assert decision.effect is Effect.ALLOW
    assert decision.allowed
    assert decision.rules == ("external-mail", "ringfence:approval")
    assert "approved by alice" in decision.reasons
    assert guard.authorize(guard.action("send_email", {"to": "x@partner.test"})).allowed


def test_approver_saying_no_denies(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    approver = RecordingApprover(ApprovalAnswer(False, "carol", "not today"))
    guard = make_guard(MAIL, approver=approver)
    ran: list[str] = []

    @guard.protect
    def send_email(to: str, body: str = "") -> None:
        ran.append(to)

    with pytest.raises(DeniedError) as info:
        send_email("bob@partner.test")
    assert ran == []
    assert info.value.decision.effect is Effect.DENY
    assert info.value.decision.reasons[-1] == "not approved by carol: not today"
    assert info.value.code == "denied.deny"
    assert [r["type"] for r in records_of(memory_log)] == ["decision", "approval"]
    assert records_of(memory_log, "approval")[0]["approved"] is False


def test_approver_raising_denies(
    make_guard: GuardFactory, memory_log: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    def approver(action: Action, decision: Decision) -> ApprovalAnswer:
        raise TimeoutError("the human went home")

    guard = make_guard(MAIL, approver=approver)
    ran: list[str] = []

    @guard.protect
    def send_email(to: str, body: str = "") -> None:
        ran.append(to)

    with pytest.raises(DeniedError) as info:
        send_email("bob@partner.test")
    assert ran == []
    assert info.value.decision.effect is Effect.DENY
    assert (
        info.value.decision.reasons[-1]
        == "not approved by ringfence: approver failed: TimeoutError"
    )
    approval = records_of(memory_log, "approval")[0]
    assert approval["approved"] is False
    assert approval["note"] == "approver failed: TimeoutError"
    assert "approver failed" in caplog.text


def test_approver_is_only_asked_about_require_approval(make_guard: GuardFactory) -> None:
    approver = RecordingApprover(ApprovalAnswer(True, "alice"))
    guard = make_guard(MAIL, approver=approver)

    assert guard.check(guard.action("send_email", {"to": "a@example.com"})).allowed
    denied = guard.check(guard.action("send_email", {"to": "eve@evil.test"}))
    assert denied.effect is Effect.DENY  # deny beats require_approval; nobody is asked
    assert denied.rules == ("no-attackers",)
    assert approver.asked == []


def test_approval_record_failing_denies(
    make_guard: GuardFactory, memory_log: AuditLog, memory_store: MemoryAuditStore
) -> None:
    def approver(action: Action, decision: Decision) -> ApprovalAnswer:
        memory_store.fail_writes = True  # the log breaks while the human is deciding
        return ApprovalAnswer(True, "alice")

    guard = make_guard(MAIL, approver=approver)
    ran: list[str] = []

    @guard.protect
    def send_email(to: str, body: str = "") -> None:
        ran.append(to)

    with pytest.raises(DeniedError) as info:
        send_email("bob@partner.test")
    assert ran == []
    assert info.value.decision.rules == ("ringfence:audit",)
    memory_store.fail_writes = False
    assert [r["type"] for r in records_of(memory_log)] == ["decision"]


def test_async_call_asks_the_approver_off_the_event_loop(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    loop_thread: list[int] = []
    approver_thread: list[int] = []
    seen_agents: list[str] = []

    def approver(action: Action, decision: Decision) -> ApprovalAnswer:
        approver_thread.append(threading.get_ident())
        seen_agents.append(action.agent)
        return ApprovalAnswer(action.args["to"] != "no@partner.test", "alice")

    guard = make_guard(MAIL, approver=approver)
    ran: list[str] = []

    @guard.protect
    async def send_email(to: str, body: str = "") -> str:
        ran.append(to)
        return "sent"

    async def main() -> Any:
        loop_thread.append(threading.get_ident())
        with guard.context(agent="mailer"):
            sent = await send_email("yes@partner.test")
            with pytest.raises(DeniedError):
                await send_email("no@partner.test")
        return sent

    assert asyncio.run(main()) == "sent"
    assert ran == ["yes@partner.test"]
    assert approver_thread and loop_thread[0] not in approver_thread
    assert seen_agents == ["mailer", "mailer"]  # the context followed the call to the thread
    assert {r["agent"] for r in records_of(memory_log)} == {"mailer"}


def test_on_decision_sees_the_final_decision(make_guard: GuardFactory) -> None:
    seen: list[tuple[str, Effect, tuple[str, ...]]] = []
    guard = make_guard(
        MAIL,
        approver=RecordingApprover(ApprovalAnswer(False, "carol")),
        on_decision=lambda action, decision: seen.append(
            (action.args["to"], decision.effect, decision.rules)
        ),
    )
    guard.check(guard.action("send_email", {"to": "a@example.com"}))
    guard.check(guard.action("send_email", {"to": "b@partner.test"}))
    assert seen == [
        ("a@example.com", Effect.ALLOW, ("internal-mail",)),
        ("b@partner.test", Effect.DENY, ("external-mail", "ringfence:approval")),
    ]
