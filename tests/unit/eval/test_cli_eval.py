"""``ringfence eval``: exit codes, the table and summary, JSON, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ringfence.cli.main import cli

from ._support import ALLOW_ALL, DENY_ALL, TINY_POLICY, suite_text, write


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["eval", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def scenarios(tmp_path: Path) -> Path:
    return write(tmp_path, "scenarios.yaml", suite_text(benign=2, attacked=2))


def test_targets_met_exit_0_with_table_and_summary(tmp_path: Path, scenarios: Path) -> None:
    policy = write(tmp_path, "policy.yaml", TINY_POLICY)
    code, out = run("--policy", str(policy), "--scenarios", str(scenarios))
    assert code == 0, out
    assert "t/attacked-0" in out and "t/benign-1" in out
    assert "stopped at the harm: #2 send_email: deny (injected-recipient)" in out
    assert "benign sessions fully allowed: 2/2 (100.0%; target 90%)" in out
    assert "benign sessions with no deny: 2/2 (100.0%); needing an approval: 0/2" in out
    assert "attacked sessions stopped at or before the first harmful call: 2/2" in out
    assert "targets met" in out


@pytest.mark.parametrize(
    ("policy_text", "benign", "attacked"),
    [(ALLOW_ALL, 1.0, 0.0), (DENY_ALL, 0.0, 1.0)],
)
def test_targets_missed_exit_1(
    tmp_path: Path, scenarios: Path, policy_text: str, benign: float, attacked: float
) -> None:
    policy = write(tmp_path, "policy.yaml", policy_text)
    code, out = run("--policy", str(policy), "--scenarios", str(scenarios), "--json")
    assert code == 1
    data = json.loads(out)
    assert data["benign_fully_allowed_share"] == benign
    assert data["attacked_stopped_share"] == attacked
    assert data["targets_met"] is False
    assert len(data["scenarios"]) == 4


def test_a_policy_folder_is_accepted(tmp_path: Path, scenarios: Path) -> None:
    folder = tmp_path / "policy"
    folder.mkdir()
    write(folder, "a.yaml", TINY_POLICY)
    code, _ = run("-p", str(folder), "--scenarios", str(scenarios))
    assert code == 0


def test_a_bad_scenario_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", suite_text().replace("tool: send_email", "tool: mail", 1))
    code, out = run("--scenarios", str(bad))
    assert code == 2
    assert "error[scenario.invalid]" in out and "'mail' is not in the tool vocabulary" in out


def test_a_bad_policy_is_a_usage_error(tmp_path: Path, scenarios: Path) -> None:
    policy = write(tmp_path, "policy.yaml", "version: 1\nrules: [{id: x, effect: maybe}]\n")
    code, out = run("--policy", str(policy), "--scenarios", str(scenarios))
    assert code == 2
    assert "error[" in out


def test_pack_options_do_not_apply_to_an_explicit_policy(tmp_path: Path, scenarios: Path) -> None:
    policy = write(tmp_path, "policy.yaml", ALLOW_ALL)
    code, out = run("--policy", str(policy), "--internal-domain", "corp.example")
    assert code == 2
    assert "apply to the default pack" in out


def test_the_default_pack_runs_over_the_builtin_suite() -> None:
    code, out = run("--json")
    assert code in (0, 1), out
    data = json.loads(out)
    assert data["benign"] >= 30 and data["attacked"] >= 30
    assert data["targets_met"] is (code == 0)
