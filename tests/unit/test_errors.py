"""The error tree: stable codes, messages and the wire format."""

from __future__ import annotations

import pytest

from ringfence.core.decision import Decision, Effect
from ringfence.errors import (
    AuditError,
    ConfigError,
    DeniedError,
    InputError,
    PolicyError,
    RingfenceError,
    VerificationError,
)


@pytest.mark.parametrize(
    ("cls", "code", "parent"),
    [
        (RingfenceError, "ringfence", Exception),
        (PolicyError, "policy.invalid", RingfenceError),
        (InputError, "input.invalid", RingfenceError),
        (AuditError, "audit.unavailable", RingfenceError),
        (VerificationError, "audit.verify.failed", AuditError),
        (ConfigError, "config.invalid", RingfenceError),
    ],
)
def test_default_codes_and_tree(cls: type[RingfenceError], code: str, parent: type) -> None:
    err = cls("boom")
    assert err.code == code
    # The drawn tree: the nearest public ancestor (private helper bases are skipped).
    public = [c for c in cls.__mro__[1:] if not c.__name__.startswith("_")]
    assert public[0] is parent
    assert err.message == "boom"
    assert str(err) == "boom"
    assert err.to_dict() == {"code": code, "message": "boom"}
    assert err.diagnostics() == f"error[{code}]: boom"


def test_explicit_code() -> None:
    assert InputError("x", code="input.record").code == "input.record"


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({}, "bad"),
        ({"source": "p.yaml"}, "p.yaml: bad"),
        ({"source": "p.yaml", "line": 3}, "p.yaml:3: bad"),
        ({"source": "p.yaml", "line": 3, "field": "rules[0].id"}, "p.yaml:3: rules[0].id: bad"),
        ({"field": "rules"}, "rules: bad"),
        ({"line": 3}, "bad"),
    ],
)
def test_policy_error_message_names_where(kw: dict[str, object], text: str) -> None:
    err = PolicyError("bad", **kw)  # type: ignore[arg-type]
    assert err.message == text
    assert err.reason == "bad"
    assert (err.source, err.line, err.field) == (kw.get("source"), kw.get("line"), kw.get("field"))


def test_denied_error_carries_the_decision() -> None:
    d = Decision(
        effect=Effect.REQUIRE_APPROVAL,
        rules=("ask",),
        reasons=("needs a human",),
        policy_version="v",
        decision_id="id",
    )
    err = DeniedError(d)
    assert err.decision is d
    assert isinstance(err, RingfenceError)
    assert err.to_dict() == {
        "code": "denied.require_approval",
        "message": "require_approval: needs a human (rules: ask; decision id)",
    }
