"""The compiled policy: combining, scope, resources, the input gate, the index, versions."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import pytest

from ringfence.core.action import Action, Limits, Resource
from ringfence.core.decision import Decision, Effect, Obligations
from ringfence.core.policy import engine
from ringfence.core.policy.engine import DEFAULT_RULE, INPUT_RULE, SCHEMA_RULE, Policy
from ringfence.core.policy.load import policy_from_text
from ringfence.errors import DeniedError


def load(text: str, **kw: Any) -> Policy:
    return policy_from_text(textwrap.dedent(text).lstrip("\n"), **kw)


def act(tool: str = "t", args: dict[str, Any] | None = None, **kw: Any) -> Action:
    return Action(kind=kw.pop("kind", "tool_call"), tool=tool, args=args or {}, **kw)


class TestCombining:
    POLICY = load(
        """
        version: 1
        tools:
          t: {args: {type: object}}
        rules:
          - {id: allow-all, effect: allow, tool: t}
          - {id: approve-big, effect: require_approval, tool: t, when: {arg: n, gt: 10}}
          - {id: deny-huge, effect: deny, tool: t, when: {arg: n, gt: 100}, reason: too big}
          - {id: deny-neg, effect: deny, tool: t, when: {arg: n, lt: 0}}
          - {id: deny-neg-too, effect: deny, tool: t, when: {arg: n, lt: -10}}
        """
    )

    def test_allow(self) -> None:
        d = self.POLICY.evaluate(act(args={"n": 1}))
        assert (d.effect, d.rules, d.reasons) == (
            Effect.ALLOW,
            ("allow-all",),
            ("rule allow-all (allow)",),
        )
        assert d.allowed

    def test_approval_beats_allow(self) -> None:
        d = self.POLICY.evaluate(act(args={"n": 11}))
        assert (d.effect, d.rules) == (Effect.REQUIRE_APPROVAL, ("approve-big",))
        assert not d.allowed

    def test_deny_beats_approval_and_allow(self) -> None:
        d = self.POLICY.evaluate(act(args={"n": 101}))
        assert (d.effect, d.rules, d.reasons) == (Effect.DENY, ("deny-huge",), ("too big",))

    def test_every_matching_deny_is_listed_in_file_order(self) -> None:
        d = self.POLICY.evaluate(act(args={"n": -11}))
        assert (d.effect, d.rules) == (Effect.DENY, ("deny-neg", "deny-neg-too"))
        assert d.reasons == ("rule deny-neg (deny)", "rule deny-neg-too (deny)")

    def test_no_match_is_default_deny(self) -> None:
        d = self.POLICY.evaluate(act(tool="other"))
        assert (d.effect, d.rules) == (Effect.DENY, (DEFAULT_RULE,))
        assert d.rules == ("ringfence:default-deny",)
        assert d.reasons == ("no rule allows tool_call 'other' (default deny)",)
        assert d.errors == ()

    def test_decision_id_and_version_are_recorded(self) -> None:
        for args in ({"n": 1}, {"n": 11}, {"n": 101}, {"n": "x"}, {"n": math.nan}):
            d = self.POLICY.evaluate(act(args=args), decision_id="dec-1")
            assert d.decision_id == "dec-1"
            assert d.policy_version == self.POLICY.version
        d = self.POLICY.evaluate(act(tool="nope"), "dec-2")
        assert (d.decision_id, d.policy_version) == ("dec-2", self.POLICY.version)


class TestErrorsWhileEvaluating:
    POLICY = load(
        """
        version: 1
        tools:
          t: {args: {type: object}}
        rules:
          - {id: allow-small, effect: allow, tool: t, when: {arg: n, lt: 10}}
          - {id: approve-flag, effect: require_approval, tool: t, when: {arg: flag, eq: true}}
          - {id: deny-path, effect: deny, tool: t, when: {arg: path, startswith: /etc}}
        """
    )

    def test_deny_rule_that_errs_denies(self) -> None:
        # "path" missing: the deny rule errs and so matches; the allow rule would have allowed.
        d = self.POLICY.evaluate(act(args={"n": 1, "flag": False}))
        assert (d.effect, d.rules) == (Effect.DENY, ("deny-path",))
        assert d.errors == ("rule deny-path: missing field 'path'",)

    def test_wrong_type_in_a_deny_rule_denies(self) -> None:
        d = self.POLICY.evaluate(act(args={"n": 1, "flag": False, "path": 5}))
        assert (d.effect, d.rules) == (Effect.DENY, ("deny-path",))
        assert len(d.errors) == 1
        assert d.errors[0].startswith("rule deny-path: wrong type (")

    def test_approval_rule_that_errs_requires_approval(self) -> None:
        d = self.POLICY.evaluate(act(args={"n": 1, "path": "/data"}))
        assert (d.effect, d.rules) == (Effect.REQUIRE_APPROVAL, ("approve-flag",))
        assert d.errors == ("rule approve-flag: missing field 'flag'",)

    def test_allow_rule_that_errs_does_not_allow(self) -> None:
        d = self.POLICY.evaluate(act(args={"n": "1", "flag": False, "path": "/data"}))
        assert (d.effect, d.rules) == (Effect.DENY, (DEFAULT_RULE,))
        assert d.errors == ("rule allow-small: wrong type (expected a number, got str)",)

    def test_errors_of_every_group_evaluated_are_collected(self) -> None:
        d = self.POLICY.evaluate(act(args={"path": "/data"}))
        assert (d.effect, d.rules) == (Effect.REQUIRE_APPROVAL, ("approve-flag",))
        # the allow group is never reached once approval matched
        assert d.errors == ("rule approve-flag: missing field 'flag'",)
        d = self.POLICY.evaluate(act(args={"path": "/data", "flag": False}))
        assert (d.effect, d.rules) == (Effect.DENY, (DEFAULT_RULE,))
        assert d.errors == ("rule allow-small: missing field 'n'",)


class TestScope:
    POLICY = load(
        """
        version: 1
        rules:
          - {id: kinds, effect: allow, kind: [mcp_request, http_request], tool: k}
          - {id: exact, effect: allow, tool: read_file}
          - {id: globbed, effect: allow, tool: 'mcp.github.*'}
          - {id: agents, effect: allow, tool: a, agent: ['bot-*', admin]}
          - {id: roles, effect: allow, tool: r, role: [ops, sre]}
          - {id: users, effect: allow, tool: u, user: 'alice'}
          - {id: everything, effect: allow, tool: e, kind: tool_call, agent: x, role: y, user: z}
        """
    )

    def allowed_by(self, action: Action) -> tuple[str, ...] | None:
        d = self.POLICY.evaluate(action)
        return d.rules if d.allowed else None

    def test_kind_list(self) -> None:
        assert self.allowed_by(act("k", kind="mcp_request")) == ("kinds",)
        assert self.allowed_by(act("k", kind="http_request")) == ("kinds",)
        assert self.allowed_by(act("k", kind="tool_call")) is None

    def test_tool_exact(self) -> None:
        assert self.allowed_by(act("read_file")) == ("exact",)
        assert self.allowed_by(act("read_file2")) is None
        assert self.allowed_by(act("READ_FILE")) is None

    def test_tool_glob(self) -> None:
        assert self.allowed_by(act("mcp.github.create_issue")) == ("globbed",)
        assert self.allowed_by(act("mcp.gitlab.create_issue")) is None

    def test_agent_glob(self) -> None:
        assert self.allowed_by(act("a", agent="bot-7")) == ("agents",)
        assert self.allowed_by(act("a", agent="admin")) == ("agents",)
        assert self.allowed_by(act("a", agent="robot-7")) is None
        assert self.allowed_by(act("a")) is None  # "anonymous"

    def test_role(self) -> None:
        assert self.allowed_by(act("r", roles=("dev", "sre"))) == ("roles",)
        assert self.allowed_by(act("r", roles=("dev",))) is None
        assert self.allowed_by(act("r")) is None

    def test_user(self) -> None:
        assert self.allowed_by(act("u", user="alice")) == ("users",)
        assert self.allowed_by(act("u", user="alice2")) is None
        assert self.allowed_by(act("u")) is None

    def test_every_scope_must_hold(self) -> None:
        full = {"agent": "x", "roles": ("y",), "user": "z"}
        assert self.allowed_by(act("e", **full)) == ("everything",)
        for key, wrong in (("agent", "w"), ("roles", ("w",)), ("user", "w")):
            assert self.allowed_by(act("e", **{**full, key: wrong})) is None
        assert self.allowed_by(act("e", kind="mcp_request", **full)) is None


class TestResources:
    POLICY = load(
        """
        version: 1
        tools:
          read:
            args: {properties: {path: {type: [string, array]}}}
            resources: {path: path}
          fetch:
            args: {properties: {url: {type: string}}}
            resources: {url: url}
        rules:
          - {id: read-data, effect: allow, tool: read, resource: 'path:/data/**'}
          - {id: no-secrets, effect: deny, tool: read, resource: ['path:**/*.key', 'path:/etc/**']}
          - {id: fetch-example, effect: allow, tool: fetch, resource: 'host:example.com'}
          - {id: fetch-api, effect: allow, tool: fetch, resource: 'url:https://api.example.org/v1/**'}
          - {id: no-evil, effect: deny, tool: fetch, resource: 'host:*.evil.com'}
        """
    )

    def decide(self, tool: str, **args: Any) -> Decision:
        return self.POLICY.evaluate(act(tool, args))

    def test_allow_when_every_resource_fits(self) -> None:
        assert self.decide("read", path="/data/a/b").rules == ("read-data",)
        assert self.decide("read", path=["/data/a", "/data/b"]).rules == ("read-data",)

    def test_allow_needs_every_resource_of_the_type_to_fit(self) -> None:
        d = self.decide("read", path=["/data/x", "/tmp/passwd"])
        assert (d.effect, d.rules) == (Effect.DENY, (DEFAULT_RULE,))

    def test_deny_matches_if_any_resource_fits(self) -> None:
        d = self.decide("read", path=["/data/x", "/etc/passwd"])
        assert (d.effect, d.rules) == (Effect.DENY, ("no-secrets",))
        d = self.decide("read", path=["/data/ok", "/data/id.key"])
        assert (d.effect, d.rules) == (Effect.DENY, ("no-secrets",))

    def test_paths_are_normalised_before_matching(self) -> None:
        d = self.decide("read", path="/data/../etc/passwd")
        assert (d.effect, d.rules) == (Effect.DENY, ("no-secrets",))
        d = self.decide("read", path="/data/../tmp/x")
        assert (d.effect, d.rules) == (Effect.DENY, (DEFAULT_RULE,))
        assert self.decide("read", path="//data/./x").rules == ("read-data",)

    def test_allow_with_no_resource_of_the_type_does_not_match(self) -> None:
        d = self.decide("read")
        assert (d.effect, d.rules) == (Effect.DENY, (DEFAULT_RULE,))
        d = self.decide("read", path=[])
        assert (d.effect, d.rules) == (Effect.DENY, (DEFAULT_RULE,))

    def test_url_yields_a_host_resource(self) -> None:
        assert self.decide("fetch", url="https://example.com/x").rules == ("fetch-example",)
        assert self.decide("fetch", url="HTTPS://EXAMPLE.COM./x").rules == ("fetch-example",)
        d = self.decide("fetch", url="https://example.com.attacker.net/")
        assert d.rules == (DEFAULT_RULE,)
        d = self.decide("fetch", url="https://example.com@attacker.net/")
        assert d.rules == (DEFAULT_RULE,)

    def test_url_pattern(self) -> None:
        assert self.decide("fetch", url="https://api.example.org/v1/a/b").rules == ("fetch-api",)
        d = self.decide("fetch", url="https://api.example.org/v1/../admin")
        assert d.rules == (DEFAULT_RULE,)

    def test_host_case_is_folded(self) -> None:
        d = self.decide("fetch", url="https://X.EVIL.COM/")
        assert (d.effect, d.rules) == (Effect.DENY, ("no-evil",))

    def test_unparseable_url_is_not_allowed_and_does_not_raise(self) -> None:
        for url in ("https://example.com:notaport/", "https://example.com:70000/", "http://[::1"):
            d = self.decide("fetch", url=url)
            assert (d.effect, d.rules) == (Effect.DENY, (DEFAULT_RULE,))

    def test_resource_argument_of_the_wrong_type_is_an_input_deny(self) -> None:
        d = self.decide("read", path=["/data/x", 5])
        assert (d.effect, d.rules) == (Effect.DENY, (INPUT_RULE,))
        assert d.reasons == ("args.path names a path resource but is a int",)

    def test_resources_named_by_the_caller_count_too(self) -> None:
        d = self.POLICY.evaluate(
            act("read", {"path": "/data/x"}, resources=(Resource("path", "/etc/shadow"),))
        )
        assert (d.effect, d.rules) == (Effect.DENY, ("no-secrets",))

    def test_resources_of_and_decide(self) -> None:
        action = act("fetch", {"url": "https://Example.com/a"})
        expected = (Resource("url", "https://example.com/a"), Resource("host", "example.com"))
        assert self.POLICY.resources_of(action) == expected
        decision, res = self.POLICY.decide(action)
        assert decision.rules == ("fetch-example",)
        assert res == expected
        assert self.POLICY.resources_of(act("undeclared")) == ()


class TestInputGate:
    POLICY = load(
        """
        version: 1
        tools:
          t:
            args:
              type: object
              properties: {n: {type: integer, minimum: 0}, s: {type: string}}
              required: [n]
              additionalProperties: false
        rules:
          - {id: allow-t, effect: allow, tool: t}
          - {id: allow-any, effect: allow, tool: 'u*'}
        """
    )

    @pytest.mark.parametrize(
        ("args", "reason"),
        [
            (
                {"a": {"b": [0, 1, math.nan]}},
                "args.a.b[2]: nan is not allowed (numbers must be finite)",
            ),
            ({"a": math.inf}, "args.a: inf is not allowed (numbers must be finite)"),
            ({"a": [-math.inf]}, "args.a[0]: -inf is not allowed (numbers must be finite)"),
            ({"a": 2**64}, "args.a: integer out of the 64-bit range"),
            ({"a": -(2**63) - 1}, "args.a: integer out of the 64-bit range"),
            ({"a": "\ud800"}, "args.a: string is not valid UTF-8 (lone surrogate)"),
            ({"\udc00": 1}, "args.\udc00: string is not valid UTF-8 (lone surrogate)"),
            ({1: 1}, "args: key 1 is not a string"),
            (
                {"a": b"x"},
                "args.a: bytes is not a JSON value (use str, int, float, bool, None, list, dict)",
            ),
            (
                {"a": {1, 2}},
                "args.a: set is not a JSON value (use str, int, float, bool, None, list, dict)",
            ),
            (
                {"a": object()},
                "args.a: object is not a JSON value (use str, int, float, bool, None, list, dict)",
            ),
        ],
    )
    def test_bad_values_deny_with_the_input_rule(self, args: dict[Any, Any], reason: str) -> None:
        for tool in ("t", "undeclared-u"):
            d = self.POLICY.evaluate(act(tool, args), "id-1")
            assert (d.effect, d.rules, d.reasons) == (Effect.DENY, (INPUT_RULE,), (reason,))
            assert d.rules == ("ringfence:input",)
            assert d.decision_id == "id-1"
            assert d.errors == ()

    def test_too_deep(self) -> None:
        node: Any = 1
        for _ in range(33):
            node = {"a": node}
        d = self.POLICY.evaluate(act("u", node))
        assert (d.effect, d.rules) == (Effect.DENY, (INPUT_RULE,))
        assert d.reasons == ("args" + ".a" * 32 + ": nested deeper than 32 levels",)

    def test_policy_limits_apply(self) -> None:
        policy = load("version: 1\nrules: [{id: r, effect: allow}]\n", limits=Limits(max_nodes=5))
        assert policy.evaluate(act("t", {"a": [1, 2, 3]})).allowed
        d = policy.evaluate(act("t", {"a": [1, 2, 3, 4]}))
        assert (d.rules, d.reasons) == (
            (INPUT_RULE,),
            ("args.a[3]: arguments have more than 5 values",),
        )
        tight = load(
            "version: 1\nrules: [{id: r, effect: allow}]\n", limits=Limits(max_string_bytes=8)
        )
        d = tight.evaluate(act("t", {"s": "123456789"}))
        assert (d.rules, d.reasons) == (
            (INPUT_RULE,),
            ("args.s: string of 9 bytes exceeds the limit of 8",),
        )

    def test_oversized_string(self) -> None:
        d = self.POLICY.evaluate(act("u", {"big": "x" * ((1 << 20) + 1)}))
        assert (d.rules, d.reasons) == (
            (INPUT_RULE,),
            (f"args.big: string of {(1 << 20) + 1} bytes exceeds the limit of {1 << 20}",),
        )

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            ({}, "must contain ['n'] properties"),
            ({"n": -1}, "args.n must be bigger than or equal to 0"),
            ({"n": "1"}, "args.n must be integer"),
            ({"n": 1, "extra": 1}, "must not contain {'extra'} properties"),
            ({"n": 1, "s": 5}, "args.s must be string"),
        ],
    )
    def test_schema_violations_deny_with_the_schema_rule(
        self, args: dict[str, Any], fragment: str
    ) -> None:
        d = self.POLICY.evaluate(act("t", args))
        assert (d.effect, d.rules) == (Effect.DENY, (SCHEMA_RULE,))
        assert d.rules == ("ringfence:schema",)
        (reason,) = d.reasons
        assert reason.startswith("arguments do not match the schema of 't': ")
        assert fragment in reason

    def test_input_gate_runs_before_the_schema(self) -> None:
        d = self.POLICY.evaluate(act("t", {"n": math.nan}))
        assert d.rules == (INPUT_RULE,)

    def test_evaluate_never_raises_for_a_bad_action(self) -> None:
        d = self.POLICY.evaluate(act("t", ["not", "a", "dict"]))  # type: ignore[arg-type]
        assert (d.rules, d.reasons) == ((INPUT_RULE,), ("args: expected an object, got list",))


class TestIndex:
    @staticmethod
    def many_tools(n: int) -> Policy:
        tools = "".join(f"  tool_{i}: {{args: {{properties: {{x: {{}}}}}}}}\n" for i in range(n))
        rules = "".join(
            f"  - {{id: r{i}, effect: deny, tool: tool_{i}, when: {{arg: x, eq: {i}}}}}\n"
            for i in range(n)
        )
        return policy_from_text(
            f"version: 1\ntools:\n{tools}rules:\n{rules}"
            "  - {id: allow-all, effect: allow, tool: 'tool_*'}\n"
        )

    def test_rules_of_other_tools_are_not_consulted(self) -> None:
        policy = self.many_tools(10)
        # tool_5's rule would err on a missing x: only tool_5's decision carries that error
        d5 = policy.evaluate(act("tool_5", {}))
        assert (d5.effect, d5.rules, d5.errors) == (
            Effect.DENY,
            ("r5",),
            ("rule r5: missing field 'x'",),
        )
        d6 = policy.evaluate(act("tool_6", {"x": 5}))
        assert (d6.effect, d6.rules, d6.errors) == (Effect.ALLOW, ("allow-all",), ())
        d6 = policy.evaluate(act("tool_6", {"x": 6}))
        assert (d6.effect, d6.rules) == (Effect.DENY, ("r6",))

    def test_glob_scoped_rules_apply_to_undeclared_tools(self) -> None:
        policy = load(
            """
            version: 1
            rules:
              - {id: no-shell, effect: deny, tool: 'shell*', reason: no shells}
              - {id: allow-all, effect: allow}
            """
        )
        d = policy.evaluate(act("shell_exec"))
        assert (d.effect, d.rules, d.reasons) == (Effect.DENY, ("no-shell",), ("no shells",))
        assert policy.evaluate(act("something_else")).rules == ("allow-all",)

    def test_more_distinct_tools_than_the_cache_holds(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(engine, "MAX_CACHED_BUCKETS", 5)
        policy = load(
            """
            version: 1
            rules:
              - {id: deny-odd, effect: deny, tool: '*1'}
              - {id: allow, effect: allow, tool: 'tool_*'}
            """
        )
        for round_ in range(2):
            for i in range(50):
                d = policy.evaluate(act(f"tool_{i}"))
                expected = ("deny-odd",) if i % 10 == 1 else ("allow",)
                assert d.rules == expected, (round_, i)
            assert policy.evaluate(act("other")).rules == (DEFAULT_RULE,)
        assert len(policy._index) == 5

    def test_declared_tools_are_indexed_at_load(self) -> None:
        policy = self.many_tools(3)
        assert set(policy._index) == {("tool_call", f"tool_{i}") for i in range(3)}


class TestVersion:
    BASE = """\
version: 1
name: p
tools:
  t:
    args: {properties: {n: {type: integer}}}
rules:
  - id: a
    effect: allow
    tool: t
    when: {arg: n, lt: 5}
"""

    def version(self, text: str) -> str:
        return policy_from_text(text).version

    def test_format(self) -> None:
        v = self.version(self.BASE)
        assert v.startswith("sha256:")
        assert len(v) == len("sha256:") + 64

    def test_same_content_same_version(self) -> None:
        reordered = """\
# a comment
rules:
  - when: {lt: 5, arg: n}    # trailing comment
    tool: t
    effect: allow
    id: a
tools:
  t: {args: {properties: {n: {type: integer}}}}
name: 'p'
version: 1
"""
        assert self.version(reordered) == self.version(self.BASE)

    def test_same_content_from_another_source_name(self) -> None:
        assert (
            policy_from_text(self.BASE, "a.yaml").version
            == policy_from_text(self.BASE, "b.yaml").version
        )

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("lt: 5", "lt: 6"),
            ("lt: 5", "le: 5"),
            ("effect: allow", "effect: deny"),
            ("id: a", "id: b"),
            ("tool: t\n", "tool: [t]\n"),
            ("name: p", "name: q"),
            ("{type: integer}", "{type: number}"),
            ("lt: 5", "lt: 5.0"),
        ],
    )
    def test_any_change_changes_the_version(self, old: str, new: str) -> None:
        assert old in self.BASE
        assert self.version(self.BASE.replace(old, new)) != self.version(self.BASE)

    def test_extra_rule_changes_the_version(self) -> None:
        more = self.BASE + "  - {id: z, effect: deny, tool: x}\n"
        assert self.version(more) != self.version(self.BASE)

    def test_rule_order_changes_the_version(self) -> None:
        two = "version: 1\nrules:\n  - {id: a, effect: allow}\n  - {id: b, effect: deny}\n"
        swapped = "version: 1\nrules:\n  - {id: b, effect: deny}\n  - {id: a, effect: allow}\n"
        assert self.version(two) != self.version(swapped)


class TestObligations:
    POLICY = load(
        """
        version: 1
        tools:
          t: {args: {properties: {secret: {}, token: {}, x: {}}}}
        rules:
          - {id: allow-t, effect: allow, tool: t, redact: [args.secret], labels: [sensitive]}
          - {id: approve-x, effect: require_approval, tool: t, when: {arg: x, eq: 1},
             redact: [args.token, request], labels: [reviewed]}
          - {id: approve-x2, effect: require_approval, tool: t, when: {arg: x, eq: 1},
             labels: [sensitive, audited]}
        """
    )

    def test_redactions_of_every_rule_of_the_tool_apply(self) -> None:
        d = self.POLICY.evaluate(act("t", {"x": 0}))
        assert d.rules == ("allow-t",)
        assert d.obligations == Obligations(
            redact=("args.secret", "args.token", "request"), labels=("sensitive",)
        )

    def test_labels_of_every_matching_rule_are_merged(self) -> None:
        d = self.POLICY.evaluate(act("t", {"x": 1}))
        assert d.rules == ("approve-x", "approve-x2")
        assert d.obligations == Obligations(
            redact=("args.secret", "args.token", "request"),
            labels=("audited", "reviewed", "sensitive"),
        )

    def test_default_deny_and_input_deny_keep_the_redactions(self) -> None:
        d = self.POLICY.evaluate(act("t", {"x": math.inf}))
        assert d.rules == (INPUT_RULE,)
        assert d.obligations.redact == ("args.secret", "args.token", "request")
        assert d.obligations.labels == ()

    def test_undeclared_tool_has_no_obligations(self) -> None:
        d = self.POLICY.evaluate(act("zzz"))
        assert d.obligations == Obligations()
        assert not d.obligations


class TestHelpers:
    POLICY = load(
        """
        version: 1
        rules:
          - {id: ok, effect: allow, tool: ok}
          - {id: ask, effect: require_approval, tool: ask}
          - {id: refuse, effect: deny, tool: refuse, reason: not this}
        """
    )

    def test_is_allowed(self) -> None:
        assert self.POLICY.is_allowed(act("ok")) is True
        assert self.POLICY.is_allowed(act("ask")) is False
        assert self.POLICY.is_allowed(act("refuse")) is False
        assert self.POLICY.is_allowed(act("unknown")) is False

    def test_authorize_returns_the_allowing_decision(self) -> None:
        d = self.POLICY.authorize(act("ok"), "d1")
        assert (d.effect, d.rules, d.decision_id) == (Effect.ALLOW, ("ok",), "d1")

    @pytest.mark.parametrize(
        ("tool", "effect", "rules"),
        [
            ("ask", Effect.REQUIRE_APPROVAL, ("ask",)),
            ("refuse", Effect.DENY, ("refuse",)),
            ("x", Effect.DENY, (DEFAULT_RULE,)),
        ],
    )
    def test_authorize_raises_carrying_the_decision(
        self, tool: str, effect: Effect, rules: tuple[str, ...]
    ) -> None:
        with pytest.raises(DeniedError) as info:
            self.POLICY.authorize(act(tool), "d2")
        err = info.value
        assert (err.decision.effect, err.decision.rules, err.decision.decision_id) == (
            effect,
            rules,
            "d2",
        )
        assert err.code == f"denied.{effect.value}"

    def test_raise_for_effect(self) -> None:
        allowed = self.POLICY.evaluate(act("ok"))
        assert allowed.raise_for_effect() is allowed
        denied = self.POLICY.evaluate(act("refuse"))
        with pytest.raises(DeniedError) as info:
            denied.raise_for_effect()
        assert info.value.decision is denied
        assert info.value.code == "denied.deny"

    def test_rules_and_tools_properties(self) -> None:
        assert [r.id for r in self.POLICY.rules] == ["ok", "ask", "refuse"]
        assert self.POLICY.tools == {}
        assert self.POLICY.name == "policy"


def test_evaluation_does_not_write_schema_defaults_into_the_arguments() -> None:
    policy = load(
        """
        version: 1
        tools:
          t:
            args:
              properties:
                recursive: {type: boolean, default: true}
                path: {type: string}
        rules:
          - {id: no-recursion, effect: deny, tool: t, when: {arg: recursive, eq: true}}
          - {id: ok, effect: allow, tool: t}
        """
    )
    action = act("t", {"path": "/x"})
    d = policy.evaluate(action)
    assert action.args == {"path": "/x"}
    # the argument is missing, so the deny rule errs and therefore denies (fail closed)
    assert (d.effect, d.rules, d.errors) == (
        Effect.DENY,
        ("no-recursion",),
        ("rule no-recursion: missing field 'recursive'",),
    )
    assert policy.evaluate(act("t", {"path": "/x", "recursive": False})).rules == ("ok",)
