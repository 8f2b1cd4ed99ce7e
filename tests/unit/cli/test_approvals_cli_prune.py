"""``ringfence approvals prune``: finished requests older than ``--older-than`` go once their
answers are in the audit log; the command records queued answers itself when it can, keeps
(and counts) what it cannot, and refuses ages the caps need kept.  Refusals first."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import ringfence
from ringfence.cli.main import cli
from ringfence.core.approvals import Status
from ringfence.runtime.approvals import ApprovalQueue, open_approval_queue
from ringfence.runtime.embedded import open_audit_log

POLICY = ringfence.policy_from_text(
    """\
version: 1
tools:
  send_email:
    args: {type: object, properties: {to: {type: string}}}
rules:
  - {id: external, effect: require_approval, tool: send_email, reason: mail leaves}
"""
)
DAY_NS = 86400 * 10**9


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def denied(data: Path, to: str, days_ago: float) -> str:
    """A request asked and denied ``days_ago`` (its answer queued, not yet audited)."""
    then = time.time_ns() - int(days_ago * DAY_NS)
    queue = open_approval_queue(data, clock=lambda: then, retention_s=None)
    try:
        action = ringfence.Action(
            kind="tool_call", tool="send_email", args={"to": to}, agent="mailer", session=to
        )
        sub = queue.submit(action, POLICY.evaluate(action, f"d-{to}"))
        assert sub.request is not None
        queue.deny(sub.request.id, "bob", note="no")
        return sub.request.id
    finally:
        queue.store.close()  # type: ignore[attr-defined]


def status(data: Path, rid: str) -> Status | None:
    queue: ApprovalQueue = open_approval_queue(data, retention_s=None)
    try:
        req = queue.store.get(rid)
        return None if req is None else req.status
    finally:
        queue.store.close()  # type: ignore[attr-defined]


def test_a_folder_without_a_store_is_an_error(data: Path) -> None:
    code, _, err = run("approvals", "prune", "--data", str(data))
    assert code != 0 and "no approval store" in err


@pytest.mark.parametrize("age", ["3x", "-1d", "30 days", "", "1.5d"])
def test_a_bad_age_is_a_usage_error(data: Path, age: str) -> None:
    denied(data, "a@x.test", 40)
    code, _, err = run("approvals", "prune", "--older-than", age, "--data", str(data))
    assert code == 2 and "is not an age" in err


@pytest.mark.parametrize("age", ["10m", "3599", "0s"])
def test_an_age_shorter_than_the_caps_need_is_refused(data: Path, age: str) -> None:
    rid = denied(data, "a@x.test", 40)
    code, _, err = run("approvals", "prune", "--older-than", age, "--data", str(data))
    assert code != 0 and "window_s or remember_denial_s" in err
    assert status(data, rid) is Status.DENIED


def test_answers_not_in_the_audit_log_are_kept_and_counted(data: Path) -> None:
    rid = denied(data, "a@x.test", 40)
    held = open_audit_log(data)  # another process holds the log: the command cannot record
    try:
        code, out, err = run("approvals", "prune", "--data", str(data))
    finally:
        held.close()
    assert code == 0
    assert "pruned 0 requests" in out
    assert "kept 1 older requests: their answers are not in the audit log yet" in err
    assert "audit log is open in another process" in err
    assert status(data, rid) is Status.DENIED


def test_old_answered_requests_go_after_their_answers_are_recorded(data: Path) -> None:
    old = denied(data, "old@x.test", 40)
    young = denied(data, "young@x.test", 10)
    code, out, err = run("approvals", "prune", "--data", str(data))
    assert code == 0, err
    assert out.strip() == "pruned 1 requests that ended more than 30d ago (1 answers)"
    assert "kept" not in err
    assert status(data, old) is None
    assert status(data, young) is Status.DENIED
    # the answers reached the log before the requests went
    log = open_audit_log(data)
    try:
        records = [r for _, r in log.store.records()]
    finally:
        log.close()
    assert len([r for r in records if b"approval_answer" in r]) == 2


def test_older_than_picks_the_cut_off(data: Path) -> None:
    three = denied(data, "three@x.test", 3)
    one = denied(data, "one@x.test", 1)
    code, out, _ = run("approvals", "prune", "--older-than", "2d", "--data", str(data))
    assert code == 0 and "pruned 1 requests that ended more than 2d ago" in out
    assert status(data, three) is None and status(data, one) is Status.DENIED
    code, out, _ = run("approvals", "prune", "--older-than", "12h", "--data", str(data))
    assert code == 0 and "more than 12h ago" in out
    assert status(data, one) is None


def test_pending_requests_stay_whatever_their_age(data: Path) -> None:
    then = time.time_ns() - 40 * DAY_NS
    queue = open_approval_queue(data, clock=lambda: then, retention_s=None)
    action = ringfence.Action(kind="tool_call", tool="send_email", args={"to": "p@x"}, agent="m")
    sub = queue.submit(action, POLICY.evaluate(action, "d-p"), timeout_s=90 * 86400)
    queue.store.close()  # type: ignore[attr-defined]
    assert sub.request is not None
    code, out, _ = run("approvals", "prune", "--data", str(data))
    assert code == 0 and "pruned 0 requests" in out
    assert status(data, sub.request.id) is Status.PENDING


def test_help_describes_prune() -> None:
    code, out, _ = run("approvals", "prune", "--help")
    assert code == 0
    assert "--older-than" in out and "audit log" in out
    assert "prune" in run("approvals", "--help")[1]
