"""Policies conditioning on credential claims: ``credential.…`` fields and the CEL variable.

Without a verified credential every ``credential.…`` read is a missing field: a deny rule
matches and an allow rule does not.  Only ``exists`` asks whether there is one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ringfence.core.action import Action
from ringfence.core.decision import Effect
from ringfence.core.policy.load import policy_from_text
from ringfence.errors import PolicyError

CLAIMS = {
    "iss": "spiffe://corp.example",
    "sub": "spiffe://corp.example/agent/planner",
    "aud": ["ringfence"],
    "iat": 1,
    "nbf": 1,
    "exp": 100,
    "jti": "c-123456",
    "user": "alice",
    "tools": ["read_*"],
    "resources": ["path:/w/**"],
    "roles": ["analyst"],
    "budgets": {"max_cost": 2.5},
    "delegable": 0,
    "depth": 1,
    "kid": "k",
}


def policy(rule: dict[str, Any]) -> Any:
    body = {"id": "r", "tool": "t", **rule}
    return policy_from_text(
        f"version: 1\ntools:\n  t:\n    args: {{type: object}}\nrules:\n  - {json.dumps(body)}\n"
    )


def decide(rule: dict[str, Any], credential: dict[str, Any] | None = CLAIMS) -> Any:
    return policy(rule).evaluate(Action(kind="tool_call", tool="t", credential=credential))


@pytest.mark.parametrize(
    ("cond", "holds"),
    [
        ({"field": "credential.user", "eq": "alice"}, True),
        ({"field": "credential.user", "eq": "bob"}, False),
        ({"field": "credential.sub", "glob": "spiffe://corp.example/agent/*"}, True),
        ({"field": "credential.depth", "le": 1}, True),
        ({"field": "credential.depth", "eq": 0}, False),
        ({"field": "credential.budgets.max_cost", "lt": 3}, True),
        ({"field": "credential.roles", "contains": "analyst"}, True),
        ({"field": "credential.aud", "contains": "billing"}, False),
        ({"field": "credential", "exists": True}, True),
        ({"field": "credential.user", "exists": True}, True),
        ({"field": "credential.budgets.max_calls", "exists": False}, True),
    ],
)
def test_conditions(cond: dict[str, Any], holds: bool) -> None:
    allow = decide({"effect": "allow", "when": [cond]})
    assert allow.allowed is holds
    assert allow.errors == ()


def test_null_claim_does_not_exist() -> None:
    claims = {**CLAIMS, "user": None}
    assert not decide(
        {"effect": "allow", "when": [{"field": "credential.user", "exists": True}]}, claims
    ).allowed
    assert decide(
        {"effect": "allow", "when": [{"field": "credential", "exists": False}]}, None
    ).allowed


class TestWithoutACredential:
    def test_allow_rule_does_not_match(self) -> None:
        d = decide({"effect": "allow", "when": [{"field": "credential.user", "eq": "alice"}]}, None)
        assert d.effect is Effect.DENY
        assert d.errors == ("rule r: missing field 'credential'",)

    def test_deny_rule_matches(self) -> None:
        d = decide({"effect": "deny", "when": [{"field": "credential.depth", "gt": 3}]}, None)
        assert (d.effect, d.rules) == (Effect.DENY, ("r",))

    def test_missing_budget_is_a_missing_field(self) -> None:
        d = decide(
            {"effect": "allow", "when": [{"field": "credential.budgets.max_calls", "lt": 9}]}
        )
        assert not d.allowed and "max_calls" in d.errors[0]


class TestCel:
    def test_claims(self) -> None:
        assert decide({"effect": "allow", "cel": "credential.user == 'alice'"}).allowed
        cel = "credential.budgets.max_cost < 3.0 && 'analyst' in credential.roles"
        assert decide({"effect": "allow", "cel": cel}).allowed

    def test_without_a_credential_it_is_an_empty_map(self) -> None:
        assert decide({"effect": "allow", "cel": "!has(credential.sub)"}, None).allowed
        d = decide({"effect": "allow", "cel": "credential.user == 'alice'"}, None)
        assert not d.allowed and d.errors


@pytest.mark.parametrize(
    "cond",
    [
        {"field": "credential.nope", "eq": 1},
        {"field": "credential.budgets", "eq": 1},
        {"field": "credential.user.name", "eq": 1},
        {"field": "credential.budgets.a.b", "eq": 1},
        {"field": "credential", "eq": 1},
    ],
)
def test_unknown_credential_fields_are_load_errors(cond: dict[str, Any]) -> None:
    with pytest.raises(PolicyError) as info:
        policy({"effect": "allow", "when": [cond]})
    assert info.value.code == "policy.unknown_field"
    assert "credential" in info.value.message
