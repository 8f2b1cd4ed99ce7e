"""Declarative conditions: every operator, the combinators, and ``field:`` subjects.

Each condition is tested twice where it matters: in an allow rule (an evaluation error
means "does not match") and in a deny rule (an evaluation error means "matches").
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from ringfence.core.action import Action, Resource
from ringfence.core.decision import Decision, Effect
from ringfence.core.policy.engine import DEFAULT_RULE, Policy
from ringfence.core.policy.load import policy_from_text


@cache
def policy_for(cond_json: str, effect: str) -> Policy:
    return policy_from_text(
        "version: 1\n"
        "tools:\n"
        "  t:\n"
        "    args: {type: object}\n"
        "rules:\n"
        f"  - id: r\n    effect: {effect}\n    tool: t\n    when: [{cond_json}]\n"
    )


def decide(cond: dict[str, Any], args: dict[str, Any], effect: str, **kw: Any) -> Decision:
    action = Action(kind="tool_call", tool="t", args=args, **kw)
    return policy_for(json.dumps(cond), effect).evaluate(action)


def matches(cond: dict[str, Any], args: dict[str, Any] | None = None, **kw: Any) -> bool:
    """Does ``cond`` hold?  Asserts that evaluating it raised nothing, in both rule kinds."""
    args = {} if args is None else args
    allow = decide(cond, args, "allow", **kw)
    deny = decide(cond, args, "deny", **kw)
    assert allow.errors == () and deny.errors == ()
    if allow.allowed:
        assert allow.rules == ("r",)
        assert (deny.effect, deny.rules) == (Effect.DENY, ("r",))
        return True
    assert allow.rules == (DEFAULT_RULE,)
    assert deny.rules == (DEFAULT_RULE,)
    return False


def fails(cond: dict[str, Any], args: dict[str, Any] | None = None, **kw: Any) -> str:
    """Evaluating ``cond`` raises: the allow rule must not match, the deny rule must.

    Returns the error text recorded in the decision.
    """
    args = {} if args is None else args
    allow = decide(cond, args, "allow", **kw)
    deny = decide(cond, args, "deny", **kw)
    assert (allow.effect, allow.rules) == (Effect.DENY, (DEFAULT_RULE,))
    assert (deny.effect, deny.rules) == (Effect.DENY, ("r",))
    assert len(allow.errors) == 1
    assert allow.errors == deny.errors
    assert allow.errors[0].startswith("rule r: ")
    return allow.errors[0]


class TestEq:
    def test_strings(self) -> None:
        assert matches({"arg": "x", "eq": "a"}, {"x": "a"})
        assert not matches({"arg": "x", "eq": "a"}, {"x": "A"})
        assert not matches({"arg": "x", "eq": "a"}, {"x": ["a"]})

    def test_numbers_of_either_type_compare_by_value(self) -> None:
        assert matches({"arg": "x", "eq": 1}, {"x": 1.0})
        assert matches({"arg": "x", "eq": 1.5}, {"x": 1.5})
        assert not matches({"arg": "x", "eq": 1}, {"x": 2})

    def test_booleans_are_not_numbers(self) -> None:
        assert not matches({"arg": "x", "eq": 1}, {"x": True})
        assert not matches({"arg": "x", "eq": 0}, {"x": False})
        assert not matches({"arg": "x", "eq": True}, {"x": 1})
        assert matches({"arg": "x", "eq": True}, {"x": True})

    def test_no_string_number_coercion(self) -> None:
        assert not matches({"arg": "x", "eq": "1"}, {"x": 1})
        assert not matches({"arg": "x", "eq": 1}, {"x": "1"})

    def test_null(self) -> None:
        assert matches({"arg": "x", "eq": None}, {"x": None})
        assert not matches({"arg": "x", "eq": None}, {"x": 0})

    def test_missing_argument_is_an_error(self) -> None:
        assert fails({"arg": "x", "eq": "a"}, {}) == "rule r: missing field 'x'"

    def test_missing_nested_argument_is_an_error(self) -> None:
        assert fails({"arg": "x.y", "eq": "a"}, {"x": {}}) == "rule r: missing field 'y'"

    def test_indexing_into_a_non_object_is_an_error(self) -> None:
        assert fails({"arg": "x.y", "eq": "a"}, {"x": "str"}).startswith("rule r: wrong type (")


class TestNe:
    def test_ne(self) -> None:
        assert matches({"arg": "x", "ne": "a"}, {"x": "b"})
        assert not matches({"arg": "x", "ne": "a"}, {"x": "a"})
        assert matches({"arg": "x", "ne": 1}, {"x": True})  # True is not 1
        assert not matches({"arg": "x", "ne": 1}, {"x": 1.0})

    def test_missing_argument_is_an_error_not_a_difference(self) -> None:
        assert fails({"arg": "x", "ne": "a"}, {}) == "rule r: missing field 'x'"


class TestMembership:
    def test_in(self) -> None:
        assert matches({"arg": "x", "in": ["a", "b"]}, {"x": "b"})
        assert not matches({"arg": "x", "in": ["a", "b"]}, {"x": "c"})
        assert matches({"arg": "x", "in": [1, 2]}, {"x": 2.0})
        assert matches({"arg": "x", "in": [None]}, {"x": None})

    def test_true_and_1_are_not_confused(self) -> None:
        assert not matches({"arg": "x", "in": [1, 2]}, {"x": True})
        assert not matches({"arg": "x", "in": [True]}, {"x": 1})
        assert not matches({"arg": "x", "in": [0]}, {"x": False})
        assert matches({"arg": "x", "in": [True]}, {"x": True})
        assert matches({"arg": "x", "in": [1]}, {"x": 1})

    def test_not_in(self) -> None:
        assert matches({"arg": "x", "not_in": ["a"]}, {"x": "b"})
        assert not matches({"arg": "x", "not_in": ["a"]}, {"x": "a"})
        assert matches({"arg": "x", "not_in": [1]}, {"x": True})
        assert matches({"arg": "x", "not_in": [True]}, {"x": 1})
        assert not matches({"arg": "x", "not_in": [True]}, {"x": True})

    def test_unhashable_value_is_an_error(self) -> None:
        assert fails({"arg": "x", "in": ["a"]}, {"x": ["a"]}).startswith("rule r: wrong type (")
        assert fails({"arg": "x", "not_in": ["a"]}, {"x": {"a": 1}}).startswith(
            "rule r: wrong type ("
        )

    def test_missing_is_an_error_for_not_in_too(self) -> None:
        assert fails({"arg": "x", "not_in": ["a"]}, {}) == "rule r: missing field 'x'"


class TestStringOps:
    def test_startswith(self) -> None:
        assert matches({"arg": "p", "startswith": "/etc"}, {"p": "/etc/passwd"})
        assert matches({"arg": "p", "startswith": ["/x", "/etc"]}, {"p": "/etc/passwd"})
        assert not matches({"arg": "p", "startswith": "/etc"}, {"p": "/data/etc"})

    def test_endswith(self) -> None:
        assert matches({"arg": "p", "endswith": [".key", ".pem"]}, {"p": "a.pem"})
        assert not matches({"arg": "p", "endswith": ".pem"}, {"p": "a.pem.txt"})

    @pytest.mark.parametrize("op", ["startswith", "endswith"])
    @pytest.mark.parametrize("value", [5, ["a"], None, True])
    def test_non_string_is_an_error(self, op: str, value: object) -> None:
        assert fails({"arg": "p", op: "a"}, {"p": value}).startswith("rule r: wrong type (")

    def test_glob_star_stays_within_a_segment(self) -> None:
        assert matches({"arg": "p", "glob": "/data/*"}, {"p": "/data/x"})
        assert not matches({"arg": "p", "glob": "/data/*"}, {"p": "/data/x/y"})

    def test_glob_double_star_crosses_segments(self) -> None:
        assert matches({"arg": "p", "glob": "/data/**"}, {"p": "/data/x/y"})
        assert not matches({"arg": "p", "glob": "/data/**"}, {"p": "/etc/data/x"})
        assert matches({"arg": "p", "glob": "**/*.pem"}, {"p": "/home/u/k.pem"})
        assert matches({"arg": "p", "glob": "**/*.pem"}, {"p": "k.pem"})

    def test_glob_list_and_whole_string(self) -> None:
        assert matches({"arg": "p", "glob": ["/a/*", "/b/*"]}, {"p": "/b/x"})
        assert not matches({"arg": "p", "glob": ["/a/*", "/b/*"]}, {"p": "/b/x/"})
        assert not matches({"arg": "p", "glob": "/a/*"}, {"p": "x/a/b"})

    def test_glob_is_applied_to_the_raw_argument(self) -> None:
        # Conditions see the argument as written: no path normalisation (resources do that).
        assert matches({"arg": "p", "glob": "/data/**"}, {"p": "/data/../etc/passwd"})

    def test_regex_is_a_search_not_a_full_match(self) -> None:
        assert matches({"arg": "s", "regex": "b"}, {"s": "abc"})
        assert not matches({"arg": "s", "regex": "^b"}, {"s": "abc"})
        assert matches({"arg": "s", "regex": "c$"}, {"s": "abc"})
        assert matches({"arg": "s", "regex": ["^z", "(?i)B"]}, {"s": "abc"})
        assert not matches({"arg": "s", "regex": ["^z", "^y"]}, {"s": "abc"})

    def test_regex_alternation_in_one_of_several_patterns(self) -> None:
        assert not matches({"arg": "s", "regex": ["^a|^b", "^z"]}, {"s": "xb"})
        assert matches({"arg": "s", "regex": ["^a|^b", "^z"]}, {"s": "bx"})

    @pytest.mark.parametrize("op", ["glob", "regex"])
    def test_glob_and_regex_need_strings(self, op: str) -> None:
        assert fails({"arg": "p", op: "a"}, {"p": 1}).startswith("rule r: wrong type (")


class TestContains:
    def test_substring(self) -> None:
        assert matches({"arg": "s", "contains": "rm -rf"}, {"s": "sudo rm -rf /"})
        assert not matches({"arg": "s", "contains": "rm -rf"}, {"s": "rm -r"})

    def test_list_element(self) -> None:
        assert matches({"arg": "l", "contains": "a"}, {"l": ["b", "a"]})
        assert not matches({"arg": "l", "contains": "a"}, {"l": ["ab"]})
        assert matches({"arg": "l", "contains": 2}, {"l": [1, 2.0]})

    def test_true_and_1_are_not_confused(self) -> None:
        assert not matches({"arg": "l", "contains": 1}, {"l": [True]})
        assert not matches({"arg": "l", "contains": True}, {"l": [1]})
        assert matches({"arg": "l", "contains": True}, {"l": [True]})

    def test_non_string_in_a_string_is_an_error(self) -> None:
        assert fails({"arg": "s", "contains": 1}, {"s": "1"}) == (
            "rule r: wrong type (a string can only contain a string)"
        )

    @pytest.mark.parametrize("value", [5, {"a": 1}, None])
    def test_container_of_the_wrong_type_is_an_error(self, value: object) -> None:
        err = fails({"arg": "s", "contains": "a"}, {"s": value})
        assert err.startswith("rule r: wrong type (expected a string or a list, got ")


class TestNumbers:
    @pytest.mark.parametrize(
        ("op", "value", "expected"),
        [
            ("lt", 9, True),
            ("lt", 10, False),
            ("le", 10, True),
            ("le", 10.5, False),
            ("gt", 10, False),
            ("gt", 10.01, True),
            ("ge", 10, True),
            ("ge", 9.99, False),
            ("lt", -(2**63), True),
            ("gt", 2**64 - 1, True),
        ],
    )
    def test_comparisons(self, op: str, value: float, expected: bool) -> None:
        assert matches({"arg": "n", op: 10}, {"n": value}) is expected

    @pytest.mark.parametrize("op", ["lt", "le", "gt", "ge"])
    def test_bool_is_not_a_number(self, op: str) -> None:
        assert fails({"arg": "n", op: 10}, {"n": True}) == (
            "rule r: wrong type (expected a number, got bool)"
        )

    @pytest.mark.parametrize(
        ("value", "type_name"), [("5", "str"), (None, "NoneType"), ([1], "list")]
    )
    def test_non_numbers_are_errors(self, value: object, type_name: str) -> None:
        assert fails({"arg": "n", "lt": 10}, {"n": value}) == (
            f"rule r: wrong type (expected a number, got {type_name})"
        )


class TestExists:
    def test_argument(self) -> None:
        assert matches({"arg": "x", "exists": True}, {"x": None})
        assert not matches({"arg": "x", "exists": True}, {})
        assert matches({"arg": "x", "exists": False}, {})
        assert not matches({"arg": "x", "exists": False}, {"x": 0})

    def test_nested_argument_never_errors(self) -> None:
        assert matches({"arg": "a.b", "exists": True}, {"a": {"b": 1}})
        assert not matches({"arg": "a.b", "exists": True}, {"a": "not a dict"})
        assert matches({"arg": "a.b", "exists": False}, {"a": [1]})
        assert matches({"arg": "a.b", "exists": False}, {})

    def test_context(self) -> None:
        assert matches({"field": "context.ticket", "exists": True}, context={"ticket": "T-1"})
        assert matches({"field": "context.ticket", "exists": False}, context={})

    def test_top_level_fields(self) -> None:
        assert matches({"field": "user", "exists": True}, user="alice")
        assert not matches({"field": "user", "exists": True})
        assert matches({"field": "roles", "exists": False})
        assert matches({"field": "roles", "exists": True}, roles=("r",))
        assert matches({"field": "labels", "exists": False})
        assert not matches({"field": "labels", "exists": False}, labels=frozenset({"x"}))
        assert matches({"field": "session", "exists": True}, session="s")


class TestCombinators:
    A = {"arg": "a", "eq": 1}
    B = {"arg": "b", "eq": 1}

    @pytest.mark.parametrize(
        ("a", "b", "all_", "any_"),
        [(1, 1, True, True), (1, 0, False, True), (0, 1, False, True), (0, 0, False, False)],
    )
    def test_all_any(self, a: int, b: int, all_: bool, any_: bool) -> None:
        args = {"a": a, "b": b}
        assert matches({"all": [self.A, self.B]}, args) is all_
        assert matches({"any": [self.A, self.B]}, args) is any_

    def test_not_single_and_list(self) -> None:
        assert matches({"not": self.A}, {"a": 0})
        assert not matches({"not": self.A}, {"a": 1})
        # "not" of a list negates their conjunction
        assert matches({"not": [self.A, self.B]}, {"a": 1, "b": 0})
        assert not matches({"not": [self.A, self.B]}, {"a": 1, "b": 1})

    def test_several_when_entries_are_a_conjunction(self) -> None:
        policy = policy_from_text(
            "version: 1\ntools:\n  t: {args: {type: object}}\nrules:\n"
            "  - {id: r, effect: allow, tool: t, when: [{arg: a, eq: 1}, {arg: b, eq: 1}]}\n"
        )
        ok = Action(kind="tool_call", tool="t", args={"a": 1, "b": 1})
        half = Action(kind="tool_call", tool="t", args={"a": 1, "b": 2})
        assert policy.evaluate(ok).allowed
        assert not policy.evaluate(half).allowed

    def test_short_circuit_avoids_errors(self) -> None:
        # "any" stops at the first true branch; "all" at the first false one
        assert matches({"any": [self.A, {"arg": "missing", "eq": 1}]}, {"a": 1})
        assert not matches({"all": [self.A, {"arg": "missing", "eq": 1}]}, {"a": 0})

    def test_error_inside_not_is_still_an_error(self) -> None:
        # Negating an error must not turn it into a match for an allow rule.
        assert fails({"not": {"arg": "missing", "eq": 1}}, {}) == "rule r: missing field 'missing'"

    def test_error_inside_any_is_an_error(self) -> None:
        assert fails({"any": [{"arg": "a", "eq": 2}, {"arg": "m", "eq": 1}]}, {"a": 1}) == (
            "rule r: missing field 'm'"
        )


class TestFields:
    def test_agent(self) -> None:
        assert matches({"field": "agent", "glob": "bot-*"}, agent="bot-1")
        assert not matches({"field": "agent", "eq": "bot"}, agent="bot-1")

    def test_roles(self) -> None:
        assert matches({"field": "roles", "contains": "admin"}, roles=("dev", "admin"))
        assert not matches({"field": "roles", "contains": "admin"}, roles=("dev",))

    def test_user(self) -> None:
        assert matches({"field": "user", "eq": "alice"}, user="alice")
        assert not matches({"field": "user", "eq": "alice"})
        assert fails({"field": "user", "startswith": "a"}).startswith("rule r: wrong type (")

    def test_session_request_reason_delegation_kind_tool(self) -> None:
        assert matches({"field": "session", "eq": "s1"}, session="s1")
        assert matches({"field": "request", "regex": "(?i)delete"}, request="Please DELETE it")
        assert matches({"field": "reason", "contains": "cleanup"}, reason="routine cleanup")
        assert matches({"field": "delegation", "contains": "parent"}, delegation=("parent",))
        assert matches({"field": "kind", "eq": "tool_call"})
        assert matches({"field": "tool", "eq": "t"})

    def test_time(self) -> None:
        assert matches({"field": "time_ns", "lt": 100}, time_ns=99)
        assert not matches({"field": "time_ns", "lt": 100}, time_ns=100)

    def test_labels(self) -> None:
        assert matches(
            {"field": "labels", "contains": "untrusted"}, labels=frozenset({"untrusted"})
        )
        assert not matches({"field": "labels", "contains": "untrusted"}, labels=frozenset())

    def test_context(self) -> None:
        assert matches({"field": "context.env", "eq": "prod"}, context={"env": "prod"})
        assert matches({"field": "context.a.b", "gt": 1}, context={"a": {"b": 2}})
        assert fails({"field": "context.env", "eq": "prod"}) == "rule r: missing field 'env'"

    def test_resources(self) -> None:
        res = (Resource("path", "/data/x"), Resource("host", "a.com"))
        assert matches({"field": "resources", "contains": "host:a.com"}, resources=res)
        assert not matches({"field": "resources", "contains": "host:b.com"}, resources=res)
