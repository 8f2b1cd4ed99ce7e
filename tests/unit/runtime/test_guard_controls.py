"""The Guard with controls: kill switch and limits decide before the action runs and are
recorded like any decision.  Skipped until ``Guard(controls=...)`` exists (the wiring is
described in docs/controls.md)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

import ringfence
from ringfence import Effect
from ringfence.core.killswitch import KillScope
from ringfence.runtime.controls import Controls
from ringfence.runtime.guard import Guard

from ._support import GuardFactory, records_of

pytestmark = pytest.mark.skipif(
    "controls" not in inspect.signature(Guard).parameters,
    reason="Guard(controls=...) is not wired yet",
)

POLICY = """\
version: 1
tools:
  send:
    args: {type: object, properties: {to: {type: string}, body: {type: string}}}
rules:
  - {id: send, effect: allow, tool: send, redact: [args.body]}
  - {id: flaky, effect: allow, tool: flaky}
  - {id: ask, effect: require_approval, tool: ask}
  - {id: no-evil, effect: deny, tool: send, when: [{arg: to, eq: evil}]}
limits:
  rate:
    - {id: send-rate, per: agent, tool: send, limit: 2, window: 1h}
  breakers:
    - {id: flaky, tool: flaky, min_calls: 2, failure_rate: 1, open_for: 1h}
"""


def send(guard: Guard, to: str = "bob") -> Any:
    return guard.check(guard.action("send", {"to": to, "body": "secret"}))


def test_a_kill_is_a_recorded_deny(make_guard: GuardFactory) -> None:
    controls = Controls(watch_seconds=None)
    guard = make_guard(POLICY, controls=controls)
    controls.kill(KillScope.of("tool", "send"), "incident", "alice")
    decision = send(guard)
    assert decision.effect is Effect.DENY and decision.rules == ("ringfence:kill",)
    record = records_of(guard.audit, "decision")[-1]
    assert record["rules"] == ["ringfence:kill"] and "incident" in record["reasons"][0]
    assert record["args"]["body"] == "[REDACTED]"  # the policy's redaction still applies


def test_the_policys_limits_apply_without_a_store(make_guard: GuardFactory) -> None:
    guard = make_guard(POLICY)
    assert [send(guard).effect for _ in range(3)] == [Effect.ALLOW, Effect.ALLOW, Effect.DENY]
    denied = send(guard)
    assert denied.rules == ("ringfence:rate",)
    assert denied.reasons == ("rate limit send-rate (agent=anonymous): 2 per 1h exceeded",)


def test_a_policy_deny_costs_no_tokens(make_guard: GuardFactory) -> None:
    guard = make_guard(POLICY)
    for _ in range(5):
        assert send(guard, "evil").rules == ("no-evil",)
    assert send(guard).effect is Effect.ALLOW


def test_a_limit_refuses_before_anyone_is_asked(make_guard: GuardFactory) -> None:
    asked: list[str] = []

    def approver(action: Any, decision: Any) -> Any:
        asked.append(action.tool)
        return ringfence.ApprovalAnswer(True, "alice")

    controls = Controls(watch_seconds=None)
    guard = make_guard(POLICY, controls=controls, approver=approver)
    controls.kill(KillScope.of("all"), "stop", "ops")
    assert guard.check(guard.action("ask", {})).rules == ("ringfence:kill",)
    assert asked == []


def test_breakers_learn_from_protected_calls(make_guard: GuardFactory) -> None:
    guard = make_guard(POLICY)

    @guard.protect
    def flaky() -> None:
        raise RuntimeError("upstream down")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            flaky()
    with pytest.raises(ringfence.DeniedError) as info:
        flaky()
    assert info.value.decision.rules == ("ringfence:breaker",)


def test_open_guard_shares_kills_through_the_data_folder(tmp_path: Path) -> None:
    policy = ringfence.policy_from_text(POLICY)
    guard = ringfence.open_guard(policy, data_dir=tmp_path / "a", controls_dir=tmp_path / "c")
    other = ringfence.open_guard(policy, data_dir=tmp_path / "b", controls_dir=tmp_path / "c")
    try:
        other.controls.kill(KillScope.of("agent", "anonymous"), "r", "ops")  # type: ignore[union-attr]
        assert send(guard).rules == ("ringfence:kill",)
    finally:
        guard.close()
        other.close()
