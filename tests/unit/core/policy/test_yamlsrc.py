"""Reading YAML: what is refused before the policy structure is even looked at."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ringfence.core.policy.load import policy_from_text
from ringfence.core.policy.yamlsrc import MAX_SOURCE_BYTES, Located, dotted, parse
from ringfence.errors import PolicyError

VALID = """\
version: 1
rules:
  - id: r
    effect: allow
"""


def error_of(text: str | bytes) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        policy_from_text(text, "p.yaml")
    return info.value


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def test_a_valid_policy_loads_from_str_and_bytes() -> None:
    assert [r.id for r in policy_from_text(VALID).rules] == ["r"]
    assert [r.id for r in policy_from_text(VALID.encode()).rules] == ["r"]


def test_utf8_bom_is_accepted() -> None:
    assert [r.id for r in policy_from_text(b"\xef\xbb\xbf" + VALID.encode()).rules] == ["r"]


class TestMalformed:
    def test_unclosed_flow_sequence(self) -> None:
        err = error_of("version: 1\nrules: [\n  {id: r, effect: allow}\n")
        assert err.code == "policy.yaml"
        assert err.line == 4
        assert err.source == "p.yaml"
        assert err.reason.startswith("malformed YAML: ")
        assert str(err).startswith("p.yaml:4: malformed YAML")

    def test_bad_indentation(self) -> None:
        err = error_of("version: 1\nrules:\n  - id: r\n   effect: allow\n")
        assert (err.code, err.line) == ("policy.yaml", 4)

    def test_tab_indentation(self) -> None:
        err = error_of("version: 1\nrules:\n\t- id: r\n")
        assert (err.code, err.line) == ("policy.yaml", 3)

    def test_control_character(self) -> None:
        err = error_of("version: 1\x07\n")
        assert err.code == "policy.yaml"


class TestEmptyAndDocuments:
    @pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", b""])
    def test_empty(self, text: str | bytes) -> None:
        err = error_of(text)
        assert (err.code, err.line, err.field) == ("policy.empty", None, None)
        assert err.reason == "the policy is empty"

    @pytest.mark.parametrize(("text", "line"), [("null\n", 1), ("---\n", 2), ("- a\n", 1)])
    def test_a_document_that_is_not_a_mapping(self, text: str, line: int) -> None:
        err = error_of(text)
        assert (err.code, err.line, err.field) == ("policy.type", line, "")
        assert err.reason.startswith("expected a mapping, got ")

    def test_multiple_documents(self) -> None:
        err = error_of(VALID + "---\n" + VALID)
        assert (err.code, err.line) == ("policy.invalid", 6)
        assert err.reason == "more than one YAML document in one file"


class TestEncoding:
    def test_non_utf8_bytes(self) -> None:
        err = error_of(b"version: 1\nname: caf\xe9\n")
        assert (err.code, err.line, err.source) == ("policy.encoding", None, "p.yaml")
        assert err.reason == "not valid UTF-8 at byte 20"

    def test_utf16_is_not_utf8(self) -> None:
        err = error_of(VALID.encode("utf-16"))
        assert err.code == "policy.encoding"

    def test_too_large(self) -> None:
        err = error_of(b"#" * (MAX_SOURCE_BYTES + 1))
        assert err.code == "policy.invalid"
        assert err.reason == f"file is larger than {MAX_SOURCE_BYTES} bytes"
        err = error_of("#" * (MAX_SOURCE_BYTES + 1))
        assert err.reason == f"file is larger than {MAX_SOURCE_BYTES} bytes"


class TestDuplicateKeys:
    def test_top_level(self) -> None:
        err = error_of(VALID + "version: 1\n")
        assert (err.code, err.line, err.field) == ("policy.duplicate_key", 5, "version")
        assert err.reason == "duplicate key 'version'"

    def test_inside_a_rule(self) -> None:
        err = error_of(
            dedent("""
            version: 1
            rules:
              - id: r
                effect: allow
                effect: deny
            """)
        )
        assert (err.code, err.line, err.field) == ("policy.duplicate_key", 5, "rules[0].effect")

    def test_in_a_flow_mapping(self) -> None:
        err = error_of("version: 1\nrules: [{id: a, effect: allow, id: b}]\n")
        assert (err.code, err.line, err.field) == ("policy.duplicate_key", 2, "rules[0].id")


class TestAliasesAndMergeKeys:
    def test_collection_alias(self) -> None:
        err = error_of(
            dedent("""
            version: 1
            rules:
              - &r {id: a, effect: allow}
              - *r
            """)
        )
        assert (err.code, err.line, err.field) == ("policy.invalid", 3, "rules[1]")
        assert err.reason == "YAML aliases are not allowed in policies"

    def test_alias_as_mapping_value(self) -> None:
        err = error_of(
            dedent("""
            version: 1
            tools:
              a: &decl {kind: tool_call}
              b: *decl
            rules: [{id: r, effect: allow}]
            """)
        )
        assert (err.code, err.line, err.field) == ("policy.invalid", 4, "tools.b")

    def test_scalar_alias(self) -> None:
        err = error_of(
            dedent("""
            version: 1
            name: &n shared
            description: *n
            rules: [{id: r, effect: allow}]
            """)
        )
        assert (err.code, err.line, err.field) == ("policy.invalid", 3, "description")
        assert err.reason == "YAML aliases are not allowed in policies"

    def test_scalar_alias_in_a_list(self) -> None:
        err = error_of(
            dedent("""
            version: 1
            rules:
              - id: r
                effect: allow
                tool: [&t read, *t]
            """)
        )
        assert (err.code, err.line, err.field) == ("policy.invalid", 5, "rules[0].tool[1]")

    def test_alias_as_a_key(self) -> None:
        err = error_of(
            dedent("""
            version: 1
            name: &k description
            *k : text
            rules: [{id: r, effect: allow}]
            """)
        )
        assert (err.code, err.line, err.field) == ("policy.invalid", 3, "")
        assert err.reason == "YAML aliases are not allowed in policies"

    def test_billion_laughs_is_refused_quickly(self) -> None:
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
        err = error_of("\n".join(lines) + "\n")
        # the composer hands back the anchored node itself, so the line is the anchor's
        assert (err.code, err.field) == ("policy.invalid", "a1[0]")
        assert err.reason == "YAML aliases are not allowed in policies"

    def test_merge_key(self) -> None:
        err = error_of(
            dedent("""
            version: 1
            rules:
              - &base {id: a, effect: allow}
              - <<: *base
                id: b
            """)
        )
        assert (err.code, err.line, err.field) == ("policy.invalid", 4, "rules[1]")
        assert err.reason == "YAML merge keys are not allowed"

    def test_merge_key_with_an_inline_mapping(self) -> None:
        err = error_of(VALID + "    <<: {tool: x}\n")
        assert (err.code, err.line, err.field) == ("policy.invalid", 5, "rules[0]")
        assert err.reason == "YAML merge keys are not allowed"

    def test_anchor_without_alias_is_harmless(self) -> None:
        policy = policy_from_text("version: 1\nrules:\n  - &r {id: r, effect: allow}\n")
        assert [r.id for r in policy.rules] == ["r"]


class TestValueTypes:
    @pytest.mark.parametrize(
        ("value", "tag"),
        [
            ("2024-01-01", "tag:yaml.org,2002:timestamp"),
            ("2024-01-01T10:00:00Z", "tag:yaml.org,2002:timestamp"),
            ("!!binary aGVsbG8=", "tag:yaml.org,2002:binary"),
            ("!custom value", "!custom"),
            ("!!python/name:os.system ''", "tag:yaml.org,2002:python/name:os.system"),
        ],
    )
    def test_non_json_scalars(self, value: str, tag: str) -> None:
        err = error_of(VALID + f"    description: {value}\n")
        assert (err.code, err.line, err.field) == ("policy.invalid", 5, "rules[0].description")
        assert err.reason == (
            f"unsupported YAML value type {tag!r} (use strings, numbers, booleans, null)"
        )

    @pytest.mark.parametrize(
        ("value", "tag"),
        [
            ("!!set {a, b}", "tag:yaml.org,2002:set"),
            ("!!omap [{a: 1}]", "tag:yaml.org,2002:omap"),
            ("!thing {a: 1}", "!thing"),
            ("!thing [a]", "!thing"),
        ],
    )
    def test_tagged_collections(self, value: str, tag: str) -> None:
        err = error_of(VALID + f"    tool: {value}\n")
        assert (err.code, err.line, err.field) == ("policy.invalid", 5, "rules[0].tool")
        assert err.reason == (
            f"unsupported YAML collection type {tag!r} (use plain mappings and lists)"
        )

    def test_explicit_standard_tags_are_fine(self) -> None:
        policy = policy_from_text(VALID + "    tool: !!seq [a]\n    reason: !!str 5\n")
        assert policy.rules[0].tools == ("a",)
        assert policy.rules[0].reason == "5"

    @pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".Inf", ".NaN"])
    def test_non_finite_floats(self, value: str) -> None:
        err = error_of(
            dedent(f"""
            version: 1
            tools:
              t:
                args: {{properties: {{n: {{type: number, maximum: {value}}}}}}}
            rules: [{{id: r, effect: allow}}]
            """)
        )
        assert (err.code, err.line) == ("policy.invalid", 4)
        assert err.field == "tools.t.args.properties.n.maximum"
        assert err.reason == f"{value!r} is not allowed (numbers must be finite)"

    @pytest.mark.parametrize("key", ["1: x", "true: x", "null: x", "? [a]\n    : x"])
    def test_non_string_keys(self, key: str) -> None:
        err = error_of(VALID + f"    {key}\n")
        assert (err.code, err.line, err.field) == ("policy.invalid", 5, "rules[0]")
        assert err.reason == "mapping keys must be strings"

    def test_yaml11_yes_no_keys_are_booleans_and_refused(self) -> None:
        err = error_of(VALID + "    on: x\n")
        assert (err.line, err.reason) == (5, "mapping keys must be strings")


class TestNesting:
    def test_deep_nesting_is_an_error(self) -> None:
        err = error_of("version: 1\nname: " + "[" * 70 + "]" * 70 + "\n")
        assert (err.code, err.line) == ("policy.invalid", 2)
        assert err.reason == "nested too deeply"

    def test_deep_block_nesting(self) -> None:
        text = "".join("  " * i + f"k{i}:\n" for i in range(80)) + "  " * 80 + "v\n"
        err = error_of(text)
        assert err.reason == "nested too deeply"
        assert err.line == 65

    def test_depth_64_is_fine_at_the_yaml_level(self) -> None:
        err = error_of("version: 1\nname: " + "[" * 63 + "]" * 63 + "\n")
        # parsed fine; refused only later because a name must be a string
        assert (err.code, err.field) == ("policy.type", "name")

    def test_very_deep_nesting_does_not_crash_the_interpreter(self) -> None:
        # libyaml's composer recurses in C: 100k levels used to kill the process (SIGSEGV)
        code = (
            "from ringfence.core.policy.load import policy_from_text\n"
            "from ringfence.errors import PolicyError\n"
            "try:\n"
            "    policy_from_text('[' * 100000 + ']' * 100000)\n"
            "except PolicyError as e:\n"
            "    print(e.code, e.reason)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert out.returncode == 0, out.stderr
        # Our own depth check, or (PyYAML >= 6.0.4) libyaml's: either way a coded load error.
        assert out.stdout in (
            "policy.invalid nested too deeply\n",
            "policy.yaml malformed YAML: exceeded maximum nesting depth\n",
        )


class TestLocated:
    def test_lines_and_fallback_to_ancestor(self) -> None:
        loc = parse("a:\n  b:\n    - 1\n    - {c: 2}\n", "src")
        assert loc.value == {"a": {"b": [1, {"c": 2}]}}
        assert loc.line(("a",)) == 1
        assert loc.line(("a", "b")) == 2
        assert loc.line(("a", "b", 1, "c")) == 4
        assert loc.line(("a", "b", 1, "missing", "deeper")) == 4
        assert loc.line(("nope",)) == 1

    def test_error_names_source_line_and_field(self) -> None:
        loc = parse("a:\n  b: 1\n", "f.yaml")
        err = loc.error(("a", "b"), "bad", "policy.x")
        assert (err.code, err.source, err.line, err.field) == ("policy.x", "f.yaml", 2, "a.b")
        assert str(err) == "f.yaml:2: a.b: bad"
        assert isinstance(loc, Located)

    @pytest.mark.parametrize(
        ("path", "text"),
        [((), ""), (("rules", 3, "when"), "rules[3].when"), ((0, "a", 1), "[0].a[1]")],
    )
    def test_dotted(self, path: tuple[str | int, ...], text: str) -> None:
        assert dotted(path) == text


def test_lone_surrogate_in_a_str_policy() -> None:
    err = error_of("version: 1\nname: x\ud800\n")
    assert (err.code, err.line, err.source) == ("policy.encoding", None, "p.yaml")
    assert err.reason == "not valid UTF-8 at character 18 (lone surrogate)"
