"""Building a PolicySpec from parsed YAML: structure, keys, types, operands.

Every error must carry the code, the line and the dotted field of the offending value.
"""

from __future__ import annotations

import textwrap

import pytest

from ringfence.core.decision import Effect
from ringfence.core.policy.load import policy_from_text
from ringfence.core.policy.model import Condition, ResourcePattern
from ringfence.core.policy.parse import MAX_CEL_LENGTH
from ringfence.errors import PolicyError

TOOLS = """\
version: 1
tools:
  t:
    args:
      properties:
        s: {type: string}
        n: {type: number}
        any: {}
rules:
"""
# Line 10 is the first line of the first rule when a rule list is appended to TOOLS.


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def error_of(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        policy_from_text(text, "p.yaml")
    return info.value


def rule_error(rule_body: str) -> PolicyError:
    """Error of TOOLS plus one rule whose body lines are indented under ``- ``."""
    return error_of(TOOLS + textwrap.indent(dedent(rule_body), "    ").replace("    ", "  - ", 1))


def cond_error(cond: str) -> PolicyError:
    """Error of one allow rule for tool t with ``when: [<cond>]`` on line 13."""
    return rule_error(f"id: r\neffect: allow\ntool: t\nwhen: [{cond}]\n")


def assert_error(err: PolicyError, code: str, line: int | None, field: str | None) -> None:
    assert (err.code, err.line, err.field) == (code, line, field), err.message


class TestTopLevel:
    def test_not_a_mapping(self) -> None:
        err = error_of("- version: 1\n")
        assert_error(err, "policy.type", 1, "")
        assert err.reason == "expected a mapping, got a list"

    def test_missing_version(self) -> None:
        err = error_of("rules: [{id: r, effect: allow}]\n")
        assert_error(err, "policy.invalid", 1, "")
        assert err.reason == "missing 'version' (use version: 1)"

    @pytest.mark.parametrize("value", ["2", "0", "'1'", "true", "1.5", "null", "[1]"])
    def test_wrong_version(self, value: str) -> None:
        err = error_of(f"rules: [{{id: r, effect: allow}}]\nversion: {value}\n")
        assert_error(err, "policy.version", 2, "version")
        assert err.reason.startswith("unsupported policy language version ")

    def test_unknown_top_level_key(self) -> None:
        err = error_of("version: 1\nrule: []\nrules: [{id: r, effect: allow}]\n")
        assert_error(err, "policy.unknown_key", 2, "rule")
        assert err.reason == (
            "unknown key 'rule' (allowed: description, limits, name, rules, secrets, tools, "
            "version)"
        )

    def test_no_rules_key(self) -> None:
        err = error_of("version: 1\nname: x\n")
        assert_error(err, "policy.empty", None, None)
        assert err.source == "p.yaml"
        assert err.reason.startswith("the policy has no rules")

    def test_empty_rule_list(self) -> None:
        err = error_of("version: 1\nrules: []\n")
        assert_error(err, "policy.empty", None, None)

    def test_rules_not_a_list(self) -> None:
        err = error_of("version: 1\nrules:\n  id: r\n  effect: allow\n")
        assert_error(err, "policy.invalid", 2, "rules")
        assert err.reason == "expected a list of rules, got a mapping"

    @pytest.mark.parametrize(("key", "value"), [("name", "[a]"), ("description", "5")])
    def test_name_and_description_are_strings(self, key: str, value: str) -> None:
        err = error_of(f"version: 1\n{key}: {value}\nrules: [{{id: r, effect: allow}}]\n")
        assert_error(err, "policy.type", 2, key)

    def test_tools_not_a_mapping(self) -> None:
        err = error_of("version: 1\ntools: [t]\nrules: [{id: r, effect: allow}]\n")
        assert_error(err, "policy.type", 2, "tools")


class TestTools:
    def tool_error(self, body: str) -> PolicyError:
        return error_of(
            "version: 1\ntools:\n" + textwrap.indent(dedent(body), "  ") + "rules: [{id: r, "
            "effect: allow}]\n"
        )

    def test_invalid_tool_name(self) -> None:
        err = self.tool_error("1bad: {}\n")
        assert_error(err, "policy.invalid", 3, "tools.1bad")
        assert err.reason == "'1bad' is not a valid tool name"

    def test_unknown_tool_key(self) -> None:
        err = self.tool_error("t:\n  argz: {}\n")
        assert_error(err, "policy.unknown_key", 4, "tools.t.argz")

    def test_tool_body_not_a_mapping(self) -> None:
        err = self.tool_error("t: [a]\n")
        assert_error(err, "policy.type", 3, "tools.t")

    def test_args_schema_must_be_an_object_schema(self) -> None:
        err = self.tool_error("t:\n  args: {type: array}\n")
        assert_error(err, "policy.invalid", 4, "tools.t.args.type")
        assert err.reason == "a tool's argument schema must be an object"

    def test_args_schema_must_be_a_mapping(self) -> None:
        err = self.tool_error("t:\n  args: [x]\n")
        assert_error(err, "policy.type", 4, "tools.t.args")

    def test_bad_kind(self) -> None:
        err = self.tool_error("t:\n  kind: 'tool call'\n")
        assert_error(err, "policy.type", 4, "tools.t.kind")

    def test_bad_resource_type(self) -> None:
        err = self.tool_error("t:\n  args: {}\n  resources: {path: 'pa th'}\n")
        assert_error(err, "policy.type", 5, "tools.t.resources.path")

    def test_declaration_is_read(self) -> None:
        policy = policy_from_text(
            dedent("""
            version: 1
            tools:
              read:
                kind: mcp_request
                description: reads
                args: {type: object, properties: {p: {type: object}}}
                resources: {p.inner: path}
              bare:
            rules: [{id: r, effect: allow}]
            """)
        )
        read, bare = policy.tools["read"], policy.tools["bare"]
        assert (read.kind, read.description) == ("mcp_request", "reads")
        assert read.resources == ((("p", "inner"), "path"),)
        assert (read.where.line, read.where.field) == (3, "tools.read")
        assert (bare.kind, bare.schema, bare.resources) == ("tool_call", None, ())


class TestRules:
    def test_rule_not_a_mapping(self) -> None:
        err = error_of(TOOLS + "  - allow\n")
        assert_error(err, "policy.type", 10, "rules[0]")

    @pytest.mark.parametrize("missing", ["id", "effect"])
    def test_missing_id_or_effect(self, missing: str) -> None:
        body = {"id": "id: r\n", "effect": "effect: deny\n"}
        err = rule_error("tool: t\n" + "".join(v for k, v in body.items() if k != missing))
        assert_error(err, "policy.missing_key", 10, "rules[0]")
        assert err.reason == f"a rule needs {missing!r}"

    def test_unknown_rule_key(self) -> None:
        err = rule_error("id: r\neffect: deny\nwhen_not: []\n")
        assert_error(err, "policy.unknown_key", 12, "rules[0].when_not")

    @pytest.mark.parametrize("value", ["1", "[deny]", "{a: b}", "true", "null"])
    def test_effect_not_a_string(self, value: str) -> None:
        err = rule_error(f"id: r\neffect: {value}\n")
        assert_error(err, "policy.type", 11, "rules[0].effect")

    @pytest.mark.parametrize("value", ["permit", "Deny", "forbid", "require-approval", "''"])
    def test_unknown_effect(self, value: str) -> None:
        err = rule_error(f"id: r\neffect: {value}\n")
        assert_error(err, "policy.invalid", 11, "rules[0].effect")
        assert err.reason.startswith("unknown effect ")

    @pytest.mark.parametrize("value", ["''", "'-x'", "'has space'", "5", "'" + "a" * 129 + "'"])
    def test_bad_rule_id(self, value: str) -> None:
        err = rule_error(f"id: {value}\neffect: deny\n")
        assert_error(err, "policy.type", 10, "rules[0].id")

    def test_duplicate_rule_id(self) -> None:
        err = error_of(
            TOOLS
            + "  - id: same\n    effect: allow\n"
            + "  - id: other\n    effect: deny\n"
            + "  - id: same\n    effect: deny\n"
        )
        assert_error(err, "policy.duplicate_rule", 14, "rules[2].id")
        assert err.reason == "rule id 'same' is already used at p.yaml:10"

    @pytest.mark.parametrize("key", ["kind", "tool", "agent", "role", "user"])
    def test_scope_lists(self, key: str) -> None:
        err = rule_error(f"id: r\neffect: deny\n{key}: []\n")
        assert_error(err, "policy.invalid", 12, f"rules[0].{key}")
        assert err.reason == "expected a string or a non-empty list of strings, got []"
        err = rule_error(f"id: r\neffect: deny\n{key}: [a, 5]\n")
        assert_error(err, "policy.type", 12, f"rules[0].{key}[1]")
        err = rule_error(f"id: r\neffect: deny\n{key}: {{a: b}}\n")
        assert_error(err, "policy.type", 12, f"rules[0].{key}")
        assert err.reason == "expected a string or a list of strings, got a mapping"

    @pytest.mark.parametrize("pattern", ["path", ":/x", "path:", "1x:/a", "pa th:/x"])
    def test_bad_resource_pattern(self, pattern: str) -> None:
        err = rule_error(f"id: r\neffect: deny\nresource: ['path:/ok', '{pattern}']\n")
        assert_error(err, "policy.invalid", 12, "rules[0].resource[1]")
        assert err.reason.endswith(
            "is not a resource pattern (write type:glob, e.g. path:/data/**)"
        )

    def test_resource_pattern_keeps_colons_in_the_glob(self) -> None:
        policy = policy_from_text(
            TOOLS + "  - id: r\n    effect: deny\n    resource: 'url:https://x/**'\n"
        )
        assert policy.rules[0].resources == (ResourcePattern("url", "https://x/**"),)

    def test_when_not_a_list(self) -> None:
        err = rule_error("id: r\neffect: deny\nwhen: 5\n")
        assert_error(err, "policy.invalid", 12, "rules[0].when")
        assert err.reason == "expected a list of conditions, got int"

    def test_when_single_mapping_is_a_list_of_one(self) -> None:
        policy = policy_from_text(
            TOOLS + "  - id: r\n    effect: deny\n    tool: t\n    when: {arg: s, eq: x}\n"
        )
        (cond,) = policy.rules[0].when
        assert (cond.op, cond.subject, cond.operand) == ("eq", ("args", "s"), "x")
        assert cond.where is not None
        assert (cond.where.line, cond.where.field) == (13, "rules[0].when[0].eq")

    @pytest.mark.parametrize(
        ("value", "code", "reason"),
        [
            ("5", "policy.type", "expected a string, got int"),
            ("''", "policy.invalid", "empty CEL expression"),
            ("'  '", "policy.invalid", "empty CEL expression"),
            (
                "'" + "x" * (MAX_CEL_LENGTH + 1) + "'",
                "policy.invalid",
                f"CEL expression longer than {MAX_CEL_LENGTH} chars",
            ),
        ],
    )
    def test_bad_cel_field(self, value: str, code: str, reason: str) -> None:
        err = rule_error(f"id: r\neffect: deny\ncel: {value}\n")
        assert_error(err, code, 12, "rules[0].cel")
        assert err.reason == reason

    @pytest.mark.parametrize("value", ["password", "args", "agent", "context.x"])
    def test_redact_must_name_an_argument_request_or_reason(self, value: str) -> None:
        err = rule_error(f"id: r\neffect: allow\nredact: [request, {value}]\n")
        assert_error(err, "policy.invalid", 12, "rules[0].redact[1]")
        assert err.reason.startswith(f"cannot redact {value!r}")

    def test_bad_label(self) -> None:
        err = rule_error("id: r\neffect: allow\nlabels: [ok, 'not ok']\n")
        assert_error(err, "policy.type", 12, "rules[0].labels[1]")

    @pytest.mark.parametrize("key", ["reason", "description"])
    def test_reason_and_description_are_strings(self, key: str) -> None:
        err = rule_error(f"id: r\neffect: allow\n{key}: [x]\n")
        assert_error(err, "policy.type", 12, f"rules[0].{key}")

    def test_full_rule_is_read(self) -> None:
        policy = policy_from_text(
            TOOLS
            + dedent("""
              - id: full
                description: all keys
                effect: require_approval
                kind: [tool_call, mcp_request]
                tool: t
                agent: 'bot-*'
                role: admin
                user: [alice, bob]
                resource: 'path:/data/**'
                when: [{arg: s, eq: x}]
                cel: 'args.n > 1'
                reason: because
                redact: [args.s, request]
                labels: [sensitive]
            """)
        )
        (rule,) = policy.rules
        assert rule.effect is Effect.REQUIRE_APPROVAL
        assert rule.kinds == ("tool_call", "mcp_request")
        assert rule.tools == ("t",)
        assert rule.agents == ("bot-*",)
        assert rule.roles == ("admin",)
        assert rule.users == ("alice", "bob")
        assert rule.resources == (ResourcePattern("path", "/data/**"),)
        assert rule.cel == "args.n > 1"
        assert rule.cel_where is not None
        assert rule.cel_where.line == 20
        assert (rule.reason, rule.description) == ("because", "all keys")
        assert rule.redact == ("args.s", "request")
        assert rule.labels == ("sensitive",)
        assert (rule.where.source, rule.where.line, rule.where.field) == (
            "<policy>",
            10,
            "rules[0]",
        )
        assert not rule.unconditional


class TestConditionShape:
    def test_unknown_condition_key(self) -> None:
        err = cond_error("{arg: s, equals: x}")
        assert_error(err, "policy.unknown_key", 13, "rules[0].when[0].equals")

    def test_condition_not_a_mapping(self) -> None:
        err = cond_error("s == x")
        assert_error(err, "policy.type", 13, "rules[0].when[0]")

    def test_both_subjects(self) -> None:
        err = cond_error("{arg: s, field: agent, eq: x}")
        assert_error(err, "policy.invalid", 13, "rules[0].when[0]")
        assert err.reason == "a condition names exactly one of 'arg' or 'field'"

    def test_no_subject(self) -> None:
        err = cond_error("{eq: x}")
        assert err.reason == "a condition names exactly one of 'arg' or 'field'"

    def test_no_operator(self) -> None:
        err = cond_error("{arg: s}")
        assert_error(err, "policy.invalid", 13, "rules[0].when[0]")
        assert err.reason.startswith("a condition has exactly one operator")

    def test_two_operators(self) -> None:
        err = cond_error("{arg: s, eq: x, ne: y}")
        assert err.reason.startswith("a condition has exactly one operator")

    def test_combinator_with_other_keys(self) -> None:
        err = cond_error("{all: [{arg: s, eq: x}], arg: s}")
        assert_error(err, "policy.invalid", 13, "rules[0].when[0]")
        assert err.reason == "'all' must be the only key of its condition"

    @pytest.mark.parametrize("op", ["all", "any", "not"])
    @pytest.mark.parametrize("value", ["[]", "5", "x"])
    def test_combinator_needs_conditions(self, op: str, value: str) -> None:
        err = cond_error(f"{{{op}: {value}}}")
        assert_error(err, "policy.invalid", 13, f"rules[0].when[0].{op}")
        assert err.reason == f"{op!r} takes a non-empty list of conditions"

    def test_nested_error_path(self) -> None:
        err = cond_error("{any: [{arg: s, eq: x}, {not: {arg: n, lt: a}}]}")
        assert_error(err, "policy.type", 13, "rules[0].when[0].any[1].not[0].lt")

    def test_nesting_limit(self) -> None:
        cond = "{arg: s, eq: x}"
        for _ in range(17):
            cond = f"{{not: {cond}}}"
        err = cond_error(cond)
        assert err.reason == "conditions nested too deeply"
        assert err.field == "rules[0].when[0]" + ".not[0]" * 17

    def test_nesting_at_the_limit_is_fine(self) -> None:
        cond = "{arg: s, eq: x}"
        for _ in range(16):
            cond = f"{{not: {cond}}}"
        policy = policy_from_text(TOOLS + f"  - {{id: r, effect: deny, tool: t, when: [{cond}]}}\n")
        node = policy.rules[0].when[0]
        depth = 0
        while node.op == "not":
            (node,) = node.children
            depth += 1
        assert depth == 16
        assert node == Condition(op="eq", subject=("args", "s"), operand="x", where=node.where)

    @pytest.mark.parametrize("text", ["a..b", ".a", "a.", ""])
    def test_bad_argument_path(self, text: str) -> None:
        err = cond_error(f"{{arg: '{text}', eq: x}}")
        assert_error(err, "policy.invalid", 13, "rules[0].when[0].arg")
        assert err.reason == f"{text!r} is not a valid field path"

    def test_subject_not_a_string(self) -> None:
        err = cond_error("{arg: [s], eq: x}")
        assert_error(err, "policy.type", 13, "rules[0].when[0].arg")

    @pytest.mark.parametrize("text", ["agent.id", "nope", "resources.x", "Agent", "time"])
    def test_unknown_field(self, text: str) -> None:
        err = cond_error(f"{{field: {text}, eq: x}}")
        assert_error(err, "policy.unknown_field", 13, "rules[0].when[0].field")
        assert err.reason.startswith(f"unknown field {text!r}")

    @pytest.mark.parametrize("text", ["args", "context"])
    def test_field_needs_a_key_inside_args_or_context(self, text: str) -> None:
        err = cond_error(f"{{field: {text}, exists: true}}")
        assert_error(err, "policy.invalid", 13, "rules[0].when[0].field")

    def test_field_args_is_the_same_as_arg(self) -> None:
        a = policy_from_text(TOOLS + "  - {id: r, effect: deny, tool: t, when: {arg: s, eq: x}}\n")
        b = policy_from_text(
            TOOLS + "  - {id: r, effect: deny, tool: t, when: {field: args.s, eq: x}}\n"
        )
        assert a.rules[0].when[0].subject == b.rules[0].when[0].subject == ("args", "s")


class TestOperands:
    @pytest.mark.parametrize("op", ["lt", "le", "gt", "ge"])
    @pytest.mark.parametrize(
        ("value", "kind"), [("'3'", "a string"), ("true", "a boolean"), ("[1]", "a list")]
    )
    def test_number_ops_need_numbers(self, op: str, value: str, kind: str) -> None:
        err = cond_error(f"{{arg: n, {op}: {value}}}")
        assert_error(err, "policy.type", 13, f"rules[0].when[0].{op}")
        assert err.reason == f"{op!r} needs a number, got {kind}"

    @pytest.mark.parametrize("op", ["in", "not_in"])
    @pytest.mark.parametrize(
        ("value", "kind"),
        [("a", "a string"), ("1", "int"), ("[]", "a list"), ("{a: 1}", "a mapping")],
    )
    def test_member_ops_need_a_non_empty_list(self, op: str, value: str, kind: str) -> None:
        err = cond_error(f"{{arg: s, {op}: {value}}}")
        assert_error(err, "policy.type", 13, f"rules[0].when[0].{op}")
        assert err.reason == f"{op!r} needs a non-empty list, got {kind}"

    def test_member_items_must_be_scalars(self) -> None:
        err = cond_error("{arg: s, in: [a, [b]]}")
        assert_error(err, "policy.type", 13, "rules[0].when[0].in[1]")
        assert err.reason == "'in' compares with a single value, got a list"

    @pytest.mark.parametrize("op", ["eq", "ne", "contains"])
    @pytest.mark.parametrize("value", ["[a]", "{a: b}"])
    def test_single_value_ops_refuse_collections(self, op: str, value: str) -> None:
        err = cond_error(f"{{arg: any, {op}: {value}}}")
        assert_error(err, "policy.type", 13, f"rules[0].when[0].{op}")

    @pytest.mark.parametrize("op", ["startswith", "endswith", "glob", "regex"])
    def test_string_ops_need_strings(self, op: str) -> None:
        err = cond_error(f"{{arg: s, {op}: 5}}")
        assert_error(err, "policy.type", 13, f"rules[0].when[0].{op}")
        err = cond_error(f"{{arg: s, {op}: [a, 5]}}")
        assert_error(err, "policy.type", 13, f"rules[0].when[0].{op}[1]")
        err = cond_error(f"{{arg: s, {op}: []}}")
        assert_error(err, "policy.invalid", 13, f"rules[0].when[0].{op}")

    def test_bad_regex(self) -> None:
        err = cond_error("{arg: s, regex: '(unclosed'}")
        assert_error(err, "policy.invalid", 13, "rules[0].when[0].regex")
        assert err.reason.startswith("bad regex: missing ): (unclosed")

    def test_bad_regex_in_a_list_names_the_item(self) -> None:
        err = cond_error("{arg: s, regex: ['ok', '[z-a]']}")
        assert_error(err, "policy.invalid", 13, "rules[0].when[0].regex[1]")
        assert err.reason.startswith("bad regex: invalid character class range: z-a")

    @pytest.mark.parametrize("value", ["'yes'", "1", "null", "[true]"])
    def test_exists_needs_a_bool(self, value: str) -> None:
        err = cond_error(f"{{arg: s, exists: {value}}}")
        assert_error(err, "policy.type", 13, "rules[0].when[0].exists")

    def test_operands_are_kept(self) -> None:
        policy = policy_from_text(
            TOOLS
            + "  - id: r\n    effect: deny\n    tool: t\n    when:\n"
            + "      - {arg: s, in: [a, 1, true, null]}\n"
            + "      - {arg: s, startswith: x}\n"
            + "      - {arg: n, lt: 2.5}\n"
            + "      - {arg: s, eq: null}\n"
        )
        ops = [(c.op, c.operand) for c in policy.rules[0].when]
        assert ops == [
            ("in", ("a", 1, True, None)),
            ("startswith", ("x",)),
            ("lt", 2.5),
            ("eq", None),
        ]


def test_version_must_be_the_integer_one() -> None:
    import pytest

    from ringfence.core.policy.load import policy_from_text
    from ringfence.errors import PolicyError

    for version in ("1.0", "'1'", "true"):
        with pytest.raises(PolicyError) as err:
            policy_from_text(f"version: {version}\nrules:\n  - {{id: r, effect: deny}}\n")
        assert err.value.code == "policy.version"


class TestUserNamed:
    """``user_named: {by: [...], vouch: [...]}`` on a tool declaration."""

    @staticmethod
    def tool(body: str) -> str:
        return (
            f"version: 1\ntools:\n  t:\n    user_named: {body}\nrules: [{{id: r, effect: deny}}]\n"
        )

    def test_parsed(self) -> None:
        policy = policy_from_text(self.tool("{by: [id, name], vouch: [from]}"))
        assert policy.tools["t"].user_named == (("id", "name"), ("from",))

    def test_absent_is_none(self) -> None:
        policy = policy_from_text("version: 1\ntools:\n  t: {}\nrules: [{id: r, effect: deny}]\n")
        assert policy.tools["t"].user_named is None

    @pytest.mark.parametrize(
        ("body", "code", "field", "reason"),
        [
            (
                "{by: [id]}",
                "policy.missing_key",
                "tools.t.user_named",
                "'user_named' needs 'vouch'",
            ),
            (
                "{vouch: [id]}",
                "policy.missing_key",
                "tools.t.user_named",
                "'user_named' needs 'by'",
            ),
            ("{by: [], vouch: [from]}", "policy.invalid", "tools.t.user_named.by", "non-empty"),
            ("{by: [id], vouch: ['a b']}", "policy.type", "tools.t.user_named.vouch[0]", None),
            ("{by: [id], vouch: [from], also: [x]}", None, None, None),
            ("[id]", "policy.type", "tools.t.user_named", None),
        ],
    )
    def test_errors_name_the_field(
        self, body: str, code: str | None, field: str | None, reason: str | None
    ) -> None:
        err = error_of(self.tool(body))
        if code is not None:
            assert (err.code, err.field) == (code, field), err.message
        assert err.line == 4
        if reason is not None:
            assert reason in err.message

    @pytest.mark.parametrize("how", ["stated", "user_named"])
    def test_the_whole_value_questions_are_provenance_operands(self, how: str) -> None:
        policy = policy_from_text(
            TOOLS
            + f"  - {{id: r, effect: allow, tool: t, when: [{{arg: s, provenance: {how}}}]}}\n"
        )
        assert policy.rules[0].when[0] == Condition(
            "provenance", ("args", "s"), how, where=policy.rules[0].when[0].where
        )
