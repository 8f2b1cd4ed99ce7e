"""Run every conformance file against the library and the CLI; both must agree with the file.

Each file is also run with every expectation flipped, which must fail: a corpus that cannot
fail proves nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ringfence.core.decision import Effect
from ringfence.testing.policy_tests import load_cases, run_cases

HERE = Path(__file__).parent
FILES = sorted(HERE.glob("*_test.yaml"))


def test_corpus_is_not_empty() -> None:
    assert len(FILES) >= 4
    total = sum(len(load_cases(f)[1]) for f in FILES)
    denies = sum(1 for f in FILES for c in load_cases(f)[1] if c.expect is not Effect.ALLOW)
    assert total >= 30
    assert denies >= total // 2, "deny cases must be at least as many as allow cases"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_library(path: Path) -> None:
    policy, cases = load_cases(path)
    failures = [f"{r.case.name}: {r.problem}" for r in run_cases(policy, cases) if not r.passed]
    assert not failures


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_flipped_expectations_fail(path: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    for case in data["cases"]:
        case["expect"] = "allow" if case["expect"] != "allow" else "deny"
    flipped = tmp_path / path.name
    flipped.write_text(yaml.safe_dump(data))
    policy, cases = load_cases(flipped)
    assert not any(r.passed for r in run_cases(policy, cases))


@pytest.mark.integration
def test_cli_runs_the_corpus() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ringfence.cli", "test", str(HERE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    total = sum(len(load_cases(f)[1]) for f in FILES)
    assert f"{total} passed, 0 failed" in done.stdout


@pytest.mark.integration
def test_cli_reports_failures(tmp_path: Path) -> None:
    data = yaml.safe_load((HERE / "combining_test.yaml").read_text())
    data["cases"][0]["expect"] = "deny"
    bad = tmp_path / "bad_test.yaml"
    bad.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "ringfence.cli", "test", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "FAIL" in done.stdout
    assert "small payment allowed: expected deny, got allow" in done.stdout
