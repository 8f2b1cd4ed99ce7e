"""Loading policies from files and folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfence.core.action import Action
from ringfence.core.policy.load import PolicyErrors, load_policy, policy_from_text
from ringfence.errors import PolicyError

TOOLS = "version: 1\nname: tools\ntools:\n  read: {args: {properties: {path: {type: string}}}}\n"
RULES = (
    "version: 1\nname: rules\nrules:\n"
    "  - {id: no-etc, effect: deny, tool: read, when: {arg: path, startswith: /etc}}\n"
    "  - {id: read, effect: allow, tool: read}\n"
)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_one_file(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", TOOLS + "rules: [{id: r, effect: allow}]\n")
    policy = load_policy(path)
    assert [r.id for r in policy.rules] == ["r"]
    assert policy.rules[0].where.source == str(path)
    assert load_policy(str(path)).version == policy.version


def test_several_files_share_tools_and_keep_rule_order(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", TOOLS + "rules: [{id: first, effect: deny, tool: x}]\n")
    b = write(tmp_path, "b.yaml", RULES)
    policy = load_policy([a, b])
    assert [r.id for r in policy.rules] == ["first", "no-etc", "read"]
    assert policy.name == "tools + rules"
    assert policy.spec.sources == (str(a), str(b))
    d = policy.evaluate(Action(kind="tool_call", tool="read", args={"path": "/etc/x"}))
    assert d.rules == ("no-etc",)


def test_a_condition_may_use_a_tool_declared_in_another_file(tmp_path: Path) -> None:
    tools = write(tmp_path, "tools.yaml", TOOLS)
    rules = write(tmp_path, "rules.yaml", RULES)
    # tools.yaml alone has no rules; together they form a policy
    policy = load_policy([tools, rules])
    assert policy.tools["read"].where.source == str(tools)
    with pytest.raises(PolicyError) as info:
        load_policy(rules)
    assert info.value.code == "policy.unknown_argument"
    assert info.value.source == str(rules)


def test_folder_reads_yaml_and_yml_sorted(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", "version: 1\nrules: [{id: from-b, effect: allow}]\n")
    write(tmp_path, "a.yaml", "version: 1\nrules: [{id: from-a, effect: allow}]\n")
    write(tmp_path, "c.txt", "not: a policy\n")
    policy = load_policy(tmp_path)
    assert [r.id for r in policy.rules] == ["from-a", "from-b"]


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path)
    assert (info.value.code, info.value.reason) == ("policy.empty", "no policy files given")


def test_no_paths() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy([])
    assert info.value.code == "policy.empty"


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    err = info.value
    assert (err.code, err.source, err.line) == ("policy.io", str(missing), None)
    assert err.reason == "cannot read: No such file or directory"


def test_duplicate_rule_id_across_files_names_both(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "version: 1\nrules:\n  - {id: same, effect: allow}\n")
    b = write(tmp_path, "b.yaml", "version: 1\nrules:\n\n  - {id: same, effect: deny}\n")
    with pytest.raises(PolicyError) as info:
        load_policy([a, b])
    err = info.value
    assert (err.code, err.source, err.line, err.field) == (
        "policy.duplicate_rule",
        str(b),
        4,
        "rules[0].id",
    )
    assert err.reason == f"rule id 'same' is already used at {a}:3"


def test_duplicate_tool_across_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", TOOLS + "rules: [{id: r, effect: allow}]\n")
    b = write(tmp_path, "b.yaml", "version: 1\ntools:\n  read: {}\n")
    with pytest.raises(PolicyError) as info:
        load_policy([a, b])
    err = info.value
    assert (err.code, err.source, err.line, err.field) == (
        "policy.invalid",
        str(b),
        3,
        "tools.read",
    )
    assert err.reason == "tool 'read' is declared twice"


def test_error_in_the_second_file_names_that_file(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "version: 1\nrules: [{id: r, effect: allow}]\n")
    b = write(tmp_path, "b.yaml", b"version: 1\nname: \xff\n")
    with pytest.raises(PolicyError) as info:
        load_policy([a, b])
    assert (info.value.code, info.value.source) == ("policy.encoding", str(b))
    assert str(info.value) == f"{b}: not valid UTF-8 at byte 17"


def test_no_rules_in_any_file_names_every_source(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "version: 1\n")
    b = write(tmp_path, "b.yaml", "version: 1\n")
    with pytest.raises(PolicyError) as info:
        load_policy([a, b])
    assert (info.value.code, info.value.source) == ("policy.empty", f"{a}, {b}")


def test_policy_errors_is_a_policy_error() -> None:
    with pytest.raises(PolicyErrors) as info:
        policy_from_text("version: 1\nrules: [{id: r, effect: deny, cel: 'x'}]\n", "p.yaml")
    err = info.value
    assert isinstance(err, PolicyError)
    assert len(err.errors) == 1
    assert err.reason == err.errors[0].reason
    assert err.diagnostics() == f"error[policy.cel]: {err.errors[0].message}"
    assert err.to_dict() == {"code": "policy.cel", "message": err.message}
