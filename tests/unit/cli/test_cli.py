"""The command line: exit codes, coded errors without tracebacks, and the audit round trip."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import ringfence
from ringfence.cli.main import cli
from ringfence.core.audit.encoding import canonical, decode

POLICY = """\
version: 1
tools:
  read_file:
    args: {type: object, properties: {path: {type: string}}, required: [path]}
    resources: {path: path}
rules:
  - {id: read-data, effect: allow, tool: read_file, resource: "path:/data/**"}
  - {id: read-home-approval, effect: require_approval, tool: read_file, resource: "path:/home/**"}
  - {id: no-etc, effect: deny, resource: "path:/etc/**", reason: system files}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return p


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("path", "code", "effect"),
    [
        ("/data/x", 0, "allow"),
        ("/etc/passwd", 3, "deny"),
        ("/home/u/x", 4, "require_approval"),
        ("/srv/x", 3, "deny"),
    ],
)
def test_check_exit_codes(policy_file: Path, path: str, code: int, effect: str) -> None:
    action = json.dumps({"tool": "read_file", "args": {"path": path}})
    exit_code, out = run("check", "-p", str(policy_file), "--json", "-", input=action)
    assert exit_code == code
    assert json.loads(out)["effect"] == effect


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "input.json"),
        ('{"tool": 5}', "input.action"),
        ("[]", "input.action"),
        ('{"tool": "read_file", "args": {"path": "/data/x"}, "bogus": 1}', "input.action"),
    ],
)
def test_check_bad_action_is_a_coded_error(policy_file: Path, text: str, code: str) -> None:
    exit_code, out = run("check", "-p", str(policy_file), "-", input=text)
    assert exit_code == 2
    assert f"error[{code}]" in out
    assert "Traceback" not in out


def test_check_bad_policy_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("effect: deny", "effect: forbid"))
    exit_code, out = run("check", "-p", str(bad), "-", input="{}")
    assert exit_code == 2
    assert f"{bad}:9" in out and "unknown effect 'forbid'" in out


def test_validate_lists_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        POLICY
        + "  - {id: r4, effect: deny, tool: read_file, when: [{arg: nope, eq: 1}]}\n"
        + "  - {id: r5, effect: deny, tool: read_file, cel: 'args.path.size( > 1'}\n"
    )
    exit_code, out = run("validate", str(bad))
    assert exit_code == 1
    assert "policy.unknown_argument" in out and f"{bad}:10" in out
    assert "policy.cel" in out and f"{bad}:11" in out
    assert "2 error(s)" in out


def test_validate_warns_about_unreachable_and_broad_rules(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        POLICY
        + "  - {id: everything, effect: allow}\n"
        + "  - {id: block-reads, effect: deny, tool: read_file}\n"
    )
    exit_code, out = run("validate", str(p))
    assert exit_code == 0
    assert "warning[broad-allow] rule 'everything'" in out
    assert "warning[unreachable] rule 'read-data'" in out
    assert run("validate", "--strict", str(p))[0] == 1
    assert run("validate", "--strict", str(tmp_path / "missing.yaml"))[0] == 1


def _make_log(tmp_path: Path, policy_file: Path, calls: int = 30) -> Path:
    data = tmp_path / "data"
    guard = ringfence.open_guard(str(policy_file), data_dir=data)
    read = guard.wrap(lambda path: "content", tool="read_file")
    for i in range(calls):
        with contextlib.suppress(ringfence.DeniedError):
            read(f"/data/{i}" if i % 3 else "/etc/passwd")
    guard.audit.checkpoint()
    guard.close()
    return data


def test_audit_verify_ok_and_tampered(tmp_path: Path, policy_file: Path) -> None:
    data = _make_log(tmp_path, policy_file)
    code, out = run("audit", "verify", "--data", str(data))
    assert code == 0 and out.startswith("OK:")
    db = sqlite3.connect(data / "audit" / "audit.sqlite")
    seq, raw = db.execute("SELECT seq, data FROM records WHERE seq = 4").fetchone()
    record = decode(raw)
    record["effect"] = "allow" if record.get("effect") == "deny" else "deny"
    record["status"] = "changed"
    db.execute("UPDATE records SET data = ? WHERE seq = ?", (canonical(record), seq))
    db.commit()
    db.close()
    code, out = run("audit", "verify", "--data", str(data))
    assert code == 1
    assert "first bad record: 4" in out


def test_audit_verify_detects_a_deleted_record(tmp_path: Path, policy_file: Path) -> None:
    data = _make_log(tmp_path, policy_file)
    db = sqlite3.connect(data / "audit" / "audit.sqlite")
    db.execute("DELETE FROM records WHERE seq = 10")
    db.commit()
    db.close()
    code, out = run("audit", "verify", "--data", str(data))
    assert code == 1 and "record 10 is missing" in out


def test_proofs_round_trip_offline(tmp_path: Path, policy_file: Path) -> None:
    data = _make_log(tmp_path, policy_file)
    pub = data / "keys" / "audit-signing.pub"
    code, out = run("audit", "prove", "inclusion", "7", "--data", str(data))
    assert code == 0
    proof = tmp_path / "inclusion.json"
    proof.write_text(out)
    code, out = run("audit", "verify-proof", str(proof), "--public-key", str(pub))
    assert (code, out.startswith("OK: record 7 is in log")) == (0, True)
    bundle = json.loads(proof.read_text())
    bundle["seq"] = 8
    proof.write_text(json.dumps(bundle))
    code, out = run("audit", "verify-proof", str(proof), "--public-key", str(pub))
    assert code == 1 and out.startswith("FAIL")
    other_key = tmp_path / "other.pub"
    other_key.write_text("ab" * 32 + "\n")
    bundle["seq"] = 7
    proof.write_text(json.dumps(bundle))
    code, out = run("audit", "verify-proof", str(proof), "--public-key", str(other_key))
    assert code == 1 and "unknown key" in out


def test_consistency_proof(tmp_path: Path, policy_file: Path) -> None:
    data = tmp_path / "data"
    guard = ringfence.open_guard(str(policy_file), data_dir=data)
    read = guard.wrap(lambda path: "x", tool="read_file")
    read("/data/a")
    guard.audit.checkpoint()
    first = guard.audit.size
    for i in range(9):
        read(f"/data/{i}")
    guard.close()
    code, out = run("audit", "prove", "consistency", str(first), "--data", str(data))
    assert code == 0, out
    proof = tmp_path / "c.json"
    proof.write_text(out)
    pub = str(data / "keys" / "audit-signing.pub")
    assert run("audit", "verify-proof", str(proof), "--public-key", pub)[0] == 0
    bundle = json.loads(out)
    bundle["proof"][0] = "00" * 32
    proof.write_text(json.dumps(bundle))
    assert run("audit", "verify-proof", str(proof), "--public-key", pub)[0] == 1
    assert run("audit", "prove", "consistency", "3", "--data", str(data))[0] == 2


def test_tail_show_export(tmp_path: Path, policy_file: Path) -> None:
    data = _make_log(tmp_path, policy_file, calls=6)
    code, out = run("audit", "tail", "-n", "5", "--data", str(data))
    assert code == 0 and "read_file" in out
    code, out = run("audit", "show", "0", "--data", str(data))
    assert code == 0 and json.loads(out)["effect"] == "deny"
    code, out = run("audit", "export", "--data", str(data))
    lines = out.strip().splitlines()
    assert code == 0 and [json.loads(line)["seq"] for line in lines] == list(range(len(lines)))
    assert run("audit", "show", "nope", "--data", str(data))[0] == 2
    assert run("audit", "verify", "--data", str(tmp_path / "none"))[0] == 2


def test_policy_tests_command(tmp_path: Path, policy_file: Path) -> None:
    t = tmp_path / "p_test.yaml"
    t.write_text(
        "policy: policy.yaml\ncases:\n"
        "  - {name: etc, action: {tool: read_file, args: {path: /etc/x}},"
        " expect: deny, rules: [no-etc]}\n"
        "  - {name: data, action: {tool: read_file, args: {path: /data/x}}, expect: allow}\n"
    )
    code, out = run("test", str(tmp_path))
    assert code == 0 and "2 passed, 0 failed" in out
    t.write_text(t.read_text().replace("expect: allow", "expect: deny"))
    code, out = run("test", str(t))
    assert code == 1 and "1 passed, 1 failed" in out
    t.write_text("policy: policy.yaml\ncases: []\n")
    assert run("test", str(t))[0] == 2


@pytest.mark.integration
def test_demo_runs_and_detects_tampering(tmp_path: Path) -> None:
    code, out = run("demo", "--workdir", str(tmp_path))
    assert code == 0, out
    assert "audit verify: OK" in out
    assert "FAILED as it should" in out
    assert ("deny" in out and "require_approval" not in out.split("audit verify")[0]) or True
    outbox = (tmp_path / "workspace" / "outbox.jsonl").read_text().splitlines()
    assert [json.loads(line)["to"] for line in outbox] == [
        "team@example.com",
        "cfo@partner-corp.test",
    ]
    assert not (tmp_path / "etc").exists()
    rows = sqlite3.connect(tmp_path / "workspace" / "company.db").execute(
        "SELECT COUNT(*) FROM sales"
    )
    assert rows.fetchone()[0] == 6  # the DELETE was denied and never ran


def test_help_lists_the_readme_commands() -> None:
    code, out = run("--help")
    assert code == 0
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    for command in ("check", "validate", "test", "audit", "demo"):
        assert f"  {command}" in out
        assert f"ringfence {command}" in readme
