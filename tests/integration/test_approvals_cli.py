"""A real agent process waits for approval; ``ringfence approvals`` answers from another process.

The child (approvals_child.py) makes its calls through a Guard whose QueueApprover waits on the
data folder's SQLite approval store; the test finds the pending request with
``ringfence approvals list --json`` and approves, denies, cancels or lets it time out, then
checks what the child reports, what the store says, and that the audit log verifies and holds
the receipt.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ringfence.core.audit.encoding import decode
from ringfence.stores.sqlite import SQLiteAuditStore

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("approvals_child.py")
POLICY = """
version: 1
tools:
  send_email:
    resources: {to: recipient}
    args:
      type: object
      properties:
        to: {type: string}
        body: {type: string}
rules:
  - id: external-mail
    effect: require_approval
    tool: send_email
    reason: mail leaving the organisation needs a human
"""
BOB = {"to": "bob@partner.test", "body": "the report"}


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ringfence.cli", "approvals", *args, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )


class Agent:
    """The waiting child process."""

    def __init__(self, tmp: Path, calls: list[dict[str, Any]], wait_s: float = 60) -> None:
        self.data = tmp / "data"
        policy = tmp / "policy.yaml"
        policy.write_text(POLICY)
        self.policy = policy
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                str(self.data),
                str(policy),
                str(wait_s),
                json.dumps(calls),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def pending(self, timeout: float = 30) -> dict[str, Any]:
        """The first pending request, once the child has asked."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if (self.data / "approvals.sqlite").exists():
                out = cli(self.data, "list", "--json")
                assert out.returncode == 0, out.stderr
                rows = json.loads(out.stdout)
                if rows:
                    return rows[0]  # type: ignore[no-any-return]
            assert self.proc.poll() is None, self.proc.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.05)
        raise AssertionError("the agent never asked for approval")

    def results(self) -> list[dict[str, Any]]:
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return [json.loads(line) for line in out.splitlines()]

    def records(self, type_: str) -> list[dict[str, Any]]:
        store = SQLiteAuditStore(self.data / "audit", readonly=True)
        try:
            return [r for r in (decode(d) for _, d in store.records()) if r["type"] == type_]
        finally:
            store.close()


def test_approve_from_the_cli_resumes_the_waiting_call(tmp_path: Path) -> None:
    agent = Agent(tmp_path, [BOB])
    req = agent.pending()
    assert req["tool"] == "send_email" and req["agent"] == "mailer"
    assert req["args"] == BOB and req["request"] == "send the weekly report"
    assert req["resources"] == [{"type": "recipient", "value": "bob@partner.test"}]
    shown = cli(agent.data, "show", req["id"])
    assert shown.returncode == 0 and "mail leaving the organisation" in shown.stdout
    assert "bob@partner.test" in shown.stdout
    out = cli(agent.data, "approve", req["id"], "--note", "weekly", "--as", "alice")
    assert out.returncode == 0, out.stderr
    assert f"approved {req['id']} as alice" in out.stdout
    assert agent.results() == [{"ran": True, "reasons": []}]
    (receipt,) = agent.records("receipt")
    assert receipt["event"] == "redeemed" and receipt["receipt"]["approver"] == "alice"
    (approval,) = agent.records("approval")
    assert approval["approved"] is True and "weekly" in approval["note"]
    used = json.loads(cli(agent.data, "list", "--status", "used", "--json").stdout)
    assert [r["id"] for r in used] == [req["id"]]
    verify = subprocess.run(
        [sys.executable, "-m", "ringfence.cli", "audit", "verify", "--data", str(agent.data)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout
    again = cli(agent.data, "approve", req["id"], "--as", "bob")  # answered already
    assert again.returncode == 2 and "approval.not_pending" in again.stderr


def test_deny_from_the_cli_refuses_the_waiting_call(tmp_path: Path) -> None:
    agent = Agent(tmp_path, [BOB])
    req = agent.pending()
    out = cli(agent.data, "deny", req["id"], "--note", "not this week", "--as", "bob")
    assert out.returncode == 0, out.stderr
    (result,) = agent.results()
    assert result["ran"] is False
    assert result["reasons"][-1].startswith("not approved by bob")
    assert "not this week" in result["reasons"][-1]
    assert agent.records("receipt") == []
    (approval,) = agent.records("approval")
    assert (approval["approved"], approval["approver"]) == (False, "bob")


def test_no_answer_is_a_deny(tmp_path: Path) -> None:
    agent = Agent(tmp_path, [BOB], wait_s=0.5)
    (result,) = agent.results()
    assert result["ran"] is False and "a timeout is a deny" in result["reasons"][-1]
    expired = json.loads(cli(agent.data, "list", "--status", "expired", "--json").stdout)
    assert len(expired) == 1
    late = cli(agent.data, "approve", expired[0]["id"])
    assert late.returncode == 2 and "approval.not_pending" in late.stderr


def test_cancel_from_the_cli_refuses_the_waiting_call(tmp_path: Path) -> None:
    agent = Agent(tmp_path, [BOB])
    agent.pending()
    out = cli(agent.data, "cancel", "--session", "s1", "--note", "incident", "--as", "ops")
    assert out.returncode == 0 and "cancelled or revoked 1" in out.stdout
    (result,) = agent.results()
    assert result["ran"] is False and "ops" in result["reasons"][-1]


def test_an_approved_plan_runs_without_asking(tmp_path: Path) -> None:
    carol = {"to": "carol@partner.test", "body": "b"}
    (tmp_path / "data").mkdir()
    (tmp_path / "policy.yaml").write_text(POLICY)
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps([{"tool": "send_email", "args": BOB}, {"tool": "send_email", "args": carol}])
    )
    out = cli(
        tmp_path / "data",
        "approve-plan",
        str(plan),
        "-p",
        str(tmp_path / "policy.yaml"),
        "--agent",
        "mailer",
        "--session",
        "s1",
        "--user",
        "alice",
        "--as",
        "alice",
    )
    assert out.returncode == 0, out.stderr
    assert "approved a plan of 2 calls" in out.stdout
    agent = Agent(tmp_path, [BOB, carol, BOB], wait_s=0.3)
    ran = [r["ran"] for r in agent.results()]
    assert ran == [True, True, False]  # each planned call once; the repeat had to ask


def test_cli_errors_are_coded(tmp_path: Path) -> None:
    missing = cli(tmp_path, "list")
    assert missing.returncode == 2 and "input.not_found" in missing.stderr
    (tmp_path / "approvals.sqlite").touch()
    unknown = cli(tmp_path, "approve", "ap-nope")
    assert unknown.returncode == 2 and "approval.not_found" in unknown.stderr
    empty = cli(tmp_path, "list")
    assert empty.returncode == 0 and "no pending approval requests" in empty.stdout
    no_scope = cli(tmp_path, "cancel")
    assert no_scope.returncode == 2
