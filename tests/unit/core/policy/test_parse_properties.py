"""Property tests: loading a policy fails only with PolicyError; evaluating never raises."""

from __future__ import annotations

import math
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ringfence.core.action import Action
from ringfence.core.decision import Effect
from ringfence.core.policy.engine import Policy
from ringfence.core.policy.load import policy_from_text
from ringfence.core.policy.model import (
    ACTION_FIELDS,
    COMBINATORS,
    MEMBER_OPS,
    NUMBER_OPS,
    OPERATORS,
    STRING_OPS,
)
from ringfence.errors import PolicyError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def load(text: str | bytes) -> Policy | None:
    """Load ``text``; a PolicyError is fine, anything else propagates and fails the test."""
    try:
        return policy_from_text(text, "fuzz.yaml")
    except PolicyError as err:
        assert err.code.startswith("policy.")
        assert err.message
        assert err.source == "fuzz.yaml" or err.source is None or "fuzz.yaml" in err.source
        return None


@SETTINGS
@given(st.text(max_size=300))
@example("[" * 100 + "]" * 100)
@example("a: &x [1]\nb: *x\n")
@example("version: 1\nrules: [{id: r, effect: allow, when: {arg: x, regex: '('}}]\n")
@example("version: 1\ud800\n")
@example("\x00")
@example("version: 1\nrules:\n  - {id: r, effect: allow}\n---\n")
def test_arbitrary_text(text: str) -> None:
    load(text)


@SETTINGS
@given(st.binary(max_size=300))
@example(b"\xff\xfe")
@example(b"version: 1\nname: \xc3\x28\n")
def test_arbitrary_bytes(data: bytes) -> None:
    load(data)


@SETTINGS
@given(json_like)
def test_arbitrary_structures_dumped_to_yaml(value: Any) -> None:
    load(yaml.safe_dump(value))
    load(yaml.safe_dump({"version": 1, "rules": value}))
    load(yaml.safe_dump({"version": 1, "tools": value, "rules": [{"id": "r", "effect": "deny"}]}))


# Near-valid policies: the known keys with random (often wrong) values, to reach deep checks.


def mostly(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    """Values that are usually valid, so that generated policies often load."""
    # Hypothesis favours 0, so the rare branch is another number.
    return st.integers(0, 9).flatmap(lambda i: st.sampled_from(bad if i == 7 else good))


tool_names = mostly(["t", "read_file", "send", "x.y"], ["bad name", "", "1x"])
names = mostly(["t", "read_file", "send", "x.y", "*", "read_*"], ["bad name", ""])
arg_names = mostly(["x", "path", "n", "a.b"], ["missing", "", "a..b"])
any_operand = scalars | st.lists(scalars, max_size=3) | st.sampled_from(["(", "[a-", "**"])
finite = st.integers(-(2**64), 2**64) | st.floats(allow_nan=False, allow_infinity=False)
patterns = st.sampled_from(["/data/*", "/data/**", "**/*.key", "a", "^x", "(?i)y", "b|c", ""])
plain = st.none() | st.booleans() | finite | st.text(max_size=6)
OPERAND_FOR: dict[str, st.SearchStrategy[Any]] = {
    **{op: patterns | st.lists(patterns, min_size=1, max_size=3) for op in STRING_OPS},
    **{op: finite for op in NUMBER_OPS},
    **{op: st.lists(plain, min_size=1, max_size=4) for op in MEMBER_OPS},
    "exists": st.booleans(),
    "eq": plain,
    "ne": plain,
    "contains": plain,
    "equals": plain,
    "provenance": st.sampled_from(["untrusted_only", "unknown", "not_trusted", "from_user", "x"]),
}


def operand_for(op: str) -> st.SearchStrategy[Any]:
    return st.integers(0, 9).flatmap(lambda i: any_operand if i == 7 else OPERAND_FOR[op])


@st.composite
def conditions(draw: st.DrawFn, depth: int = 0) -> Any:
    if depth < 3 and draw(st.integers(0, 4)) == 0:
        op = draw(st.sampled_from(COMBINATORS))
        children = draw(st.lists(conditions(depth + 1), max_size=3))
        return {op: children[0] if op == "not" and children and draw(st.booleans()) else children}
    cond: dict[str, Any] = {}
    if draw(st.booleans()):
        cond["arg"] = draw(arg_names)
    else:
        cond["field"] = draw(mostly([*ACTION_FIELDS, "context.x", "args.x"], ["args", "nope"]))
    op = draw(mostly(list(OPERATORS), ["equals"]))
    cond[op] = draw(operand_for(op))
    if draw(st.integers(0, 19)) == 0:
        cond[draw(st.sampled_from(OPERATORS))] = draw(any_operand)
    return cond


schemas = st.one_of(
    st.none(),
    st.just({"type": "object"}),
    st.fixed_dictionaries(
        {
            "properties": st.dictionaries(
                st.sampled_from(["x", "path", "n", "a"]),
                st.sampled_from(
                    [
                        {},
                        {"type": "string"},
                        {"type": "integer"},
                        {"type": ["string", "array"]},
                        {"type": "object", "properties": {"b": {"type": "string"}}},
                        {"type": 5},
                        {"pattern": "("},
                        {"$ref": "#/nope"},
                    ]
                ),
                max_size=3,
            )
        },
        optional={"additionalProperties": st.booleans(), "required": st.just(["x"])},
    ),
    json_like,
)


@st.composite
def tools(draw: st.DrawFn) -> Any:
    decl: dict[str, Any] = {}
    if draw(st.booleans()):
        decl["args"] = draw(schemas)
    if draw(st.booleans()):
        decl["resources"] = draw(
            st.dictionaries(arg_names, mostly(["path", "url", "host"], ["bad type"]), max_size=2)
        )
    if draw(st.integers(0, 5)) == 0:
        decl["kind"] = draw(st.sampled_from(["tool_call", "mcp_request", "Bad Kind", 3]))
    return decl


@st.composite
def rules(draw: st.DrawFn) -> Any:
    rule: dict[str, Any] = {
        "id": draw(mostly([f"r{draw(st.integers(0, 10**6))}"], ["-bad", 7, "r1"])),
        "effect": draw(mostly(["allow", "deny", "require_approval"], ["permit", 1])),
    }
    optional: dict[str, Any] = {
        "tool": names | st.lists(names, max_size=2),
        "kind": st.sampled_from(["tool_call", "mcp_request", ["tool_call"]]),
        "agent": names,
        "role": st.sampled_from(["admin", ["a", "b"], []]),
        "user": names,
        "resource": st.sampled_from(["path:/data/**", "host:*.com", "path", ["url:https://**"]]),
        "when": st.lists(conditions(), max_size=3) | conditions(),
        "cel": st.sampled_from(
            ["args.x > 1", "action.agent == 'a'", "args.x ==", "args.missing", "foo", "args.x"]
        ),
        "redact": st.sampled_from(["args.x", ["args.path", "request"], "password"]),
        "labels": st.sampled_from(["untrusted", ["a b"]]),
        "reason": st.text(max_size=5),
        "bogus": st.integers(),
        "description": st.text(max_size=5),
    }
    keys = draw(st.lists(st.sampled_from(sorted(optional)), max_size=4, unique=True))
    if "bogus" in keys and draw(st.integers(0, 4)):
        keys.remove("bogus")
    for key in keys:
        rule[key] = draw(optional[key])
    return rule


policies = st.fixed_dictionaries(
    {
        "version": mostly([1], [2, "1"]),
        "tools": st.dictionaries(tool_names, tools(), max_size=3),
        "rules": st.lists(rules(), min_size=0, max_size=4),
    }
)

arg_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["/data/x", "/etc/passwd", "https://a.com:99999/", "http://[::1"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
actions = st.builds(
    Action,
    kind=st.sampled_from(["tool_call", "mcp_request"]),
    tool=names,
    args=st.dictionaries(st.sampled_from(["x", "path", "n", "a", "url"]), arg_values, max_size=4),
    agent=st.sampled_from(["a", "bot-1"]),
    user=st.none() | st.just("alice"),
    roles=st.sampled_from([(), ("admin",)]),
    labels=st.sampled_from([frozenset(), frozenset({"untrusted"})]),
    context=st.dictionaries(st.sampled_from(["x", "env"]), arg_values, max_size=2),
)


class _NoAliases(yaml.SafeDumper):
    """Dump shared objects twice instead of as anchors and aliases (which policies refuse)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies, st.lists(actions, max_size=4))
def test_near_valid_policies_load_or_fail_cleanly_and_never_raise_when_evaluating(
    doc: dict[str, Any], batch: list[Action]
) -> None:
    policy = load(yaml.dump(doc, Dumper=_NoAliases))
    if policy is None:
        return
    for action in batch:
        decision = policy.evaluate(action, "d")
        assert decision.effect in (Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL)
        assert decision.rules
        assert decision.policy_version == policy.version
        if decision.allowed:
            # an allow never comes with an unresolved input problem
            assert not decision.rules[0].startswith("ringfence:")
        if any(isinstance(v, float) and not math.isfinite(v) for v in action.args.values()):
            assert decision.rules == ("ringfence:input",)
