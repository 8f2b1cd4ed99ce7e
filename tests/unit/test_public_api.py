"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import ringfence

EXPECTED = [
    "Action",
    "ActionKind",
    "ApprovalAnswer",
    "ApprovalError",
    "ApprovalQueue",
    "AuditError",
    "AuditLog",
    "Authority",
    "ConfigError",
    "Controls",
    "Decision",
    "DeniedError",
    "Effect",
    "Enforcement",
    "Guard",
    "IdentityError",
    "InputError",
    "LocalSandbox",
    "Policy",
    "PolicyError",
    "QueueApprover",
    "Resource",
    "RingfenceError",
    "SandboxError",
    "SandboxProfile",
    "SandboxUnavailable",
    "SecretBroker",
    "SecretError",
    "Verifier",
    "load_policy",
    "open_approval_queue",
    "open_audit_log",
    "open_controls",
    "open_guard",
    "policy_from_text",
]


def test_all_is_pinned_and_sorted() -> None:
    assert ringfence.__all__ == EXPECTED
    assert sorted(ringfence.__all__) == ringfence.__all__
    for name in EXPECTED:
        assert getattr(ringfence, name) is not None


def test_unknown_attribute() -> None:
    try:
        ringfence.nope  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_light() -> None:
    heavy = "('yaml', 'nacl', 'cel', 'sqlite3', 'msgspec')"
    code = f"import sys, ringfence; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_example_runs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "policy.yaml").write_text(
        (root / "examples" / "policy.yaml").read_text()
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "deleted /tmp/scratch/old.log",
        "deny ('never-system-files',) ('system files are off limits',)",
    ]


def test_readme_policy_is_the_example_file() -> None:
    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    policy = [b for b in blocks if b.startswith("version: 1")]
    assert policy == [(root / "examples" / "policy.yaml").read_text()]


def test_readme_gateway_config_is_the_example_file_and_loads() -> None:
    from ringfence.adapters.mcp.config import load_config

    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    gateway = [b for b in blocks if b.startswith("# gateway.yaml")]
    assert gateway == [(root / "examples" / "gateway.yaml").read_text()]
    config = load_config(root / "examples" / "gateway.yaml")
    assert config.path(config.policy) == root / "examples" / "policy.yaml"
    assert sorted(config.servers) == ["files", "web"]
    assert config.servers["files"].trusted and not config.servers["web"].trusted
