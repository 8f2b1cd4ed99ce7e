"""Robustness of the gateway: upstream crashes and hangs, progress, pagination, big results,
bad arguments.  One gateway (module-scoped) serves every test; each test ends by showing the
gateway still answers, so a test that broke it would also fail the ones after it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import mcp_types as types
import pytest
from mcp import Client, MCPError

from .conftest import GatewaySetup, fixture_entry, gateway_client, names, server_entry, text_of
from .fixtures.misbehaving_server import BIG_SIZE, FILLER_TOOLS, PROGRESS_STEPS
from .servers import time_server

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REQUEST_TIMEOUT = -32001
MISBEHAVING_TOOLS = {"crash", "hang", "slow_progress", "big", "echo"}


@pytest.fixture(scope="module")
async def client(
    anyio_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Client]:
    setup = GatewaySetup(
        tmp_path_factory.mktemp("robustness"),
        servers={
            "mis": fixture_entry("misbehaving_server.py", timeout=1),
            "pages": fixture_entry("misbehaving_server.py", "--paginate"),
            "time": server_entry(time_server()),
        },
        rules=[{"id": "all", "effect": "allow", "tool": ["mis__*", "pages__*", "time__*"]}],
    )
    async with gateway_client(setup) as client:
        yield client


async def still_up(client: Client, marker: str) -> None:
    echoed = await client.call_tool("mis__echo", {"after": marker})
    assert (echoed.is_error, echoed.structured_content) == (False, {"after": marker})


async def test_upstream_crash_is_an_error_and_the_server_is_restarted(client: Client) -> None:
    with pytest.raises(MCPError) as crashed:
        await client.call_tool("mis__crash", {})
    assert crashed.value.code == INTERNAL_ERROR
    assert crashed.value.message == (
        "MCP server 'mis' closed the connection (crashed?); it is being restarted"
    )
    assert isinstance(crashed.value.data, dict)
    assert set(crashed.value.data) == {"decision_id"}
    await still_up(client, "crash")  # answered by the restarted server


async def test_upstream_hang_times_out(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(MCPError) as hung:
        await client.call_tool("mis__hang", {})
    elapsed = time.monotonic() - started
    assert hung.value.code == REQUEST_TIMEOUT
    assert hung.value.message == "MCP server 'mis' did not answer within 1 s"
    assert 0.9 <= elapsed < 5, elapsed
    await still_up(client, "hang")


async def test_progress_notifications_reach_the_client(client: Client) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = await client.call_tool("mis__slow_progress", {}, progress_callback=progress)
    assert (result.is_error, text_of(result)) == (False, "done")
    assert seen == [(float(step), float(PROGRESS_STEPS), f"step {step}") for step in range(1, 4)]


async def test_paginated_upstream_listing_is_complete(client: Client) -> None:
    listed = names(await client.list_tools())
    fillers = {f"filler_{i:02d}" for i in range(FILLER_TOOLS)}
    assert {n for n in listed if n.startswith("pages__")} == {
        f"pages__{t}" for t in MISBEHAVING_TOOLS | fillers
    }
    assert {n for n in listed if n.startswith("mis__")} == {f"mis__{t}" for t in MISBEHAVING_TOOLS}
    filler = await client.call_tool("pages__filler_04", {})
    assert text_of(filler) == "filler_04"  # a tool from the last upstream page works


async def test_big_result_passes_intact(client: Client) -> None:
    result = await client.call_tool("mis__big", {})
    assert result.is_error is False
    text = text_of(result)
    assert len(text) == BIG_SIZE
    assert text == "x" * BIG_SIZE


async def test_arguments_breaking_the_tool_schema_are_invalid_params(client: Client) -> None:
    with pytest.raises(MCPError) as bad:
        await client.call_tool("time__get_current_time", {"timezone": 5})
    assert bad.value.code == INVALID_PARAMS
    assert bad.value.message == (
        'Invalid arguments for time__get_current_time: 5 is not of type "string" (at timezone)'
    )
    assert isinstance(bad.value.data, dict)
    assert bad.value.data["rules"] == ["ringfence:upstream-schema"]
    assert bad.value.data["decision_id"].startswith("d-")
    good = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
    assert good.is_error is False


async def test_a_message_over_the_default_limit_is_an_invalid_request(client: Client) -> None:
    with pytest.raises(MCPError) as big:
        await client.call_tool("mis__echo", {"blob": "x" * (5 << 20)})  # over 4 MiB
    assert big.value.code == -32600  # refused before parsing, answered with its id
    assert big.value.message == f"message larger than {4 << 20} bytes"
    await still_up(client, "oversized message")


async def test_oversized_arguments_are_invalid_params(client: Client) -> None:
    size = 2 << 20  # inside the message limit, over the policy's 1 MiB per string
    with pytest.raises(MCPError) as big:
        await client.call_tool("mis__echo", {"blob": "x" * size})
    assert big.value.code == INVALID_PARAMS
    assert big.value.message == (
        f"Invalid arguments for mis__echo: args.blob: string of {size} bytes exceeds the "
        "limit of 1048576"
    )
    assert isinstance(big.value.data, dict)
    assert big.value.data["rules"] == ["ringfence:input"]
    await still_up(client, "oversized")


async def test_unknown_tool_is_invalid_params(client: Client) -> None:
    with pytest.raises(MCPError) as unknown:
        await client.call_tool("mis__nope", {})
    assert unknown.value.code == INVALID_PARAMS
    assert unknown.value.message == "Unknown tool: mis__nope"
    assert isinstance(unknown.value.data, dict)
    assert unknown.value.data["rules"] == ["ringfence:unknown-tool"]
    await still_up(client, "unknown")


# --- the configured size limits -----------------------------------------------------------------


@pytest.fixture(scope="module")
async def limited(
    anyio_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Client]:
    setup = GatewaySetup(
        tmp_path_factory.mktemp("limits"),
        servers={"mis": fixture_entry("misbehaving_server.py")},
        rules=[{"id": "all", "effect": "allow", "tool": "mis__*"}],
        options={"max_message_bytes": 64 << 10, "max_result_bytes": 1 << 20},
    )
    async with gateway_client(setup) as client:
        yield client


async def test_message_over_max_message_bytes_is_refused_on_stdio(limited: Client) -> None:
    # 40 strings of 3000 bytes: about 120 KB, over the configured 64 KiB, while every
    # string and the total stay well inside the policy's argument limits.
    args = {f"k{i:02d}": "y" * 3000 for i in range(40)}
    try:
        result: types.CallToolResult | MCPError = await limited.call_tool("mis__echo", args)
    except MCPError as exc:
        result = exc
    assert isinstance(result, MCPError), (
        "a 120 KB message went through a gateway configured with max_message_bytes: 65536 "
        f"(echoed back: {isinstance(result, types.CallToolResult) and not result.is_error})"
    )
    assert result.code in (-32600, INVALID_PARAMS)  # invalid request, or invalid params
    echoed = await limited.call_tool("mis__echo", {"small": 1})
    assert echoed.structured_content == {"small": 1}


async def test_result_over_max_result_bytes_is_not_passed_on(limited: Client) -> None:
    # A result the gateway withholds is still a proper result (the call ran), in every era.
    result = await limited.call_tool("mis__big", {})
    assert result.is_error is True, (
        f"a {BIG_SIZE}-byte result went through a gateway configured with "
        f"max_result_bytes: {1 << 20}"
    )
    assert "Ringfence withheld the result" in text_of(result)
    assert f"larger than max_result_bytes ({1 << 20})" in text_of(result)
    echoed = await limited.call_tool("mis__echo", {"small": 2})
    assert echoed.structured_content == {"small": 2}
