"""``ringfence identity``: the whole life of an agent from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ringfence.cli.main import cli


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def data(tmp_path: Path) -> str:
    folder = str(tmp_path / "rf")
    assert (
        run("identity", "create", "planner", "--trust-domain", "corp.example", "--data", folder)[0]
        == 0
    )
    assert run("identity", "create", "researcher", "--data", folder)[0] == 0
    return folder


def issue(data: str, *extra: str) -> str:
    code, out = run(
        "identity",
        "issue",
        "planner",
        "--tool",
        "read_*",
        "--resource",
        "path:/workspace/**",
        "--user",
        "alice",
        "--delegable",
        "1",
        "--budget",
        "max_calls=10",
        "--data",
        data,
        *extra,
    )
    assert code == 0, out
    return out.strip().splitlines()[-1]


def test_create_prints_the_id(tmp_path: Path) -> None:
    code, out = run(
        "identity", "create", "a", "--trust-domain", "corp.example", "--data", str(tmp_path)
    )
    assert code == 0
    assert out.splitlines()[0] == "spiffe://corp.example/agent/a"


def test_first_create_needs_a_trust_domain(tmp_path: Path) -> None:
    code, out = run("identity", "create", "a", "--data", str(tmp_path))
    assert code == 2 and "config.trust_domain" in out


def test_commands_need_a_registry(tmp_path: Path) -> None:
    for args in (["list"], ["jwks"], ["rotate"], ["issue", "a", "--tool", "x"]):
        code, out = run("identity", *args, "--data", str(tmp_path))
        assert code == 2 and "identity.not_found" in out, args


def test_issue_verify_delegate(data: str) -> None:
    token = issue(data)
    code, out = run("identity", "verify", "-", "--data", data, "--json", input=token)
    assert code == 0
    claims = json.loads(out)
    assert claims["sub"] == "spiffe://corp.example/agent/planner"
    assert claims["budgets"] == {"max_calls": 10}
    code, chain = run(
        "identity",
        "delegate",
        "-",
        "researcher",
        "--tool",
        "read_file",
        "--data",
        data,
        input=token,
    )
    assert code == 0
    code, out = run(
        "identity",
        "verify",
        "-",
        "--data",
        data,
        "--tool",
        "read_file",
        "--resource",
        "path:/workspace/x",
        input=chain,
    )
    assert code == 0
    assert "OK spiffe://corp.example/agent/researcher" in out
    assert "delegated by spiffe://corp.example/agent/planner" in out


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--tool", "write_file"], "credential.tool_not_in_scope"),
        (["--resource", "path:/etc/passwd"], "credential.resource_not_in_scope"),
        (["--audience", "payments"], "credential.wrong_audience"),
    ],
)
def test_verify_denies_with_a_code(data: str, args: list[str], code: str) -> None:
    exit_code, out = run("identity", "verify", "-", "--data", data, *args, input=issue(data))
    assert exit_code == 1
    assert out.startswith(f"DENY {code}: ")


def test_verify_garbage(data: str) -> None:
    exit_code, out = run("identity", "verify", "-", "--data", data, input="not.a.token")
    assert exit_code == 1 and "credential.malformed" in out
    exit_code, out = run("identity", "verify", "-", "--data", data, input="")
    assert exit_code == 1 and out.startswith("DENY credential.missing")


def test_delegate_refuses_to_widen(data: str) -> None:
    code, out = run(
        "identity", "delegate", "-", "researcher", "--tool", "*", "--data", data, input=issue(data)
    )
    assert code == 2 and "delegation.scope_widened" in out
    code, out = run(
        "identity",
        "delegate",
        "-",
        "researcher",
        "--budget",
        "max_calls=11",
        "--data",
        data,
        input=issue(data),
    )
    assert code == 2 and "delegation.budget_widened" in out


def test_rotate_keeps_old_credentials_valid(data: str) -> None:
    token = issue(data)
    code, kid = run("identity", "rotate", "--data", data)
    assert code == 0
    assert run("identity", "verify", "-", "--data", data, input=token)[0] == 0
    new = issue(data)
    assert run("identity", "verify", "-", "--data", data, input=new)[0] == 0
    keys = json.loads(run("identity", "jwks", "--data", data)[1])["keys"]
    assert kid.strip() in [k["kid"] for k in keys] and len(keys) == 2
    assert all(k["kty"] == "OKP" and k["alg"] == "EdDSA" and "d" not in k for k in keys)


def test_rotate_an_agent_key(data: str) -> None:
    code, out = run("identity", "rotate", "--agent", "planner", "--data", data)
    assert code == 0
    listing = json.loads(run("identity", "list", "--data", data, "--json")[1])
    planner = next(a for a in listing["agents"] if a["id"].endswith("/planner"))
    assert planner["kid"] == out.strip()


@pytest.mark.parametrize("what", ["agent", "credential", "jti", "key"])
def test_revoke(data: str, what: str) -> None:
    token = issue(data)
    if what == "agent":
        args = ["planner"]
    elif what == "credential":
        args = ["--credential", "-"]
    elif what == "jti":
        claims = json.loads(
            run("identity", "verify", "-", "--json", "--data", data, input=token)[1]
        )
        args = ["--jti", claims["jti"]]
    else:
        claims = json.loads(
            run("identity", "verify", "-", "--json", "--data", data, input=token)[1]
        )
        args = ["--key", claims["kid"]]
    code, out = run("identity", "revoke", *args, "--reason", "test", "--data", data, input=token)
    assert code == 0 and out.startswith("revoked ")
    code, out = run("identity", "verify", "-", "--data", data, input=token)
    assert code == 1 and "revoked" in out


def test_revoke_needs_exactly_one_target(data: str) -> None:
    assert run("identity", "revoke", "--data", data)[0] == 2
    assert run("identity", "revoke", "planner", "--jti", "x" * 10, "--data", data)[0] == 2


def test_list(data: str) -> None:
    run("identity", "revoke", "researcher", "--data", data)
    listing = json.loads(run("identity", "list", "--data", data, "--json")[1])
    assert listing["trust_domain"] == "corp.example"
    status = {a["id"].rsplit("/", 1)[1]: a["status"] for a in listing["agents"]}
    assert status == {"planner": "active", "researcher": "revoked"}
    assert [k["owner"] for k in listing["keys"]].count("(key ring)") == 1
    code, out = run("identity", "list", "--data", data)
    assert code == 0 and "corp.example" in out


@pytest.mark.parametrize("ttl", ["0", "abc", "5w", "-1"])
def test_bad_ttl(data: str, ttl: str) -> None:
    code, out = run("identity", "issue", "planner", "--tool", "x", "--ttl", ttl, "--data", data)
    assert code == 2 and ("input.ttl" in out or "identity.invalid" in out)


def test_bad_budget(data: str) -> None:
    code, out = run(
        "identity", "issue", "planner", "--tool", "x", "--budget", "max_calls", "--data", data
    )
    assert code == 2 and "input.budget" in out


def test_issue_needs_a_tool(data: str) -> None:
    code, out = run("identity", "issue", "planner", "--data", data)
    assert code == 2 and "input.scope" in out


def test_help_lists_the_commands() -> None:
    code, out = run("identity", "--help")
    assert code == 0
    for command in ("create", "list", "issue", "delegate", "verify", "rotate", "revoke", "jwks"):
        assert command in out
