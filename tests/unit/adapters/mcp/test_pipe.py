"""The direct lane to a stdio server (pipe.py), against small real child processes."""

from __future__ import annotations

import io
import json
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


# --- the callback form (Lane.start): what the gateway's direct path uses ----------------------

# Records every line it reads to a file; answers only requests whose tool is "answer".
SILENT = """
import json, sys
log = open(sys.argv[1], "a")
for line in sys.stdin:
    log.write(line); log.flush()
    req = json.loads(line)
    if req.get("params", {}).get("name") == "answer":
        out = {"jsonrpc": "2.0", "id": req["id"], "result": {"content": []}}
        sys.stdout.write(json.dumps(out) + "\\n"); sys.stdout.flush()
    elif req.get("params", {}).get("name") == "broken":
        out = {"jsonrpc": "2.0", "id": req["id"], "result": ["not", "an", "object"]}
        sys.stdout.write(json.dumps(out) + "\\n"); sys.stdout.flush()
"""


def silent(log: Any) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-c", SILENT, str(log)])


def start(lane: Lane, name: str, outcomes: list[Any], timeout: float = 30) -> Any:
    params = {"name": name, "arguments": {}}
    return lane.start(
        "tools/call", params, version=LEGACY, timeout=timeout, answered=outcomes.append
    )


async def wait_for(outcomes: list[Any], n: int = 1) -> None:
    with anyio.fail_after(10):
        while len(outcomes) < n:
            await anyio.sleep(0.01)


async def test_started_request_hands_its_result_to_the_callback(tmp_path: Any) -> None:
    lane, outcomes = Lane(), []
    async with pipe_client(silent(tmp_path / "log"), lane, errlog=io.StringIO(), max_bytes=4096):
        start(lane, "answer", outcomes)
        await wait_for(outcomes)
    assert outcomes == [{"content": []}]


async def test_an_answer_that_is_not_a_result_object_fails_at_once(tmp_path: Any) -> None:
    lane, outcomes = Lane(), []
    async with pipe_client(silent(tmp_path / "log"), lane, errlog=io.StringIO(), max_bytes=4096):
        start(lane, "broken", outcomes)
        await wait_for(outcomes)
    assert isinstance(outcomes[0], ValueError)


async def test_a_cancelled_request_tells_the_server_and_hands_nothing_over(tmp_path: Any) -> None:
    lane, outcomes = Lane(), []
    log = tmp_path / "log"
    async with pipe_client(silent(log), lane, errlog=io.StringIO(), max_bytes=4096):
        pending = start(lane, "never", outcomes)
        pending.cancel()
        pending.cancel()  # twice: still one notification
        start(lane, "answer", outcomes)  # the lane goes on working
        await wait_for(outcomes)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    cancels = [m for m in lines if m.get("method") == "notifications/cancelled"]
    assert [m["params"]["requestId"] for m in cancels] == [lines[0]["id"]]
    assert outcomes == [{"content": []}]


async def test_a_request_past_its_timeout_fails_and_the_server_is_told(tmp_path: Any) -> None:
    lane, outcomes = Lane(), []
    log = tmp_path / "log"
    async with pipe_client(silent(log), lane, errlog=io.StringIO(), max_bytes=4096):
        start(lane, "never", outcomes, timeout=0.2)
        await wait_for(outcomes)
        assert isinstance(outcomes[0], TimeoutError)
        with anyio.fail_after(10):
            while "notifications/cancelled" not in log.read_text():
                await anyio.sleep(0.01)


async def test_closing_the_lane_fails_every_waiting_request(tmp_path: Any) -> None:
    lane, outcomes = Lane(), []
    async with pipe_client(silent(tmp_path / "log"), lane, errlog=io.StringIO(), max_bytes=4096):
        start(lane, "never", outcomes)
        start(lane, "never", outcomes)
    assert len(outcomes) == 2 and all(isinstance(o, LaneClosed) for o in outcomes)
    with pytest.raises(LaneClosed):
        start(lane, "answer", outcomes)
