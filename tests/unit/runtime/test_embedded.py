"""open_guard / open_audit_log: a policy, a folder, SQLite and a key file; nothing to run."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

import ringfence
from ringfence import AuditError, DeniedError, Enforcement, PolicyError
from ringfence.core.audit.encoding import decode
from ringfence.core.audit.verify import verify_log
from ringfence.errors import ConfigError
from ringfence.stores.keys import load_public_key
from ringfence.stores.sqlite import SQLiteAuditStore

POLICY = """
version: 1
name: embedded
tools:
  safe_delete:
    args: {type: object, properties: {path: {type: string}}}
    resources: {path: path}
rules:
  - id: tmp-only
    effect: allow
    tool: safe_delete
    resource: "path:/tmp/**"
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_open_guard_from_a_file_records_to_the_folder(policy_file: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ran: list[str] = []
    with ringfence.open_guard(policy_file, data_dir=data, agent="cleaner") as guard:

        @guard.protect
        def safe_delete(path: str) -> None:
            ran.append(path)

        safe_delete("/tmp/a")
        with pytest.raises(DeniedError):
            safe_delete("/etc/passwd")
    assert ran == ["/tmp/a"]

    key = data / "keys" / "audit-signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    reader = SQLiteAuditStore(data / "audit", readonly=True)
    records = [decode(d) for _, d in reader.records()]
    assert [(r["type"], r.get("effect")) for r in records] == [
        ("decision", "allow"),
        ("outcome", None),
        ("decision", "deny"),
    ]
    assert {r["agent"] for r in records} == {"cleaner"}
    assert records[0]["policy"]["name"] == "embedded"
    keys = load_public_key(data / "keys" / "audit-signing.pub")
    report = verify_log(reader.records(), reader.checkpoints(), keys, log_id=reader.log_id)
    assert report.ok, report.problems
    assert report.unsealed == 0
    reader.close()


def test_reopening_the_folder_continues_the_same_log(policy_file: Path, tmp_path: Path) -> None:
    for _ in range(3):
        with ringfence.open_guard(policy_file, data_dir=tmp_path) as guard:
            guard.check(guard.action("safe_delete", {"path": "/tmp/a"}))
    with ringfence.open_audit_log(tmp_path) as log:
        assert log.size == 3
        report = log.verify()
        assert report.ok
        assert report.records == 3


def test_a_second_guard_on_the_same_folder_is_refused(policy_file: Path, tmp_path: Path) -> None:
    with ringfence.open_guard(policy_file, data_dir=tmp_path) as guard:
        with pytest.raises(AuditError) as info:
            ringfence.open_guard(policy_file, data_dir=tmp_path)
        assert info.value.code == "audit.locked"
        assert guard.check(guard.action("safe_delete", {"path": "/tmp/a"})).allowed
    ringfence.open_guard(policy_file, data_dir=tmp_path).close()  # released on close


def test_a_bad_policy_opens_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: []\n")
    with pytest.raises(PolicyError) as info:
        ringfence.open_guard(bad, data_dir=tmp_path / "data")
    assert info.value.code == "policy.empty"
    assert not (tmp_path / "data").exists()


def test_an_unusable_key_releases_the_store(tmp_path: Path) -> None:
    ringfence.open_audit_log(tmp_path).close()
    key = tmp_path / "keys" / "audit-signing.key"
    key.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        ringfence.open_audit_log(tmp_path)
    assert info.value.code == "config.key_permissions"
    key.chmod(0o600)
    ringfence.open_audit_log(tmp_path).close()  # not left locked by the failed open


def test_durability_options(policy_file: Path, tmp_path: Path) -> None:
    with ringfence.open_guard(policy_file, data_dir=tmp_path, durability="fsync") as guard:
        assert guard.check(guard.action("safe_delete", {"path": "/tmp/a"})).allowed
        assert guard.audit.store.durability == "fsync"  # type: ignore[attr-defined]
    with pytest.raises(AuditError, match="durability"):
        ringfence.open_guard(policy_file, data_dir=tmp_path, durability="eventually")


def test_options_reach_the_guard(
    policy_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ringfence")
    policy = ringfence.load_policy(policy_file)
    guard = ringfence.open_guard(
        policy,
        data_dir=tmp_path,
        enforcement=Enforcement.UNSAFE_AUDIT_ONLY,
        clock=lambda: 7,
        roles=("ops",),
    )
    try:
        action = guard.action("safe_delete", {"path": "/etc/passwd"})
        assert (action.time_ns, action.roles) == (7, ("ops",))
        assert guard.authorize(action).effect is ringfence.Effect.DENY  # not enforced
        assert "UNSAFE" in caplog.text
    finally:
        guard.close()


def test_closed_store_under_a_guard_denies(policy_file: Path, tmp_path: Path) -> None:
    guard = ringfence.open_guard(policy_file, data_dir=tmp_path)
    guard.audit.store.close()
    decision = guard.check(guard.action("safe_delete", {"path": "/tmp/a"}))
    assert decision.rules == ("ringfence:audit",)
    assert not decision.allowed
    with pytest.raises(AuditError):
        guard.close()  # the final checkpoint cannot be written either
