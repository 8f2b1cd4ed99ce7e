"""The direct lane to a stdio server (pipe.py), against small real child processes."""

from __future__ import annotations

import io
import sys
from typing import Any

import anyio
import pytest
from mcp import StdioServerParameters

from ringfence.adapters.mcp.pipe import Lane, LaneClosed, LaneError, pipe_client

from .test_gateway import anyio_backend  # noqa: F401  (the fixture is used by name)

pytestmark = pytest.mark.anyio
LEGACY = "2025-11-25"

# Answers every request line with a result of SIZE characters, with the request's id.
ANSWERING = """
import json, sys
size = int(sys.argv[1])
for line in sys.stdin:
    req = json.loads(line)
    if "id" in req:
        text = "x" * size
        content = [{"type": "text", "text": text}]
        out = {"jsonrpc": "2.0", "id": req["id"], "result": {"content": content}}
        sys.stdout.write(json.dumps(out) + "\\n")
        sys.stdout.flush()
"""


def child(*args: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-c", ANSWERING, *args])


async def ask(lane: Lane, **over: Any) -> dict[str, Any]:
    params = {"name": "t", "arguments": {}}
    return await lane.request("tools/call", params, version=LEGACY, timeout=30, **over)


async def test_an_answer_comes_back_checked() -> None:
    lane = Lane()
    async with pipe_client(child("10"), lane, errlog=io.StringIO(), max_bytes=4096):
        with anyio.fail_after(10):
            result = await ask(lane)
    assert result["content"][0]["text"] == "x" * 10


async def test_an_oversized_answer_fails_its_request_at_once_not_at_the_timeout() -> None:
    lane = Lane()
    async with pipe_client(child("100000"), lane, errlog=io.StringIO(), max_bytes=4096):
        with anyio.fail_after(10):  # the request's own timeout is 30 s
            with pytest.raises(LaneError, match="larger than 4096 bytes"):
                await ask(lane)


async def test_a_server_that_exits_fails_the_waiting_request() -> None:
    lane = Lane()
    quits = "import sys; sys.stdin.readline()"  # reads the request, exits without answering
    gone = StdioServerParameters(command=sys.executable, args=["-c", quits])
    async with pipe_client(gone, lane, errlog=io.StringIO(), max_bytes=4096):
        with anyio.fail_after(10):
            with pytest.raises(LaneClosed):
                await ask(lane)
    assert not lane.ready(LEGACY)
