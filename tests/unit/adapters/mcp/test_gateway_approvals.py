"""The gateway with a non-blocking QueueApprover: the first call answers "approval pending",
the client's retry after approval goes through once, and nothing reaches the server before."""

from __future__ import annotations

from pathlib import Path

import pytest
from nacl.signing import SigningKey

from ringfence.core.approvals import Status
from ringfence.runtime.approvals import ApprovalQueue
from ringfence.runtime.approver import QueueApprover
from ringfence.stores.approvals_memory import MemoryApprovalStore

from .test_gateway import anyio_backend, run_env  # noqa: F401  (the fixture is used by name)

pytestmark = pytest.mark.anyio


async def test_pending_then_approved_retry_runs_once(tmp_path: Path) -> None:
    queue = ApprovalQueue(MemoryApprovalStore(), SigningKey.generate())
    approver = QueueApprover(queue, wait_s=0)
    async for env in run_env(tmp_path, approver=approver):
        approver.bind_audit(env.log)
        first = await env.gateway.call_tool(env.conn, "up__pay", {"amount": 5})
        assert first.is_error and env.calls == []
        (req,) = queue.list()
        text = first.content[0].text  # type: ignore[union-attr]
        assert f"approval pending: request {req.id}" in text
        assert (req.agent, req.user, req.session, req.tool) == ("tester", "alice", "s-1", "up__pay")
        assert req.args == {"amount": 5}

        queue.approve(req.id, "alice")
        other = await env.gateway.call_tool(env.conn, "up__pay", {"amount": 500})
        assert other.is_error and env.calls == []  # the receipt is for 5, not 500
        retry = await env.gateway.call_tool(env.conn, "up__pay", {"amount": 5})
        assert not retry.is_error
        assert env.calls == [("pay", {"amount": 5})]
        again = await env.gateway.call_tool(env.conn, "up__pay", {"amount": 5})
        assert again.is_error and env.calls == [("pay", {"amount": 5})]
        assert queue.show(req.id).status is Status.USED
        receipts = [r for r in env.records() if r["type"] == "receipt"]
        assert [r["event"] for r in receipts] == ["redeemed"]


async def test_a_denied_request_is_not_asked_again(tmp_path: Path) -> None:
    queue = ApprovalQueue(MemoryApprovalStore(), SigningKey.generate())
    approver = QueueApprover(queue, wait_s=0)
    async for env in run_env(tmp_path, approver=approver):
        await env.gateway.call_tool(env.conn, "up__pay", {"amount": 5})
        queue.deny(queue.list()[0].id, "bob", note="no")
        retry = await env.gateway.call_tool(env.conn, "up__pay", {"amount": 5})
        assert retry.is_error and env.calls == []
        assert "an identical call was denied" in retry.content[0].text  # type: ignore[union-attr]
        assert len(queue.list(None)) == 1
