"""Answers reach the audit log across real processes: an agent waiting while the CLI answers,
an agent killed before it could redeem, and a writer killed between recording an answer and
marking it recorded.  Real SQLite, real SIGKILL; no timing asserted (deadlines only stop a
broken test from hanging)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import ringfence
from ringfence.core.approvals import Status
from ringfence.core.audit.answer import ANSWER_TYPE, answer_key
from ringfence.core.audit.encoding import decode
from ringfence.core.audit.verify import verify_log
from ringfence.runtime.approvals import ApprovalQueue, open_approval_queue
from ringfence.runtime.embedded import open_audit_log
from ringfence.stores.keys import PUB_FILE, load_public_key
from ringfence.stores.sqlite import SQLiteAuditStore

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("_answers_child.py")
POLICY = """
version: 1
tools:
  send_email:
    args: {type: object, properties: {to: {type: string}}}
rules:
  - {id: external-mail, effect: require_approval, tool: send_email, reason: mail leaves}
"""


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_pending(data: Path, agent: subprocess.Popen[str], deadline_s: float = 60) -> str:
    """The id of the first pending request, once the agent has asked."""
    end = time.monotonic() + deadline_s
    while not (data / "approvals.sqlite").exists():
        assert agent.poll() is None and time.monotonic() < end, "the agent never asked"
        time.sleep(0.02)
    queue = open_approval_queue(data, signing=False)
    try:
        version = queue.store.version()
        while not (pending := queue.list()):
            assert agent.poll() is None and time.monotonic() < end, "the agent never asked"
            version = queue.store.wait(version, 0.5)
        return pending[0].id
    finally:
        queue.store.close()  # type: ignore[attr-defined]


def records(data: Path) -> list[dict[str, Any]]:
    store = SQLiteAuditStore(data / "audit", readonly=True)
    try:
        return [decode(d) for _, d in store.records()]
    finally:
        store.close()


def verified(data: Path) -> bool:
    store = SQLiteAuditStore(data / "audit", readonly=True)
    try:
        keys = load_public_key(data / "keys" / PUB_FILE)
        return verify_log(store.records(), store.checkpoints(), keys, log_id=store.log_id).ok
    finally:
        store.close()


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ringfence.cli", "approvals", *args, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def reviewer(data: Path) -> ApprovalQueue:
    return open_approval_queue(data)


def test_cli_deny_while_the_agent_holds_the_log_is_recorded_by_the_agent(
    data: Path, policy_file: Path
) -> None:
    agent = child("wait", str(data), str(policy_file))
    rid = first_pending(data, agent)
    out = cli(data, "deny", rid, "--as", "bob", "--note", "not this week")
    assert out.returncode == 0, out.stderr
    stdout, stderr = agent.communicate(timeout=120)
    assert agent.returncode == 0, stderr
    assert json.loads(stdout)["ran"] is False
    recs = records(data)
    answers = [r for r in recs if r["type"] == ANSWER_TYPE]
    assert [(r["request"], r["status"], r["by"]) for r in answers] == [(rid, "denied", "bob")]
    types = [r["type"] for r in recs]
    assert types.index(ANSWER_TYPE) < types.index("approval")  # recorded before the deny
    assert verified(data)


def test_an_agent_killed_before_redeeming_leaves_the_answer_to_the_next_opener(
    data: Path, policy_file: Path
) -> None:
    agent = child("wait", str(data), str(policy_file))
    rid = first_pending(data, agent)
    os.kill(agent.pid, signal.SIGSTOP)
    os.waitpid(agent.pid, os.WUNTRACED)  # returns once it is stopped: it cannot record now
    queue = reviewer(data)
    try:
        receipt = queue.approve(rid, "carol", note="go ahead")  # the Python API: queued only
    finally:
        queue.store.close()  # type: ignore[attr-defined]
    agent.kill()
    agent.communicate(timeout=60)
    assert agent.returncode == -signal.SIGKILL
    assert ANSWER_TYPE not in {r["type"] for r in records(data)}

    policy = ringfence.load_policy(policy_file)
    guard = ringfence.open_guard(policy, data_dir=data, approval_queue=True, approval_wait_s=0)
    guard.close()  # the next opener recorded it when it opened
    answers = [r for r in records(data) if r["type"] == ANSWER_TYPE]
    assert [(r["request"], r["status"], r["by"], r["receipt_id"]) for r in answers] == [
        (rid, "approved", "carol", receipt.id)
    ]
    queue = reviewer(data)
    try:
        assert queue.show(rid).status is Status.APPROVED  # never redeemed
    finally:
        queue.store.close()  # type: ignore[attr-defined]
    assert verified(data)


def test_cli_approve_after_the_agent_died_is_recorded_by_the_cli(
    data: Path, policy_file: Path
) -> None:
    agent = child("wait", str(data), str(policy_file))
    rid = first_pending(data, agent)
    agent.kill()
    agent.communicate(timeout=60)
    out = cli(data, "approve", rid, "--as", "carol")
    assert out.returncode == 0, out.stderr
    assert "note:" not in out.stderr  # the dead agent's lock is gone: the CLI wrote it
    answers = [r for r in records(data) if r["type"] == ANSWER_TYPE]
    assert [(r["request"], r["status"], r["by"]) for r in answers] == [(rid, "approved", "carol")]
    assert verified(data)


def test_a_writer_killed_between_append_and_mark_records_the_answer_again(data: Path) -> None:
    queue = reviewer(data)
    action = ringfence.Action(
        kind="tool_call", tool="send_email", args={"to": "b@x"}, agent="mailer", session="s1"
    )
    policy = ringfence.policy_from_text(POLICY)
    sub = queue.submit(action, policy.evaluate(action, "d-1"))
    assert sub.request is not None
    queue.deny(sub.request.id, "bob", note="no")
    queue.store.close()  # type: ignore[attr-defined]

    crashed = child("crash", str(data))
    _, err = crashed.communicate(timeout=120)
    assert crashed.returncode == -signal.SIGKILL, err

    log = open_audit_log(data)  # the next holder
    queue = open_approval_queue(data, signing=False)
    try:
        assert queue.record_answers(log) == 1  # never marked: recorded again
        assert queue.record_answers(log) == 0
    finally:
        log.close()
        queue.store.close()  # type: ignore[attr-defined]
    answers = [r for r in records(data) if r["type"] == ANSWER_TYPE]
    assert len(answers) == 2  # twice, never zero times
    assert (
        answer_key(answers[0])
        == answer_key(answers[1])
        == (sub.request.id, "denied", answers[0]["at"])
    )
    assert len({answer_key(r) for r in answers}) == 1
    assert verified(data)
