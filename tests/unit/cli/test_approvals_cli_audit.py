"""``ringfence approvals`` answers are audit records: written by the command itself when no
other process holds the data folder's audit log, left to the holder when one does, and
shown readably by ``ringfence audit tail`` / ``show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ringfence
from ringfence.cli.main import cli
from ringfence.core.approvals import Status
from ringfence.core.audit.answer import ANSWER_TYPE, answer_key
from ringfence.core.audit.encoding import decode
from ringfence.core.audit.verify import verify_log
from ringfence.runtime.approvals import ApprovalQueue, open_approval_queue
from ringfence.runtime.embedded import open_audit_log
from ringfence.stores.keys import PUB_FILE, load_public_key
from ringfence.stores.sqlite import SQLiteAuditStore

POLICY = """\
version: 1
tools:
  send_email:
    args: {type: object, properties: {to: {type: string}, body: {type: string}}}
rules:
  - {id: external, effect: require_approval, tool: send_email, reason: mail leaves the company}
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "240"})  # tables unwrapped
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def queue(data: Path) -> Any:
    q = open_approval_queue(data)
    yield q
    q.store.close()


def submit(queue: ApprovalQueue, to: str, session: str = "s1") -> str:
    policy = ringfence.policy_from_text(POLICY)
    action = ringfence.Action(
        kind="tool_call",
        tool="send_email",
        args={"to": to, "body": "the figures"},
        agent="mailer",
        user="alice",
        session=session,
    )
    sub = queue.submit(action, policy.evaluate(action, f"d-{to}"))
    assert sub.request is not None
    return sub.request.id


def answers(data: Path) -> list[dict[str, Any]]:
    """The approval_answer records of the data folder's log, read as ``ringfence audit`` does."""
    store = SQLiteAuditStore(data / "audit", readonly=True)
    try:
        rows = [decode(d) for _, d in store.records()]
    finally:
        store.close()
    return [r for r in rows if r["type"] == ANSWER_TYPE]


def verifies(data: Path) -> bool:
    store = SQLiteAuditStore(data / "audit", readonly=True)
    try:
        keys = load_public_key(data / "keys" / PUB_FILE)
        report = verify_log(store.records(), store.checkpoints(), keys, log_id=store.log_id)
    finally:
        store.close()
    return report.ok


def test_approve_while_no_agent_runs_is_recorded_by_the_command(
    queue: ApprovalQueue, data: Path
) -> None:
    rid = submit(queue, "bob@partner.test")
    code, out, err = run(
        "approvals", "approve", rid, "--as", "carol", "--note", "ok", "--data", str(data)
    )
    assert code == 0 and f"approved {rid}" in out and "note:" not in err
    (rec,) = answers(data)
    receipt = queue.show(rid).receipt
    assert receipt is not None
    assert (rec["request"], rec["status"], rec["by"], rec["note"]) == (
        rid,
        "approved",
        "carol",
        "ok",
    )
    assert (rec["receipt_id"], rec["receipt_expires"]) == (receipt.id, receipt.expires_ns)
    assert (rec["agent"], rec["user"], rec["session"], rec["tool"]) == (
        "mailer",
        "alice",
        "s1",
        "send_email",
    )
    assert rec["args_sha256"] == queue.show(rid).args_hash
    assert rec["policy_version"] == queue.show(rid).policy_version
    assert verifies(data)


def test_deny_cancel_and_plan_are_recorded_too(
    queue: ApprovalQueue, data: Path, tmp_path: Path
) -> None:
    d = submit(queue, "d@x.test", session="sd")
    c = submit(queue, "c@x.test", session="sc")
    assert run("approvals", "deny", d, "--as", "bob", "--note", "no", "--data", str(data))[0] == 0
    assert run("approvals", "cancel", "--session", "sc", "--as", "ops", "--data", str(data))[0] == 0
    (tmp_path / "policy.yaml").write_text(POLICY)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"tool": "send_email", "args": {"to": "x@y"}}]))
    code, out, _ = run(
        "approvals",
        "approve-plan",
        str(plan),
        "-p",
        str(tmp_path / "policy.yaml"),
        "--agent",
        "mailer",
        "--session",
        "s9",
        "--as",
        "carol",
        "--data",
        str(data),
    )
    assert code == 0, out
    recs = answers(data)
    assert [(r["status"], r["by"]) for r in recs] == [
        ("denied", "bob"),
        ("cancelled", "ops"),
        ("approved", "carol"),
    ]
    assert [r["request"] for r in recs[:2]] == [d, c]
    assert recs[2]["kind"] == "plan" and len(recs[2]["steps"]) == 1
    assert verifies(data)


def test_a_failed_answer_records_nothing(queue: ApprovalQueue, data: Path) -> None:
    rid = submit(queue, "bob@partner.test")
    code, _, err = run("approvals", "approve", rid, "--as", "mailer", "--data", str(data))
    assert code == 2 and "approval.approver" in err
    assert not (data / "audit").exists() or answers(data) == []


def test_while_another_process_holds_the_log_the_holder_records_it(
    queue: ApprovalQueue, data: Path
) -> None:
    rid = submit(queue, "bob@partner.test")
    holder = open_audit_log(data)  # as a running agent holds it (the lock is per open file)
    try:
        code, out, err = run("approvals", "deny", rid, "--as", "bob", "--data", str(data))
        assert code == 0 and f"denied {rid}" in out
        assert "note: the audit log is open in another process" in err
        assert queue.show(rid).status is Status.DENIED
        assert queue.record_answers(holder) == 1  # what the holder's approver does
    finally:
        holder.close()
    (rec,) = answers(data)
    assert (rec["request"], rec["status"], rec["by"]) == (rid, "denied", "bob")


def test_a_broken_audit_log_does_not_undo_the_answer(queue: ApprovalQueue, data: Path) -> None:
    rid = submit(queue, "bob@partner.test")
    (data / "audit").mkdir(parents=True)
    (data / "audit" / "audit.sqlite").write_bytes(b"this is not a database" * 100)
    code, out, err = run("approvals", "deny", rid, "--as", "bob", "--data", str(data))
    assert code == 0 and f"denied {rid}" in out
    assert "warning: answer not in the audit log yet" in err
    assert queue.show(rid).status is Status.DENIED
    (_, queued), *_ = queue.store.unaudited()  # type: ignore[attr-defined]
    assert (queued.request, queued.status) == (rid, "denied")  # still queued for later


def test_every_earlier_unrecorded_answer_goes_in_with_the_next_command(
    queue: ApprovalQueue, data: Path
) -> None:
    early = submit(queue, "a@x.test", session="sa")
    queue.deny(early, "bob")  # through the Python API: queued, not recorded yet
    late = submit(queue, "b@x.test", session="sb")
    assert run("approvals", "approve", late, "--as", "carol", "--data", str(data))[0] == 0
    assert [(r["request"], r["status"]) for r in answers(data)] == [
        (early, "denied"),
        (late, "approved"),
    ]


def test_audit_tail_and_show_display_answers(queue: ApprovalQueue, data: Path) -> None:
    rid = submit(queue, "bob@partner.test")
    run(
        "approvals",
        "approve",
        rid,
        "--as",
        "carol",
        "--note",
        "[red]fine[/red]",
        "--data",
        str(data),
    )
    receipt = queue.show(rid).receipt
    assert receipt is not None
    code, out, _ = run("audit", "tail", "--data", str(data))
    assert code == 0
    assert "answer" in out and "approved" in out and rid in out and "carol" in out
    assert "[red]fine[/red]" in out  # a note is text, never markup
    code, out, _ = run("audit", "show", rid, "--data", str(data))
    assert code == 0
    shown = json.loads(out)
    assert shown["type"] == ANSWER_TYPE and shown["receipt_id"] == receipt.id
    assert answer_key(shown) == (rid, "approved", shown["at"])
    code, out, _ = run("audit", "verify", "--data", str(data))
    assert code == 0 and out.startswith("OK")


def test_a_kill_with_no_agent_running_cancels_and_records_the_requests_in_its_scope(
    queue: ApprovalQueue, data: Path
) -> None:
    inside = submit(queue, "bob@elsewhere.example", session="killed")
    outside = submit(queue, "carol@elsewhere.example", session="other")
    code, out, _ = run(
        "kill", "--session", "killed", "--reason", "runaway", "--as", "ops", "--data", str(data)
    )
    assert code == 0, out
    assert "cancelled 1 approval request(s)" in out
    assert queue.show(inside).status is Status.CANCELLED
    assert queue.show(outside).status is Status.PENDING
    (answer,) = answers(data)
    assert (answer["request"], answer["status"], answer["by"]) == (inside, "cancelled", "ops")
    assert "runaway" in answer["note"]
    assert verifies(data)
    # A kill of a scope with nothing pending cancels nothing, and records nothing more.
    code, out, _ = run(
        "kill", "--agent", "nobody", "--reason", "x", "--as", "ops", "--data", str(data)
    )
    assert code == 0 and "cancelled" not in out
    assert len(answers(data)) == 1


def test_a_kill_in_a_folder_without_approvals_does_not_create_one(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    code, out, _ = run("kill", "--all", "--reason", "drill", "--as", "ops", "--data", str(data))
    assert code == 0, out
    assert not (data / "approvals.sqlite").exists()
