"""The direct tool-call path (fastpath.DirectCalls) when sending to the upstream fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from ringfence.adapters.mcp.fastpath import DirectCalls
from ringfence.adapters.mcp.gateway import Connection, Gateway
from ringfence.adapters.mcp.server import build_server

from .test_gateway import Env, anyio_backend, make, upstream_server  # noqa: F401

pytestmark = pytest.mark.anyio
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


class Out:
    """Stands in for the client's StreamWriter: the frames written, decoded."""

    class transport:
        @staticmethod
        def get_write_buffer_size() -> int:
            return 0

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.frames.append(json.loads(data))


async def test_a_failure_to_send_an_allowed_call_is_an_error_and_on_record(
    tmp_path: Path,
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    config, guard, log = make(tmp_path)
    server = upstream_server(calls)
    gateway = Gateway(config, guard, transports={"up": lambda: server})
    conn = Connection(config.identity, session="s-1")
    direct = DirectCalls(gateway, conn, build_server(gateway, conn))
    out = Out()

    def broken(*args: Any) -> Any:
        raise RuntimeError("the pipe is gone")

    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            gateway.upstreams["up"].start_direct = broken  # type: ignore[method-assign]
            params = {"name": "up__echo", "arguments": {"text": "hi"}, "_meta": ENVELOPE}
            request = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}
            assert direct.take_call(request, out)  # type: ignore[arg-type]
        finally:
            gateway.stop()
    (frame,) = out.frames
    assert frame["id"] == 5 and frame["error"]["code"] == -32603
    assert calls == []  # never reached the server
    records = Env(gateway, log, calls).records()
    decision, outcome = [r for r in records if r["type"] in ("decision", "outcome")]
    assert decision["effect"] == "allow"
    assert (outcome["decision_id"], outcome["status"]) == (decision["decision_id"], "error")
    assert "the pipe is gone" in outcome["error"]
    log.close()
