"""``ringfence approvals`` in process: rendering (hostile text shown escaped), answers, errors.

The cross-process flow (a waiting agent, the CLI answering) is in
tests/integration/test_approvals_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import ringfence
from ringfence.cli.main import cli
from ringfence.core.approvals import Status
from ringfence.runtime.approvals import ApprovalQueue, open_approval_queue

POLICY = """\
version: 1
tools:
  send_email:
    args: {type: object, properties: {to: {type: string}, body: {type: string}}}
    resources: {to: recipient}
rules:
  - {id: external, effect: require_approval, tool: send_email, reason: mail leaves the company}
"""
HOSTILE = "bob@partner.test\u202egnp.exe\x1b[2J[red]markup[/red]\u200b"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def queue(data: Path) -> ApprovalQueue:
    return open_approval_queue(data)


def submit(queue: ApprovalQueue, args: dict[str, Any], **kw: Any) -> str:
    policy = ringfence.policy_from_text(POLICY)
    fields: dict[str, Any] = {"agent": "mailer", "user": "alice", "session": "s1", **kw}
    action = ringfence.Action(kind="tool_call", tool="send_email", args=args, **fields)
    sub = queue.submit(
        action, policy.evaluate(action, "d-1"), resources=policy.resources_of(action)
    )
    assert sub.request is not None
    return sub.request.id


def test_show_and_list_escape_what_the_agent_wrote(queue: ApprovalQueue, data: Path) -> None:
    rid = submit(queue, {"to": HOSTILE, "body": "hi"}, reason="because \u202eevil", request="x")
    code, out, _ = run("approvals", "show", rid, "--data", str(data))
    assert code == 0
    for raw in ("\u202e", "\x1b", "\u200b"):
        assert raw not in out
    assert "\\u202e" in out and "\\u001b" in out and "[red]markup[/red]" in out
    assert "mail leaves the company" in out and "recipient:" in out
    assert "because \\u202eevil" in out
    code, out, _ = run("approvals", "list", "--data", str(data))
    assert code == 0 and rid in out and "\x1b" not in out and "\u202e" not in out


def test_list_json_and_statuses(queue: ApprovalQueue, data: Path) -> None:
    a = submit(queue, {"to": "a@x.test"})
    b = submit(queue, {"to": "b@x.test"})
    queue.deny(b, "bob")
    code, out, _ = run("approvals", "list", "--json", "--data", str(data))
    assert code == 0 and [r["id"] for r in json.loads(out)] == [a]
    code, out, _ = run("approvals", "list", "--status", "all", "--json", "--data", str(data))
    assert {r["id"]: r["status"] for r in json.loads(out)} == {a: "pending", b: "denied"}
    code, out, _ = run("approvals", "list", "--status", "approved", "--data", str(data))
    assert code == 0 and "no approved approval requests" in out


def test_approve_and_deny(queue: ApprovalQueue, data: Path) -> None:
    a = submit(queue, {"to": "a@x.test"})
    b = submit(queue, {"to": "b@x.test"})
    code, out, _ = run(
        "approvals", "approve", a, "--as", "carol", "--ttl", "60", "--data", str(data)
    )
    assert code == 0 and f"approved {a} as carol" in out
    assert queue.show(a).status is Status.APPROVED and queue.show(a).decided_by == "carol"
    receipt = queue.show(a).receipt
    assert receipt is not None and receipt.expires_ns - receipt.issued_ns == 60 * 10**9
    code, out, _ = run("approvals", "deny", b, "--note", "no", "--as", "carol", "--data", str(data))
    assert code == 0 and queue.show(b).status is Status.DENIED and queue.show(b).note == "no"
    code, out, _ = run("approvals", "show", a, "--json", "--data", str(data))
    assert code == 0 and json.loads(out)["receipt"]["approver"] == "carol"


@pytest.mark.parametrize(
    ("args", "code_text"),
    [
        (["approve", "ap-nope"], "approval.not_found"),
        (["deny", "ap-nope"], "approval.not_found"),
        (["show", "ap-nope"], "approval.not_found"),
        (["approve", "{rid}", "--as", "mailer"], "approval.approver"),
        (["approve", "{rid}", "--ttl", "0"], "approval.ttl"),
        (["approve", "{rid}", "--ttl", "99999"], "approval.ttl"),
    ],
)
def test_errors_are_coded(
    queue: ApprovalQueue, data: Path, args: list[str], code_text: str
) -> None:
    rid = submit(queue, {"to": "a@x.test"})
    code, _, err = run("approvals", *[a.replace("{rid}", rid) for a in args], "--data", str(data))
    assert code == 2 and f"error[{code_text}]" in err
    assert queue.show(rid).status is Status.PENDING


def test_list_without_a_store_is_an_error(tmp_path: Path) -> None:
    code, _, err = run("approvals", "list", "--data", str(tmp_path))
    assert code == 2 and "input.not_found" in err
    assert not (tmp_path / "approvals.sqlite").exists()  # reading creates nothing


def test_cancel_needs_a_scope(queue: ApprovalQueue, data: Path) -> None:
    rid = submit(queue, {"to": "a@x.test"})
    code, _, _ = run("approvals", "cancel", "--data", str(data))
    assert code == 2 and queue.show(rid).status is Status.PENDING
    code, out, _ = run("approvals", "cancel", "--agent", "other", "--data", str(data))
    assert code == 0 and "cancelled or revoked 0" in out
    code, out, _ = run("approvals", "cancel", "--tool", "send_*", "--data", str(data))
    assert code == 0 and rid in out and queue.show(rid).status is Status.CANCELLED


def test_approve_plan(tmp_path: Path, queue: ApprovalQueue, data: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"tool": "send_email", "args": {"to": "a@x.test"}}]))
    common = ["-p", str(policy), "--agent", "mailer", "--session", "s1", "--data", str(data)]
    code, out, _ = run("approvals", "approve-plan", str(plan), *common)
    assert code == 0 and "approved a plan of 1 calls" in out
    (req,) = queue.list(Status.APPROVED)
    assert req.kind == "plan" and req.policy_version == ringfence.load_policy(policy).version
    for bad, code_text in (
        ("{", "input.json"),
        ('[{"args": {}}]', "input.plan"),
        ("[]", "approval.plan"),
    ):
        plan.write_text(bad)
        code, _, err = run("approvals", "approve-plan", str(plan), *common)
        assert code == 2 and code_text in err, (bad, err)
