"""The Decision value and its helpers."""

from __future__ import annotations

import json

import msgspec
import pytest

from ringfence.core.decision import Decision, Effect, Obligations
from ringfence.errors import DeniedError


def decision(effect: Effect, **kw: object) -> Decision:
    base: dict[str, object] = {
        "rules": ("r1", "r2"),
        "reasons": ("because", "also"),
        "policy_version": "sha256:abc",
        "decision_id": "d-1",
    }
    base.update(kw)
    return Decision(effect=effect, **base)  # type: ignore[arg-type]


def test_effect_values_are_stable() -> None:
    assert [e.value for e in Effect] == ["allow", "require_approval", "deny"]


@pytest.mark.parametrize(
    ("effect", "allowed"),
    [(Effect.ALLOW, True), (Effect.REQUIRE_APPROVAL, False), (Effect.DENY, False)],
)
def test_allowed(effect: Effect, allowed: bool) -> None:
    assert decision(effect).allowed is allowed


def test_raise_for_effect_returns_self_when_allowed() -> None:
    d = decision(Effect.ALLOW)
    assert d.raise_for_effect() is d


@pytest.mark.parametrize("effect", [Effect.DENY, Effect.REQUIRE_APPROVAL])
def test_raise_for_effect_raises_with_the_decision(effect: Effect) -> None:
    d = decision(effect)
    with pytest.raises(DeniedError) as info:
        d.raise_for_effect()
    err = info.value
    assert err.decision is d
    assert err.code == f"denied.{effect.value}"
    assert err.message == f"{effect.value}: because; also (rules: r1, r2; decision d-1)"


def test_denied_error_without_reasons_or_rules() -> None:
    err = DeniedError(decision(Effect.DENY, rules=(), reasons=()))
    assert err.message == "deny: no rule allows this action (rules: -; decision d-1)"
    assert DeniedError(decision(Effect.DENY), "custom").message == "custom"


def test_to_dict() -> None:
    d = decision(
        Effect.DENY, obligations=Obligations(redact=("args.x",), labels=("l",)), errors=("e",)
    )
    # JSON-ready: what json.loads(json.dumps(...)) gives back is the same data
    assert json.loads(json.dumps(d.to_dict())) == {
        "effect": "deny",
        "rules": ["r1", "r2"],
        "reasons": ["because", "also"],
        "policy_version": "sha256:abc",
        "decision_id": "d-1",
        "obligations": {"counts": [], "redact": ["args.x"], "labels": ["l"], "sandbox": None},
        "errors": ["e"],
    }


def test_round_trip() -> None:
    d = decision(Effect.REQUIRE_APPROVAL, obligations=Obligations(labels=("x",)))
    assert msgspec.json.decode(msgspec.json.encode(d), type=Decision) == d


def test_frozen() -> None:
    d = decision(Effect.DENY)
    with pytest.raises(AttributeError):
        d.effect = Effect.ALLOW  # type: ignore[misc]


def test_obligations_truthiness() -> None:
    assert not Obligations()
    assert Obligations(redact=("args.a",))
    assert Obligations(labels=("l",))
