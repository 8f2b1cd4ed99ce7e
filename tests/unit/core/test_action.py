"""The Action value and the input gate (:func:`argument_problem`)."""

from __future__ import annotations

import math

import msgspec
import pytest

from ringfence.core.action import INT_MAX, INT_MIN, Action, Limits, Resource, argument_problem


def nested(depth: int) -> dict[str, object]:
    """``{"a": {"a": … {"a": 1}}}`` with ``depth`` levels of dict below the top."""
    node: object = 1
    for _ in range(depth):
        node = {"a": node}
    return {"a": node}


class TestAccepted:
    @pytest.mark.parametrize(
        "args",
        [
            {},
            {"s": "text", "i": 3, "f": 1.5, "b": True, "n": None},
            {"list": [1, "two", 3.0, None, False], "obj": {"k": {"k2": []}}},
            {"unicode": "ünïcødé ✓ 𝄞", "ключ": "значение"},
            {"tuple": (1, 2)},
            {"int_min": INT_MIN, "int_max": INT_MAX, "neg_zero": -0.0},
            {"long_key_" + "k" * 300: 1},
            {"x": "s" * 5000},
        ],
    )
    def test_plain_json_is_accepted(self, args: dict[str, object]) -> None:
        assert argument_problem(args) is None

    def test_depth_up_to_the_limit_is_accepted(self) -> None:
        # args itself is depth 0; nested(31) puts the innermost dict at depth 31, the last allowed
        assert argument_problem(nested(31)) is None


class TestRejected:
    def test_non_dict_top_level(self) -> None:
        assert argument_problem([1]) == "args: expected an object, got list"
        assert argument_problem(None) == "args: expected an object, got NoneType"

    @pytest.mark.parametrize(
        ("value", "shown"),
        [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")],
    )
    def test_non_finite_floats(self, value: float, shown: str) -> None:
        assert argument_problem({"a": {"b": [0, 1, value]}}) == (
            f"args.a.b[2]: {shown} is not allowed (numbers must be finite)"
        )

    def test_non_finite_float_at_top_level_escapes_the_fast_path(self) -> None:
        assert argument_problem({"x": math.nan}) == (
            "args.x: nan is not allowed (numbers must be finite)"
        )

    @pytest.mark.parametrize("value", [INT_MAX + 1, INT_MIN - 1, 2**100, -(2**100)])
    def test_integers_beyond_64_bits(self, value: int) -> None:
        assert argument_problem({"n": value}) == "args.n: integer out of the 64-bit range"
        assert argument_problem({"deep": [[value]]}) == (
            "args.deep[0][0]: integer out of the 64-bit range"
        )

    def test_unsigned_64_bit_maximum_is_the_upper_bound(self) -> None:
        # 2**63 .. 2**64-1 leave the fast path but are still in range (uint64)
        assert argument_problem({"n": 2**63}) is None
        assert argument_problem({"n": 2**64 - 1}) is None
        assert argument_problem({"n": 2**64}) is not None

    def test_lone_surrogate_in_value(self) -> None:
        assert argument_problem({"a": ["ok", "bad\ud800"]}) == (
            "args.a[1]: string is not valid UTF-8 (lone surrogate)"
        )

    def test_lone_surrogate_in_key(self) -> None:
        assert argument_problem({"outer": {"k\udfff": 1}}) == (
            "args.outer.k\udfff: string is not valid UTF-8 (lone surrogate)"
        )

    def test_non_string_keys(self) -> None:
        assert argument_problem({1: "x"}) == "args: key 1 is not a string"
        assert argument_problem({"a": {None: 1}}) == "args.a: key None is not a string"
        assert argument_problem({"a": {(1, 2): 1}}) == "args.a: key (1, 2) is not a string"

    @pytest.mark.parametrize(
        ("value", "type_name"),
        [
            (b"bytes", "bytes"),
            ({1, 2}, "set"),
            (frozenset(), "frozenset"),
            (object(), "object"),
            (1 + 2j, "complex"),
            (bytearray(b"x"), "bytearray"),
        ],
    )
    def test_non_json_types(self, value: object, type_name: str) -> None:
        assert argument_problem({"a": [{"b": value}]}) == (
            f"args.a[0].b: {type_name} is not a JSON value "
            "(use str, int, float, bool, None, list, dict)"
        )

    def test_subclasses_of_json_types_are_not_json(self) -> None:
        class Str(str):
            pass

        class Dict(dict):  # type: ignore[type-arg]
            pass

        assert argument_problem({"a": Str("x")}) == (
            "args.a: Str is not a JSON value (use str, int, float, bool, None, list, dict)"
        )
        assert argument_problem(Dict()) == "args: expected an object, got Dict"

    def test_too_deep(self) -> None:
        problem = argument_problem(nested(32))
        assert problem == "args" + ".a" * 32 + ": nested deeper than 32 levels"

    def test_too_deep_lists(self) -> None:
        value: object = []
        for _ in range(40):
            value = [value]
        problem = argument_problem({"x": value})
        assert problem == "args.x" + "[0]" * 31 + ": nested deeper than 32 levels"

    def test_more_values_than_max_nodes(self) -> None:
        limits = Limits(max_nodes=10)
        assert argument_problem({"a": list(range(8))}, limits) is None  # 1 + 1 + 8 = 10
        assert argument_problem({"a": list(range(9))}, limits) == (
            "args.a[8]: arguments have more than 10 values"
        )

    def test_default_node_limit(self) -> None:
        assert argument_problem({"a": [0] * 9_998}) is None
        assert argument_problem({"a": [0] * 9_999}) == (
            "args.a[9998]: arguments have more than 10000 values"
        )

    def test_oversized_string(self) -> None:
        limits = Limits(max_string_bytes=10)
        assert argument_problem({"s": "x" * 10}, limits) is None
        assert argument_problem({"s": "x" * 11}, limits) == (
            "args.s: string of 11 bytes exceeds the limit of 10"
        )

    def test_string_size_counts_utf8_bytes_not_characters(self) -> None:
        limits = Limits(max_string_bytes=10)
        assert argument_problem({"s": "é" * 5}, limits) is None  # 10 bytes
        assert argument_problem({"s": "é" * 6}, limits) == (
            "args.s: string of 12 bytes exceeds the limit of 10"
        )

    def test_oversized_key(self) -> None:
        limits = Limits(max_string_bytes=4)
        assert argument_problem({"abcde": 1}, limits) == (
            "args.abcde: string of 5 bytes exceeds the limit of 4"
        )

    def test_total_size(self) -> None:
        limits = Limits(max_total_bytes=20)
        assert argument_problem({"a": "x" * 9, "b": "y" * 9}, limits) is None  # 2 + 18
        assert argument_problem({"a": "x" * 9, "b": "y" * 10}, limits) == (
            "args.b: arguments exceed the total size limit of 20 bytes"
        )

    def test_first_problem_is_reported(self) -> None:
        assert argument_problem({"a": 1, "b": math.inf, "c": b"x"}) == (
            "args.b: inf is not allowed (numbers must be finite)"
        )


class TestActionValue:
    def test_defaults(self) -> None:
        a = Action(kind="tool_call", tool="t")
        assert a.args == {}
        assert a.agent == "anonymous"
        assert a.roles == ()
        assert a.user is None
        assert a.labels == frozenset()
        assert a.context == {}
        assert a.time_ns == 0

    def test_frozen(self) -> None:
        a = Action(kind="tool_call", tool="t")
        with pytest.raises(AttributeError):
            a.tool = "other"  # type: ignore[misc]

    def test_field_order_is_pinned(self) -> None:
        # The Guard builds Actions positionally (it is several times cheaper): a reordering
        # of the fields must be a deliberate change that updates Guard.action too.
        assert Action.__struct_fields__[:14] == (
            "kind",
            "tool",
            "args",
            "agent",
            "roles",
            "user",
            "delegation",
            "resources",
            "session",
            "trace_id",
            "span_id",
            "request",
            "reason",
            "time_ns",
        )

    def test_default_containers_are_not_shared(self) -> None:
        a, b = Action(kind="k", tool="t"), Action(kind="k", tool="t")
        assert a.args is not b.args
        assert a.context is not b.context

    def test_equality_and_round_trip(self) -> None:
        a = Action(
            kind="tool_call",
            tool="t",
            args={"x": 1},
            roles=("r",),
            resources=(Resource("path", "/x"),),
            labels=frozenset({"untrusted"}),
        )
        assert a == Action(
            kind="tool_call",
            tool="t",
            args={"x": 1},
            roles=("r",),
            resources=(Resource("path", "/x"),),
            labels=frozenset({"untrusted"}),
        )
        assert msgspec.json.decode(msgspec.json.encode(a), type=Action) == a

    def test_resource_str(self) -> None:
        assert str(Resource("path", "/data/x")) == "path:/data/x"
        assert Resource("host", "a") == Resource("host", "a")
        assert Resource("host", "a") != Resource("url", "a")


class TestCustomLimitsOnFlatArguments:
    """Flat, short arguments take a fast path; it must still honour tighter limits."""

    def test_node_limit(self) -> None:
        limits = Limits(max_nodes=3)
        assert argument_problem({"a": 1, "b": 2}, limits) is None
        assert argument_problem({"a": 1, "b": 2, "c": 3}, limits) == (
            "args.c: arguments have more than 3 values"
        )

    def test_depth_zero_refuses_even_an_empty_object(self) -> None:
        assert argument_problem({}, Limits(max_depth=0)) == "args: nested deeper than 0 levels"

    def test_string_and_total_limits(self) -> None:
        assert argument_problem({"s": "abc"}, Limits(max_string_bytes=2)) == (
            "args.s: string of 3 bytes exceeds the limit of 2"
        )
        assert argument_problem({"s": "abc"}, Limits(max_total_bytes=3)) == (
            "args.s: arguments exceed the total size limit of 3 bytes"
        )
