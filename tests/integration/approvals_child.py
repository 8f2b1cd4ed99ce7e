"""A waiting agent process for test_approvals_cli.py.

Usage: approvals_child.py DATA_DIR POLICY WAIT_S CALLS_JSON

Opens a Guard on DATA_DIR with a QueueApprover over the folder's approval store, then makes
each call of CALLS_JSON (``[{"to": ..., "body": ...}, ...]``) in session ``s1`` as agent
``mailer`` for user ``alice``, printing one JSON line per call: ``{"ran": bool, "reasons": [...]}``.
"""

from __future__ import annotations

import json
import sys

import ringfence
from ringfence.runtime.approvals import open_approval_queue
from ringfence.runtime.approver import QueueApprover


def main() -> None:
    data, policy_file, wait_s, calls = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    policy = ringfence.load_policy(policy_file)
    queue = open_approval_queue(data, signing=False, poll_s=0.01)  # public key only
    approver = QueueApprover(queue, wait_s=wait_s, resources=policy.resources_of)
    guard = ringfence.open_guard(policy, data_dir=data, approver=approver, agent="mailer")
    approver.bind_audit(guard.audit)
    ran: list[str] = []

    @guard.protect
    def send_email(to: str, body: str) -> None:
        ran.append(to)

    try:
        for args in json.loads(calls):
            with guard.context(user="alice", session="s1", request="send the weekly report"):
                try:
                    send_email(**args)
                    print(json.dumps({"ran": True, "reasons": []}), flush=True)
                except ringfence.DeniedError as exc:
                    reasons = list(exc.decision.reasons)
                    print(json.dumps({"ran": False, "reasons": reasons}), flush=True)
    finally:
        guard.close()
        queue.store.close()


if __name__ == "__main__":
    main()
