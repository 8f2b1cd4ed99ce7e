"""CEL conditions: compile-time checks and evaluation semantics."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from ringfence.core.action import Action, Resource
from ringfence.core.decision import Decision, Effect
from ringfence.core.policy.celexpr import (
    CelCompileError,
    action_map,
    argument_names,
    compile_cel,
)
from ringfence.core.policy.engine import DEFAULT_RULE, Policy
from ringfence.core.policy.load import policy_from_text
from ringfence.errors import PolicyError


@cache
def policy_for(expr: str, effect: str) -> Policy:
    return policy_from_text(
        "version: 1\n"
        "tools:\n"
        "  t:\n"
        "    args: {properties: {x: {}, y: {}, items: {}, s: {}}}\n"
        "    resources: {s: path}\n"
        "rules:\n"
        f"  - id: r\n    effect: {effect}\n    tool: t\n    cel: {expr!r}\n"
    )


def decide(expr: str, effect: str, args: dict[str, Any] | None = None, **kw: Any) -> Decision:
    return policy_for(expr, effect).evaluate(
        Action(kind="tool_call", tool="t", args=args or {}, **kw)
    )


def holds(expr: str, args: dict[str, Any] | None = None, **kw: Any) -> bool:
    allow, deny = decide(expr, "allow", args, **kw), decide(expr, "deny", args, **kw)
    assert allow.errors == deny.errors == ()
    assert deny.effect is Effect.DENY
    if allow.allowed:
        assert (allow.rules, deny.rules) == (("r",), ("r",))
    else:
        assert (allow.rules, deny.rules) == ((DEFAULT_RULE,), (DEFAULT_RULE,))
    return allow.allowed


def error(expr: str, args: dict[str, Any] | None = None, **kw: Any) -> str:
    allow, deny = decide(expr, "allow", args, **kw), decide(expr, "deny", args, **kw)
    assert (allow.effect, allow.rules) == (Effect.DENY, (DEFAULT_RULE,))
    assert (deny.effect, deny.rules) == (Effect.DENY, ("r",))
    assert allow.errors == deny.errors
    (text,) = allow.errors
    return text


class TestEvaluation:
    def test_arguments(self) -> None:
        assert holds("args.x > 3", {"x": 5})
        assert not holds("args.x > 3", {"x": 2})
        assert holds("args.x == 'a' && args.y == 'b'", {"x": "a", "y": "b"})
        assert holds("args['x'].startsWith('/etc')", {"x": "/etc/passwd"})
        assert holds("size(args.items) == 3", {"items": [1, 2, 3]})
        assert holds("args.items.exists(i, i > 2)", {"items": [1, 2, 3]})
        assert not holds("args.items.all(i, i > 2)", {"items": [1, 2, 3]})
        assert holds("args.x.y.z == true", {"x": {"y": {"z": True}}})

    def test_has_avoids_missing_field_errors(self) -> None:
        assert holds("has(args.x)", {"x": None})
        assert not holds("has(args.x)", {})
        assert not holds("has(args.x) && args.x > 3", {})

    def test_action_fields(self) -> None:
        assert holds("action.agent == 'bot'", agent="bot")
        assert holds("'admin' in action.roles", roles=("dev", "admin"))
        assert holds("action.user == null", user=None)
        assert holds("action.user == 'alice'", user="alice")
        assert holds("'untrusted' in action.labels", labels=frozenset({"untrusted"}))
        assert holds("action.context.env == 'prod'", context={"env": "prod"})
        assert holds("action.kind == 'tool_call' && action.tool == 't'")
        assert holds("action.time_ns >= 1000", time_ns=1000)
        assert holds("action.session == 's' && action.request == 'q'", session="s", request="q")
        assert holds("size(action.delegation) == 2", delegation=("a", "b"))

    def test_resources_include_derived_ones(self) -> None:
        assert holds("'path:/etc/passwd' in action.resources", {"s": "/data/../etc/passwd"})
        assert holds("'host:a.com' in action.resources", resources=(Resource("host", "a.com"),))

    def test_whole_action_map(self) -> None:
        assert holds("size(action) == 15")
        assert holds("action['agent'] == 'anonymous'")

    def test_numbers(self) -> None:
        assert holds("args.x == 1.0", {"x": 1})
        assert holds("args.x > 0", {"x": 2**64 - 1})
        assert holds("args.x < 0", {"x": -(2**63)})


class TestRuntimeErrors:
    def test_missing_argument(self) -> None:
        assert error("args.x > 3") == "rule r: missing field 'x'"

    def test_missing_context_key(self) -> None:
        assert error("action.context.env == 'prod'") == "rule r: missing field 'env'"

    def test_wrong_type(self) -> None:
        assert error("args.x > 3", {"x": "five"}).startswith("rule r: wrong type (No such overload")

    def test_division_by_zero(self) -> None:
        assert error("args.x / args.y > 1", {"x": 1, "y": 0}) == (
            "rule r: ZeroDivisionError: division by zero in CEL expression"
        )

    @pytest.mark.parametrize(
        ("expr", "type_name"),
        [("args.x", "int"), ("'yes'", "str"), ("[true]", "list"), ("null", "NoneType")],
    )
    def test_non_bool_result(self, expr: str, type_name: str) -> None:
        assert error(expr, {"x": 1}) == (
            f"rule r: wrong type (CEL expression returned {type_name}, not a bool)"
        )

    def test_non_bool_truthy_value_does_not_allow(self) -> None:
        d = decide("args.x", "allow", {"x": True})
        assert d.allowed
        d = decide("args.x", "allow", {"x": 1})
        assert not d.allowed


class TestCombinedWithConditions:
    def test_cel_and_when_must_both_hold(self) -> None:
        policy = policy_from_text(
            "version: 1\ntools:\n  t: {args: {properties: {x: {}, y: {}}}}\nrules:\n"
            "  - {id: r, effect: allow, tool: t, when: {arg: x, eq: 1}, cel: 'args.y == 2'}\n"
        )

        def ok(**args: Any) -> bool:
            return policy.evaluate(Action(kind="tool_call", tool="t", args=args)).allowed

        assert ok(x=1, y=2)
        assert not ok(x=1, y=3)
        assert not ok(x=0, y=2)


class TestCompile:
    def load_error(self, expr: str) -> PolicyError:
        with pytest.raises(PolicyError) as info:
            policy_for(expr, "deny")
        return info.value

    def test_syntax_error(self) -> None:
        err = self.load_error("args.x >")
        assert (err.code, err.line, err.field) == ("policy.cel", 10, "rules[0].cel")
        assert err.reason.startswith("CEL does not compile: ")

    @pytest.mark.parametrize("expr", ["request == 1", "args.x == other", "now > 1"])
    def test_unknown_variable(self, expr: str) -> None:
        err = self.load_error(expr)
        assert (err.code, err.field) == ("policy.cel", "rules[0].cel")
        assert "unknown variable(s)" in err.reason

    def test_unknown_argument(self) -> None:
        err = self.load_error("args.nope == 1")
        assert (err.code, err.line, err.field) == ("policy.unknown_argument", 10, "rules[0].cel")

    def test_compile_cel_directly(self) -> None:
        test = compile_cel("args.a == 1 && action.agent == 'x'")
        assert test(Action(kind="k", tool="t", agent="x"), {"a": 1}, ()) is True
        assert test(Action(kind="k", tool="t", agent="y"), {"a": 1}, ()) is False
        with pytest.raises(CelCompileError):
            compile_cel("1 +")
        with pytest.raises(CelCompileError, match="unknown variable"):
            compile_cel("x == 1")


class TestArgumentNames:
    @pytest.mark.parametrize(
        ("expr", "names"),
        [
            ("args.a == 1", {"a"}),
            ("args.a.b == 1 && args . c > 2", {"a", "c"}),
            ("args['a-b'] == 1 || args[\"c\"] == 2", {"a-b", "c"}),
            ("'args.fake' == args.real", {"real"}),
            ('"args.fake" == args.real', {"real"}),
            ("r'args.x' == 'y'", set()),
            ("size(args) > 0", set()),
            ("myargs.a == 1", set()),
        ],
    )
    def test_names(self, expr: str, names: set[str]) -> None:
        assert argument_names(expr) == names


def test_action_map_has_every_field() -> None:
    a = Action(
        kind="k",
        tool="t",
        agent="ag",
        roles=("r",),
        user="u",
        delegation=("d",),
        session="s",
        trace_id="tr",
        span_id="sp",
        request="rq",
        reason="rs",
        labels=frozenset({"b", "a"}),
        time_ns=5,
        context={"c": 1},
    )
    full = action_map(a, (Resource("path", "/x"),))
    assert full == {
        "kind": "k",
        "tool": "t",
        "agent": "ag",
        "roles": ["r"],
        "user": "u",
        "delegation": ["d"],
        "session": "s",
        "trace_id": "tr",
        "span_id": "sp",
        "request": "rq",
        "reason": "rs",
        "labels": ["a", "b"],
        "resources": ["path:/x"],
        "time_ns": 5,
        "context": {"c": 1},
    }
    assert action_map(a, (), ("agent", "labels")) == {"agent": "ag", "labels": ["a", "b"]}


def test_unknown_action_field_is_a_load_error() -> None:
    import pytest

    from ringfence.core.policy.load import policy_from_text
    from ringfence.errors import PolicyError

    with pytest.raises(PolicyError) as err:
        policy_from_text("version: 1\nrules:\n  - {id: r, effect: deny, cel: 'action.nope == 1'}\n")
    assert err.value.code == "policy.cel"
    assert "unknown action field(s) nope" in err.value.message
