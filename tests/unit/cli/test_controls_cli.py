"""``ringfence kill`` / ``unkill`` / ``kills``: scopes, exit codes, the audit record, and a
kill seen by a process that holds the store open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import ringfence
from ringfence.cli.main import cli
from ringfence.core.action import Action
from ringfence.core.audit.encoding import decode
from ringfence.runtime.controls import open_controls
from ringfence.stores.sqlite import SQLiteAuditStore


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def controls_records(data: Path) -> list[dict[str, object]]:
    store = SQLiteAuditStore(data / "audit", readonly=True)
    try:
        rows = [decode(d) for _, d in store.records()]
    finally:
        store.close()
    return [r for r in rows if r["type"] == "control"]


def test_kill_list_unkill_round_trip(tmp_path: Path) -> None:
    data = str(tmp_path / "rf")
    code, out = run(
        "kill", "--agent", "bot", "--reason", "incident 7", "--as", "alice", "--data", data
    )
    assert code == 0 and out.startswith("killed agent=bot (kill k-")
    code, out = run("kill", "--agent", "bot", "--data", data)
    assert code == 0 and "already killed" in out and "by alice" in out
    code, out = run("kills", "--json", "--data", data)
    kills = json.loads(out)
    assert [(k["scope"]["kind"], k["scope"]["value"], k["by"], k["reason"]) for k in kills] == [
        ("agent", "bot", "alice", "incident 7")
    ]
    code, out = run("unkill", "--agent", "bot", "--reason", "fixed", "--data", data)
    assert code == 0 and out.startswith("lifted kill k-")
    code, out = run("unkill", "--agent", "bot", "--data", data)
    assert code == 1 and "is not killed" in out
    code, out = run("kills", "--data", data)
    assert code == 0 and "no kills in force" in out
    code, out = run("kills", "--history", "--json", "--data", data)
    assert [e["op"] for e in json.loads(out)] == ["kill", "unkill"]
    records = controls_records(Path(data))
    assert [(r["op"], r["by"], r["observed"]) for r in records] == [
        ("kill", "alice", False),
        ("unkill", records[1]["by"], False),
    ]
    with ringfence.open_audit_log(data) as log:
        assert log.verify().ok


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--agent", "a", "--tool", "t"),
        ("--all", "--user", "u"),
    ],
)
def test_exactly_one_scope(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, out = run("kill", *args, "--data", str(tmp_path))
    assert code == 2 and "name exactly one scope" in out


def test_a_scope_that_matches_everything_is_refused(tmp_path: Path) -> None:
    code, out = run("kill", "--tool", "*", "--data", str(tmp_path))
    assert code == 2 and "error[input.kill_scope]" in out and "use the 'all' scope" in out


def test_kill_all_and_globs(tmp_path: Path) -> None:
    data = str(tmp_path)
    assert run("kill", "--all", "--data", data)[1].startswith("killed everything")
    assert run("kill", "--tool", "github__*", "--data", data)[0] == 0
    out = run("kills", "--data", data)[1]
    assert "everything" in out and "github__*" in out


def test_a_running_process_sees_the_kill_and_records_it(tmp_path: Path) -> None:
    """The agent process holds the audit log: the CLI cannot write it, the process does."""
    data = tmp_path / "rf"
    log = ringfence.open_audit_log(data)
    controls = open_controls(data, audit=log, watch_seconds=None)
    action = Action(kind="tool_call", tool="send", agent="bot")
    assert controls.check(action, 0) is None
    result = CliRunner().invoke(cli, ["kill", "--tool", "send", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "audit log is open in another process" in result.output
    hit = controls.check(action, 0)
    assert hit is not None and hit[0] == "ringfence:kill"
    controls.close()
    log.close()
    records = controls_records(data)
    assert [(r["op"], r["value"], r["observed"]) for r in records] == [("kill", "send", True)]


def test_store_option_names_a_shared_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    run("kill", "--session", "s1", "--store", str(shared), "--data", str(tmp_path / "a"))
    out = run("kills", "--json", "--store", str(shared), "--data", str(tmp_path / "b"))[1]
    assert [k["scope"]["value"] for k in json.loads(out)] == ["s1"]
    out = run("kills", "--json", "--data", str(tmp_path / "a"))[1]
    assert json.loads(out) == []  # a's own controls folder has none
