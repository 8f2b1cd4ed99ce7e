"""A child process for test_approval_answers_processes.py.

``_answers_child.py wait DATA POLICY``: an agent with an approval queue on DATA makes one call
that needs approval, waits for the answer and prints ``{"ran": bool, "reasons": [...]}``.

``_answers_child.py crash DATA``: holds DATA's audit log and records the queued answers, but
the process is killed (SIGKILL) right after the first record is durable, before the answer
is marked recorded.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import ringfence
from ringfence.runtime.approvals import open_approval_queue
from ringfence.runtime.embedded import open_audit_log


def wait(data: str, policy_file: str) -> None:
    guard = ringfence.open_guard(
        ringfence.load_policy(policy_file),
        data_dir=data,
        approval_queue=True,
        approval_wait_s=120,
        agent="mailer",
    )
    try:
        with guard.context(user="alice", session="s1"):
            decision = guard.check(guard.action("send_email", {"to": "bob@partner.test"}))
        print(json.dumps({"ran": decision.allowed, "reasons": list(decision.reasons)}), flush=True)
    finally:
        guard.close()


class DieAfterAppend:
    """The audit log, but the process dies the moment a record is durable."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def append(self, record: Any) -> int:
        self.log.append(record)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


def crash(data: str) -> None:
    log = open_audit_log(data)
    queue = open_approval_queue(data, signing=False)
    queue.record_answers(DieAfterAppend(log))


if __name__ == "__main__":
    if sys.argv[1] == "wait":
        wait(sys.argv[2], sys.argv[3])
    else:
        crash(sys.argv[2])
