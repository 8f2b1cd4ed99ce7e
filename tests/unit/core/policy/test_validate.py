"""Checking rules against the tools they can reach, and compiling tool schemas.

A rule that reads an argument no reachable tool declares must be a load error, never a
rule that silently never matches.
"""

from __future__ import annotations

import textwrap

import pytest

from ringfence.core.policy.load import PolicyErrors, policy_from_text
from ringfence.core.policy.parse import build_spec
from ringfence.core.policy.validate import _OPEN, matching_tools, schema_at, validate_spec
from ringfence.core.policy.yamlsrc import parse
from ringfence.errors import PolicyError

TOOLS = """\
version: 1
tools:
  read_file:
    args:
      properties:
        path: {type: string}
        size: {type: integer}
        opts:
          type: object
          properties: {mode: {type: string}}
          additionalProperties: false
      additionalProperties: false
  send_email:
    kind: mcp_request
    args: {properties: {to: {type: [string, array]}, n: {type: [integer, string]}}}
  open_tool:
    args: {type: object}
  bare:
rules:
"""
RULE_LINE = 20  # the line of the first rule appended to TOOLS


def error_of(rules: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        policy_from_text(TOOLS + textwrap.dedent(rules).lstrip("\n"), "p.yaml")
    return info.value


def loads(rules: str) -> None:
    policy_from_text(TOOLS + textwrap.dedent(rules).lstrip("\n"), "p.yaml")


def test_tools_header_line_count() -> None:
    assert TOOLS.count("\n") + 1 == RULE_LINE


class TestArguments:
    def test_condition_naming_an_undeclared_argument(self) -> None:
        err = error_of("""
          - id: r
            effect: deny
            tool: read_file
            when: {arg: pth, eq: /x}
        """)
        assert (err.code, err.line, err.field) == (
            "policy.unknown_argument",
            RULE_LINE + 3,
            "rules[0].when[0].eq",
        )
        assert err.reason == "rule 'r' reads args.pth, which no matching tool declares (read_file)"

    def test_condition_on_args_for_a_tool_that_is_not_declared(self) -> None:
        err = error_of("""
          - id: r
            effect: deny
            tool: delete_file
            when: {arg: path, startswith: /etc}
        """)
        assert (err.code, err.line, err.field) == (
            "policy.unknown_argument",
            RULE_LINE + 3,
            "rules[0].when[0].startswith",
        )
        assert err.reason.startswith(
            "rule 'r' reads args.path but no declared tool matches delete_file;"
        )

    def test_kind_scope_excludes_tools_of_another_kind(self) -> None:
        err = error_of("""
          - id: r
            effect: deny
            kind: tool_call
            tool: send_email
            when: {arg: to, eq: x}
        """)
        assert err.code == "policy.unknown_argument"
        assert err.reason.startswith("rule 'r' reads args.to but no declared tool matches")

    def test_nested_argument(self) -> None:
        loads("""
          - {id: ok, effect: deny, tool: read_file, when: {arg: opts.mode, eq: r}}
        """)
        err = error_of("""
          - {id: r, effect: deny, tool: read_file, when: {arg: opts.other, eq: r}}
        """)
        assert (err.code, err.field) == ("policy.unknown_argument", "rules[0].when[0].eq")

    def test_leaf_inside_combinators(self) -> None:
        err = error_of("""
          - id: r
            effect: deny
            tool: read_file
            when:
              - any:
                  - {arg: path, eq: a}
                  - not: {arg: nope, exists: true}
        """)
        assert (err.code, err.line, err.field) == (
            "policy.unknown_argument",
            RULE_LINE + 6,
            "rules[0].when[0].any[1].not[0].exists",
        )

    def test_glob_scope_needs_only_one_tool_to_declare_the_argument(self) -> None:
        loads("""
          - {id: r, effect: deny, tool: '*', when: {arg: to, exists: true}}
        """)

    def test_unscoped_rule_reaches_every_declared_tool(self) -> None:
        loads("""
          - {id: r, effect: deny, when: {arg: size, gt: 10}}
        """)

    def test_open_schema_admits_any_argument(self) -> None:
        loads("""
          - {id: r, effect: deny, tool: open_tool, when: {arg: whatever.deep, eq: 1}}
        """)

    def test_tool_without_a_schema_declares_no_arguments(self) -> None:
        err = error_of("""
          - {id: r, effect: deny, tool: bare, when: {arg: x, eq: 1}}
        """)
        assert err.reason == "rule 'r' reads args.x, which no matching tool declares (bare)"

    def test_action_fields_are_not_checked_against_tools(self) -> None:
        loads("""
          - {id: r, effect: deny, tool: nothing_declared, when: {field: context.x, eq: 1}}
          - {id: s, effect: deny, tool: nothing_declared, when: {field: agent, eq: a}}
        """)


class TestOperandTypes:
    @pytest.mark.parametrize("op", ["lt", "le", "gt", "ge"])
    def test_number_op_on_a_string_argument(self, op: str) -> None:
        err = error_of(f"""
          - {{id: r, effect: deny, tool: read_file, when: {{arg: path, {op}: 3}}}}
        """)
        assert (err.code, err.line, err.field) == (
            "policy.type",
            RULE_LINE,
            f"rules[0].when[0].{op}",
        )
        assert err.reason == (
            f"rule 'r': {op!r} needs a integer or number but args.path is declared as string "
            "by tool 'read_file'"
        )

    @pytest.mark.parametrize("op", ["startswith", "endswith", "glob", "regex"])
    def test_string_op_on_an_integer_argument(self, op: str) -> None:
        err = error_of(f"""
          - {{id: r, effect: deny, tool: read_file, when: {{arg: size, {op}: x}}}}
        """)
        assert (err.code, err.field) == ("policy.type", f"rules[0].when[0].{op}")

    def test_union_type_that_includes_the_needed_type_is_fine(self) -> None:
        loads("""
          - {id: r, effect: deny, tool: send_email, when: {arg: n, lt: 3}}
          - {id: s, effect: deny, tool: send_email, when: {arg: n, startswith: x}}
        """)

    def test_untyped_argument_is_fine(self) -> None:
        loads("""
          - {id: r, effect: deny, tool: open_tool, when: {arg: x, lt: 3}}
        """)

    def test_equality_is_not_type_checked(self) -> None:
        loads("""
          - {id: r, effect: deny, tool: read_file, when: {arg: path, eq: 3}}
        """)


class TestCel:
    def test_syntax_error(self) -> None:
        err = error_of("""
          - id: r
            effect: deny
            tool: read_file
            cel: 'args.path =='
        """)
        assert (err.code, err.line, err.field) == ("policy.cel", RULE_LINE + 3, "rules[0].cel")
        assert err.reason.startswith("CEL does not compile: ")

    def test_unknown_variable(self) -> None:
        err = error_of("""
          - {id: r, effect: deny, cel: 'request.size > 3'}
        """)
        assert (err.code, err.line, err.field) == ("policy.cel", RULE_LINE, "rules[0].cel")
        assert err.reason == (
            "CEL does not compile: unknown variable(s) request "
            "(CEL conditions see 'args', 'action', 'state' and 'credential')"
        )

    @pytest.mark.parametrize("expr", ["args.nope == 1", "args['nope'] == 1", 'args["nope"] > 0'])
    def test_unknown_argument(self, expr: str) -> None:
        err = error_of(f"""
          - id: r
            effect: deny
            tool: read_file
            cel: '{expr.replace("'", "''")}'
        """)
        assert (err.code, err.line, err.field) == (
            "policy.unknown_argument",
            RULE_LINE + 3,
            "rules[0].cel",
        )
        assert err.reason == "rule 'r' reads args.nope, which no matching tool declares (read_file)"

    def test_cel_on_args_for_an_undeclared_tool(self) -> None:
        err = error_of("""
          - {id: r, effect: deny, tool: ghost, cel: 'args.x == 1'}
        """)
        assert err.code == "policy.unknown_argument"

    def test_argument_names_inside_string_literals_are_not_reads(self) -> None:
        loads("""
          - {id: r, effect: deny, tool: read_file, cel: 'args.path == "args.nope"'}
        """)

    def test_every_unknown_argument_is_reported(self) -> None:
        with pytest.raises(PolicyErrors) as info:
            policy_from_text(
                TOOLS + "  - {id: r, effect: deny, tool: read_file, cel: 'args.b == args.a'}\n"
            )
        assert [e.reason for e in info.value.errors] == [
            "rule 'r' reads args.a, which no matching tool declares (read_file)",
            "rule 'r' reads args.b, which no matching tool declares (read_file)",
        ]


class TestRedact:
    def test_redact_of_an_unknown_argument(self) -> None:
        err = error_of("""
          - id: r
            effect: allow
            tool: read_file
            redact: [args.path, args.secret]
        """)
        assert (err.code, err.line, err.field) == (
            "policy.unknown_argument",
            RULE_LINE,
            "rules[0].redact[1]",
        )
        assert (
            err.reason == "rule 'r' reads args.secret, which no matching tool declares (read_file)"
        )

    def test_redact_of_request_and_reason_needs_no_tool(self) -> None:
        loads("""
          - {id: r, effect: allow, tool: ghost, redact: [request, reason]}
        """)


class TestToolDeclarations:
    def test_resource_from_an_argument_the_schema_does_not_declare(self) -> None:
        # Otherwise a deny rule on that resource would never fire.
        with pytest.raises(PolicyError) as info:
            policy_from_text(
                "version: 1\n"
                "tools:\n"
                "  read:\n"
                "    args: {properties: {path: {type: string}}, additionalProperties: false}\n"
                "    resources: {pth: path}\n"
                "rules: [{id: r, effect: deny, resource: 'path:/etc/**'}]\n",
                "p.yaml",
            )
        err = info.value
        assert (err.code, err.line, err.field) == (
            "policy.unknown_argument",
            3,
            "tools.read.resources",
        )
        assert err.reason == (
            "tool 'read' derives a path resource from args.pth, "
            "which its argument schema does not declare"
        )

    def test_resource_from_an_open_schema_or_no_schema_is_accepted(self) -> None:
        policy_from_text(
            "version: 1\ntools:\n"
            "  a: {args: {type: object}, resources: {anything: path}}\n"
            "  b: {resources: {anything: path}}\n"
            "rules: [{id: r, effect: deny}]\n"
        )

    @pytest.mark.parametrize(
        ("schema", "reason_start"),
        [
            ("{properties: {x: {type: 5}}}", "invalid JSON Schema for tool 't': "),
            ("{required: 5}", "invalid JSON Schema for tool 't': required must be an array"),
            ("{properties: 5}", "invalid JSON Schema for tool 't': "),
            ("{properties: {x: {pattern: '(('}}}", "invalid JSON Schema for tool 't': "),
            ("{properties: {x: {$ref: '#/nope'}}}", "invalid JSON Schema for tool 't': "),
        ],
    )
    def test_invalid_json_schema(self, schema: str, reason_start: str) -> None:
        with pytest.raises(PolicyError) as info:
            policy_from_text(
                f"version: 1\ntools:\n  t:\n    args: {schema}\nrules: [{{id: r, effect: deny}}]\n",
                "p.yaml",
            )
        err = info.value
        assert (err.code, err.line, err.field, err.source) == (
            "policy.schema",
            3,
            "tools.t.args",
            "p.yaml",
        )
        assert err.reason.startswith(reason_start)

    @pytest.mark.parametrize(
        "ref", ["http://127.0.0.1:9/schema.json", "file:///etc/passwd", "other.json", "//h/x"]
    )
    def test_remote_refs_are_refused_without_fetching(self, ref: str) -> None:
        with pytest.raises(PolicyError) as info:
            policy_from_text(
                "version: 1\ntools:\n  t:\n"
                f"    args: {{properties: {{x: {{$ref: '{ref}'}}}}}}\n"
                "rules: [{id: r, effect: deny}]\n"
            )
        assert info.value.code == "policy.schema"
        assert "remote references are not fetched" in info.value.reason

    def test_local_refs_work(self) -> None:
        policy = policy_from_text(
            "version: 1\ntools:\n  t:\n"
            "    args:\n"
            "      definitions: {p: {type: string}}\n"
            "      properties: {x: {$ref: '#/definitions/p'}}\n"
            "rules: [{id: r, effect: allow}]\n"
        )
        assert policy.tools["t"].schema is not None


class TestSeveralProblems:
    def test_all_problems_in_file_order(self) -> None:
        with pytest.raises(PolicyErrors) as info:
            policy_from_text(
                TOOLS
                + "  - {id: a, effect: deny, tool: read_file, when: {arg: x, eq: 1}}\n"
                + "  - {id: b, effect: deny, tool: read_file, when: {arg: path, lt: 1}}\n"
                + "  - {id: c, effect: deny, cel: 'nope'}\n",
                "p.yaml",
            )
        err = info.value
        assert [(e.code, e.line) for e in err.errors] == [
            ("policy.unknown_argument", RULE_LINE),
            ("policy.type", RULE_LINE + 1),
            ("policy.cel", RULE_LINE + 2),
        ]
        assert (err.code, err.line, err.field) == (
            "policy.unknown_argument",
            RULE_LINE,
            "rules[0].when[0].eq",
        )
        assert err.reason.endswith(" (and 2 more)")
        lines = err.diagnostics().splitlines()
        assert len(lines) == 3
        assert lines[0].startswith(f"error[policy.unknown_argument]: p.yaml:{RULE_LINE}: ")
        assert lines[2].startswith(f"error[policy.cel]: p.yaml:{RULE_LINE + 2}: rules[2].cel: ")

    def test_validate_spec_returns_an_empty_list_for_a_good_policy(self) -> None:
        spec = build_spec([parse(TOOLS + "  - {id: a, effect: deny, tool: read_file}\n", "p")])
        assert validate_spec(spec) == []


class TestHelpers:
    SCHEMA = {
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "closed": {"type": "object", "properties": {}, "additionalProperties": False},
        },
        "additionalProperties": False,
    }

    def test_schema_at(self) -> None:
        assert schema_at(self.SCHEMA, ("a", "b")) == {"type": "string"}
        # listed properties are the declared ones unless additionalProperties says otherwise
        assert schema_at(self.SCHEMA, ("a", "other")) is None
        assert schema_at({"properties": {}, "additionalProperties": True}, ("x",)) is _OPEN
        assert schema_at({"properties": {}, "additionalProperties": {}}, ("x",)) is _OPEN
        assert schema_at(self.SCHEMA, ("closed", "x")) is None
        assert schema_at(self.SCHEMA, ("nope",)) is None
        assert schema_at(self.SCHEMA, ("a", "b", "c")) is None  # below a string
        assert schema_at({"type": "object"}, ("anything",)) is _OPEN
        assert schema_at(None, ("x",)) is None

    def test_matching_tools(self) -> None:
        spec = build_spec(
            [
                parse(
                    TOOLS + "  - {id: a, effect: deny, tool: 's*'}\n  - {id: b, effect: deny}\n",
                    "p",
                )
            ]
        )
        assert [t.name for t in matching_tools(spec, spec.rules[0])] == ["send_email"]
        assert [t.name for t in matching_tools(spec, spec.rules[1])] == [
            "read_file",
            "send_email",
            "open_tool",
            "bare",
        ]


def test_reading_a_key_below_a_non_object_argument_is_an_error() -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_text(
            TOOLS + "  - {id: r, effect: allow, tool: read_file, when: {arg: path.x, eq: 1}}\n"
        )
    assert info.value.code == "policy.unknown_argument"
    assert info.value.reason == (
        "rule 'r' reads args.path.x, which no matching tool declares (read_file)"
    )
