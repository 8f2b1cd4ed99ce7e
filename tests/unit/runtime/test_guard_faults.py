"""Faults never allow: a failed audit write or an internal error is a deny, in every mode."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

import ringfence
from ringfence import Action, DeniedError, Effect, Enforcement, Guard
from ringfence.runtime.audit import AuditLog
from ringfence.stores.memory import MemoryAuditStore

from ._support import FixedClock, GuardFactory, records_of

FILES = """
version: 1
tools:
  safe_delete:
    args:
      type: object
      properties:
        path: {type: string}
        recursive: {type: boolean}
    resources: {path: path}
rules:
  - id: tmp-only
    effect: allow
    tool: safe_delete
    resource: "path:/tmp/**"
"""


class BrokenPolicy:
    """A policy object whose evaluation fails."""

    name = "broken"
    version = "sha256:broken"

    def __init__(self, result: Any = None) -> None:
        self.result = result

    def decide(self, action: Action, decision_id: str = "") -> Any:
        if self.result is None:
            raise ZeroDivisionError("bug in a rule")
        return self.result


def test_audit_write_failure_denies_and_nothing_runs(
    make_guard: GuardFactory,
    memory_log: AuditLog,
    memory_store: MemoryAuditStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    memory_store.fail_writes = True
    decision = guard.check(guard.action("safe_delete", {"path": "/tmp/a"}))
    assert decision.effect is Effect.DENY
    assert decision.rules == ("ringfence:audit",)
    assert decision.reasons == ("audit log unavailable: memory audit store refuses writes",)
    assert decision.decision_id == "d-1"
    assert decision.policy_version == guard.policy.version
    with pytest.raises(DeniedError) as info:
        safe_delete("/tmp/a")  # the policy would allow it
    assert info.value.decision.rules == ("ringfence:audit",)
    with pytest.raises(DeniedError):
        guard.authorize(guard.action("safe_delete", {"path": "/tmp/a"}))
    assert ran == []
    assert memory_store.rows == []
    assert "audit log unavailable" in caplog.text

    memory_store.fail_writes = False  # the log is back: so are allowed calls
    safe_delete("/tmp/a")
    assert ran == ["/tmp/a"]
    assert records_of(memory_log, "decision")[0]["seq"] == 0  # the failed writes left no hole


def test_closed_audit_log_denies(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    guard.close()
    with pytest.raises(DeniedError) as info:
        safe_delete("/tmp/a")
    assert info.value.decision.rules == ("ringfence:audit",)
    assert "closed" in info.value.decision.reasons[0]
    assert ran == []


@pytest.mark.parametrize(
    "result",
    [None, "not a tuple", (None, ())],
    ids=["raises", "wrong-type", "decision-is-none"],
)
def test_internal_error_denies(
    memory_log: AuditLog, caplog: pytest.LogCaptureFixture, result: Any
) -> None:
    guard = Guard(BrokenPolicy(result), audit=memory_log)  # type: ignore[arg-type]
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    decision = guard.check(guard.action("safe_delete", {"path": "/tmp/a"}))
    assert decision.effect is Effect.DENY
    assert decision.rules == ("ringfence:internal",)
    assert decision.reasons == ("internal error while deciding",)
    assert decision.decision_id
    with pytest.raises(DeniedError) as info:
        safe_delete("/tmp/a")
    assert info.value.decision.rules == ("ringfence:internal",)
    assert ran == []
    assert "internal error while deciding" in caplog.text


def test_unencodable_record_denies(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    with guard.context(request="lone surrogate \ud800"), pytest.raises(DeniedError) as info:
        safe_delete("/tmp/a")
    assert info.value.decision.rules == ("ringfence:audit",)
    assert "cannot be encoded" in info.value.decision.reasons[0]
    assert ran == []
    assert records_of(memory_log) == []


def test_invalid_utf8_argument_is_an_input_deny_and_recorded(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    with pytest.raises(DeniedError) as info:
        safe_delete("/tmp/\udcff")
    assert info.value.decision.rules == ("ringfence:input",)
    assert ran == []
    (record,) = records_of(memory_log)
    assert record["args"] == {"[invalid]": info.value.decision.reasons[0]}


def test_outcome_write_failure_after_the_call_blocks_the_next_call(
    make_guard: GuardFactory,
    memory_log: AuditLog,
    memory_store: MemoryAuditStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> str:
        ran.append(path)
        memory_store.fail_writes = True  # the disk fills up while the tool runs
        return "done"

    assert safe_delete("/tmp/a") == "done"  # it ran; its result is not hidden from the caller
    assert "could not record the outcome" in caplog.text
    with pytest.raises(DeniedError) as info:
        safe_delete("/tmp/b")
    assert info.value.decision.rules == ("ringfence:audit",)
    assert ran == ["/tmp/a"]


# -- the deliberately permissive mode ------------------------------------------------------


def _unsafe_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING
        and "UNSAFE" in r.getMessage()
        and "NOT enforced" in r.getMessage()
    ]


def test_unsafe_audit_only_runs_denied_actions_and_warns_every_time(
    make_guard: GuardFactory, memory_log: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ringfence")
    guard = make_guard(FILES, enforcement=Enforcement.UNSAFE_AUDIT_ONLY)
    assert any("UNSAFE audit-only mode" in r.getMessage() for r in caplog.records)
    caplog.clear()
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    safe_delete("/etc/passwd")
    safe_delete("/tmp/a")
    safe_delete("/etc/shadow")
    decision = guard.authorize(guard.action("safe_delete", {"path": "/etc/hosts"}))
    assert decision.effect is Effect.DENY  # decided, recorded, not enforced

    assert ran == ["/etc/passwd", "/tmp/a", "/etc/shadow"]
    warnings = _unsafe_records(caplog)
    assert len(warnings) == 4  # one per decision, allowed ones included
    assert "would be deny" in warnings[0].getMessage()
    assert "would be allow" in warnings[1].getMessage()
    decisions = records_of(memory_log, "decision")
    assert [d["effect"] for d in decisions] == ["deny", "allow", "deny", "deny"]
    assert {d["enforced"] for d in decisions} == {False}
    assert len(records_of(memory_log, "outcome")) == 3


def test_enforcing_guard_records_enforced_true(
    make_guard: GuardFactory, memory_log: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    guard = make_guard(FILES)
    guard.check(guard.action("safe_delete", {"path": "/etc/passwd"}))
    assert records_of(memory_log, "decision")[0]["enforced"] is True
    assert _unsafe_records(caplog) == []
    assert "UNSAFE" not in caplog.text


def test_enforcement_accepts_the_string_form_and_nothing_else(memory_log: AuditLog) -> None:
    policy = ringfence.policy_from_text(FILES)
    guard = Guard(policy, audit=memory_log, enforcement="unsafe_audit_only")  # type: ignore[arg-type]
    assert guard.enforcement is Enforcement.UNSAFE_AUDIT_ONLY
    with pytest.raises(ValueError, match="allow_all"):
        Guard(policy, audit=memory_log, enforcement="allow_all")  # type: ignore[arg-type]


def test_unsafe_mode_still_blocks_when_the_audit_log_fails(
    make_guard: GuardFactory, memory_store: MemoryAuditStore
) -> None:
    guard = make_guard(FILES, enforcement=Enforcement.UNSAFE_AUDIT_ONLY)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    memory_store.fail_writes = True
    with pytest.raises(DeniedError) as info:
        safe_delete("/tmp/a")
    assert info.value.decision.rules == ("ringfence:audit",)
    with pytest.raises(DeniedError):
        guard.authorize(guard.action("safe_delete", {"path": "/tmp/a"}))
    assert ran == []  # no mode runs an action without a decision on record


def test_unsafe_mode_still_blocks_on_internal_errors(memory_log: AuditLog) -> None:
    guard = Guard(
        BrokenPolicy(),  # type: ignore[arg-type]
        audit=memory_log,
        enforcement=Enforcement.UNSAFE_AUDIT_ONLY,
        clock=FixedClock(),
    )
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    with pytest.raises(DeniedError) as info:
        safe_delete("/tmp/a")
    assert info.value.decision.rules == ("ringfence:internal",)
    assert ran == []


def test_hook_and_approver_faults_never_allow(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    def bad_hook(action: object, decision: object) -> None:
        raise RuntimeError("observer bug")

    guard = make_guard(
        "version: 1\nrules:\n  - {id: ask, effect: require_approval, tool: t}\n"
        "  - {id: ok, effect: allow, tool: u}\n",
        approver=lambda action, decision: True,  # not an ApprovalAnswer
        on_decision=bad_hook,
    )
    assert guard.check(guard.action("u", {})).allowed  # a failing hook changes nothing
    asked = guard.check(guard.action("t", {}))
    assert asked.effect is Effect.DENY
    assert asked.reasons[-1] == "not approved by ringfence: approver failed: TypeError"
    approval = records_of(memory_log)[-1]
    assert (approval["type"], approval["approved"]) == ("approval", False)


def test_session_labels_union_with_explicit_labels(make_guard: GuardFactory) -> None:
    guard = make_guard(
        "version: 1\nrules:\n"
        "  - {id: read, effect: allow, tool: read, labels: [untrusted]}\n"
        "  - {id: send, effect: allow, tool: send}\n"
        "  - {id: no-send-after-untrusted, effect: deny, tool: send,"
        " when: [{field: labels, contains: untrusted}]}\n"
    )
    with guard.context(session="s1"):
        assert guard.check(guard.action("read", {})).allowed
        explicit = msgspec.structs.replace(guard.action("send", {}), labels=frozenset({"other"}))
        decision = guard.check(explicit)
    assert decision.effect is Effect.DENY
    assert decision.rules == ("no-send-after-untrusted",)
