"""MCP servers the gateway tests rely on, driven DIRECTLY (no gateway) by the official SDK client.

This pins down what each server really does over stdio, so gateway tests can assert "the same as
direct" and a broken setup shows up here first: reference servers from the registries (time, git,
fetch, filesystem; installed by scripts/setup-mcp-servers.sh) and our fixture servers (rug pull,
poisoned description, misbehaving).  Fixture tests run in both protocol eras the SDK speaks:
"auto" negotiates 2026-07-28 with an mcp>=2.3 server, "legacy" forces the 2025-11-25 handshake
(what the npm filesystem server, on the TypeScript SDK 1.x, speaks either way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.stdio import stdio_client

from .fixtures.misbehaving_server import BIG_SIZE, FILLER_TOOLS, PAGE_SIZE
from .fixtures.poisoned_server import ZERO_WIDTH
from .servers import (
    ServerSpec,
    fetch_server,
    filesystem_server,
    git_server,
    init_git_repo,
    misbehaving_server,
    poisoned_server,
    rugpull_server,
    time_server,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CALL_TIMEOUT = 20.0
"""Upper bound on any one request, so a broken server fails the test instead of hanging it."""

ERAS = ["auto", "legacy"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def connect(spec: ServerSpec, logs: Path, mode: str = "auto") -> AsyncIterator[Client]:
    """An initialized SDK client on `spec` over stdio; the server's stderr goes to logs/NAME.log."""
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{spec.name}.log").open("a", encoding="utf-8") as errlog:
        transport = stdio_client(spec.stdio_parameters(), errlog=errlog)
        async with Client(transport, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
            yield client


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


def tools_by_name(result: types.ListToolsResult) -> dict[str, types.Tool]:
    return {tool.name: tool for tool in result.tools}


# --- reference servers from the registries ------------------------------------------------------


async def test_time_server(tmp_path: Path) -> None:
    async with connect(time_server(), tmp_path) as client:
        assert client.protocol_version == "2026-07-28"
        assert client.server_info is not None and client.server_info.name == "mcp-time"
        tools = tools_by_name(await client.list_tools())
        assert {"get_current_time", "convert_time"} <= tools.keys()
        assert tools["get_current_time"].input_schema["required"] == ["timezone"]

        result = await client.call_tool("get_current_time", {"timezone": "UTC"})
        assert not result.is_error
        assert result.structured_content["timezone"] == "UTC"
        assert result.structured_content["datetime"].endswith("+00:00")
        assert '"timezone": "UTC"' in text_of(result)

        # A tool's own failure is a result with isError, not a protocol error ...
        bad_zone = await client.call_tool("get_current_time", {"timezone": "Mars/Olympus"})
        assert bad_zone.is_error
        assert "Invalid timezone" in text_of(bad_zone)
        # ... while an unknown tool is a JSON-RPC error, which the SDK raises as MCPError.
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("no_such_tool", {})
        assert unknown.value.code == types.INVALID_PARAMS


async def test_git_server(tmp_path: Path) -> None:
    repo = init_git_repo(tmp_path / "repo")
    (repo / "untracked.txt").write_text("new\n", encoding="utf-8")
    async with connect(git_server(repo), tmp_path / "logs") as client:
        tools = tools_by_name(await client.list_tools())
        assert {"git_status", "git_log", "git_diff", "git_commit", "git_add"} <= tools.keys()

        status = await client.call_tool("git_status", {"repo_path": str(repo)})
        assert not status.is_error
        assert "On branch main" in text_of(status)
        assert "untracked.txt" in text_of(status)

        # The server is confined to --repository.
        other = init_git_repo(tmp_path / "other")
        refused = await client.call_tool("git_status", {"repo_path": str(other)})
        assert refused.is_error
        assert "outside the allowed repository" in text_of(refused)


async def test_filesystem_server(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.txt"
    async with connect(filesystem_server(root), tmp_path / "logs") as client:
        assert client.protocol_version == "2025-11-25"  # TypeScript SDK 1.x: handshake era
        tools = tools_by_name(await client.list_tools())
        assert {"write_file", "read_text_file", "list_directory", "move_file"} <= tools.keys()

        written = await client.call_tool(
            "write_file", {"path": str(root / "note.txt"), "content": "hello from the test"}
        )
        assert not written.is_error, text_of(written)
        assert (root / "note.txt").read_text(encoding="utf-8") == "hello from the test"

        read = await client.call_tool("read_text_file", {"path": str(root / "note.txt")})
        assert not read.is_error
        assert text_of(read) == "hello from the test"

        for path in (str(outside), "../outside.txt"):
            refused = await client.call_tool("write_file", {"path": path, "content": "escaped"})
            assert refused.is_error
            assert "Access denied" in text_of(refused)
    assert not outside.exists()


async def test_fetch_server_lists_tools(tmp_path: Path) -> None:
    # No internet here, so the fetch tool is listed, never called.
    async with connect(fetch_server(), tmp_path) as client:
        tools = tools_by_name(await client.list_tools())
        assert set(tools) == {"fetch"}
        assert "url" in tools["fetch"].input_schema["properties"]
        assert "url" in tools["fetch"].input_schema["required"]


# --- fixture servers ----------------------------------------------------------------------------


async def list_definitions(spec: ServerSpec, logs: Path) -> tuple[types.Tool, str | None]:
    async with connect(spec, logs) as client:
        (tool,) = (await client.list_tools()).tools
        return tool, client.instructions


async def test_rugpull_server_changes_by_itself_between_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, first_instructions = await list_definitions(
        rugpull_server(state, auto_flip=True), tmp_path
    )
    second, second_instructions = await list_definitions(
        rugpull_server(state, auto_flip=True), tmp_path
    )
    assert first.name == second.name == "get_weather"
    assert first.description != second.description
    assert "<IMPORTANT>" in (second.description or "")
    assert first.input_schema != second.input_schema
    assert "context" in second.input_schema["properties"]
    assert first_instructions != second_instructions


async def test_rugpull_state_file_selects_what_changes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    seen: dict[str, tuple[types.Tool, str | None]] = {}
    for variant in ("benign", "description", "schema", "instructions"):
        state.write_text(variant, encoding="utf-8")
        seen[variant] = await list_definitions(rugpull_server(state), tmp_path)
    benign, benign_instructions = seen["benign"]

    tool, instructions = seen["description"]
    assert tool.description != benign.description
    assert (tool.input_schema, instructions) == (benign.input_schema, benign_instructions)

    tool, instructions = seen["schema"]
    assert tool.input_schema != benign.input_schema
    assert (tool.description, instructions) == (benign.description, benign_instructions)

    tool, instructions = seen["instructions"]
    assert instructions != benign_instructions
    assert tool == benign


async def test_poisoned_server(tmp_path: Path) -> None:
    async with connect(poisoned_server(), tmp_path) as client:
        tools = tools_by_name(await client.list_tools())
        add = tools["add"].description or ""
        assert "<IMPORTANT>" in add
        assert "~/.ssh/id_rsa" in add
        assert "send_email" in add
        assert any(char in add for char in ZERO_WIDTH)
        assert "sidenote" in tools["add"].input_schema["properties"]
        assert tools["subtract"].description == "Subtracts b from a."

        # The tool itself behaves innocently.
        assert text_of(await client.call_tool("add", {"a": 2, "b": 3})) == "5"
        assert text_of(await client.call_tool("subtract", {"a": 2, "b": 3})) == "-1"


@pytest.mark.parametrize("mode", ERAS)
async def test_paginated_listing_returns_every_tool(tmp_path: Path, mode: str) -> None:
    async with connect(misbehaving_server(paginate=True), tmp_path, mode) as client:
        names: list[str] = []
        pages = 0
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            pages += 1
            assert len(page.tools) <= PAGE_SIZE
            names += [tool.name for tool in page.tools]
            cursor = page.next_cursor
            if cursor is None:
                break
        base = ["crash", "hang", "slow_progress", "big", "echo"]
        assert names == base + [f"filler_{i:02d}" for i in range(FILLER_TOOLS)]
        assert pages == -(-len(names) // PAGE_SIZE) > 1

        with pytest.raises(MCPError) as bad_cursor:
            await client.list_tools(cursor="not-a-cursor")
        assert bad_cursor.value.code == types.INVALID_PARAMS


@pytest.mark.parametrize("mode", ERAS)
async def test_progress_timeout_cancel_big_and_echo(tmp_path: Path, mode: str) -> None:
    async with connect(misbehaving_server(), tmp_path, mode) as client:
        seen: list[tuple[float, float | None, str | None]] = []

        # Parameter names matter to type checkers: ProgressFnT is a Protocol.
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        done = await client.call_tool("slow_progress", {}, progress_callback=on_progress)
        assert text_of(done) == "done"
        assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]

        # A hung call: the per-call timeout raises REQUEST_TIMEOUT (and the SDK sends
        # notifications/cancelled); the session stays usable.
        with pytest.raises(MCPError) as timed_out:
            await client.call_tool("hang", {}, read_timeout_seconds=0.3)
        assert timed_out.value.code == types.REQUEST_TIMEOUT

        big = await client.call_tool("big", {})
        assert len(text_of(big)) == BIG_SIZE

        args = {"a": 1, "nested": {"b": [1, 2, "three"]}}
        echoed = await client.call_tool("echo", args)
        assert echoed.structured_content == args


@pytest.mark.parametrize("mode", ERAS)
async def test_crash_mid_call_is_a_client_error(tmp_path: Path, mode: str) -> None:
    async with connect(misbehaving_server(), tmp_path, mode) as client:
        with pytest.raises(MCPError) as crashed:
            await client.call_tool("crash", {})
        assert crashed.value.code == types.CONNECTION_CLOSED
        with pytest.raises(MCPError) as after:
            await client.call_tool("echo", {})
        assert after.value.code == types.CONNECTION_CLOSED
    assert "crashing on purpose" in (tmp_path / "misbehaving.log").read_text(encoding="utf-8")
