"""Streamable HTTP on both sides of the gateway.

Client side: `ringfence gateway run --http` with bearer tokens in the configuration (stored as
SHA-256 digests), each standing for an agent identity that the policy and the audit log see.
Upstream side: the misbehaving fixture served over Streamable HTTP, reached by `url:`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from .conftest import (
    GatewaySetup,
    audit_records,
    background,
    free_port,
    gateway_client,
    names,
    of_type,
    server_entry,
    sha256_hex,
    text_of,
)
from .fixtures.misbehaving_server import BIG_SIZE, PROGRESS_STEPS
from .servers import FIXTURES, time_server

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOKEN = "rf-test-token-for-http-agent"
OTHER_TOKEN = "rf-test-token-for-other-agent"
INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def leaves(exc: BaseException) -> list[Any]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


@asynccontextmanager
async def http_client(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    async with create_mcp_http_client(headers=headers) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, cache=None, read_timeout_seconds=20) as client:
            yield client


def http_setup(tmp_path: Path, port: int) -> GatewaySetup:
    return GatewaySetup(
        tmp_path,
        servers={"time": server_entry(time_server(), trusted=True)},
        rules=[
            {
                "id": "time-for-http-agent",
                "effect": "allow",
                "tool": "time__get_current_time",
                "agent": "http-agent",
            }
        ],
        options={
            "identity": {"agent": "default-agent"},
            "max_message_bytes": 64 << 10,
            "listen": {
                "host": "127.0.0.1",
                "port": port,
                "tokens": {
                    sha256_hex(TOKEN): {"agent": "http-agent"},
                    sha256_hex(OTHER_TOKEN): {"agent": "other-agent"},
                },
            },
        },
    )


async def test_http_clients_are_identified_by_their_bearer_token(tmp_path: Path) -> None:
    port = free_port()
    setup = http_setup(tmp_path, port)
    url = f"http://127.0.0.1:{port}/mcp"
    with background(setup.command("--http"), port, setup.log) as gateway:
        # No token, a wrong token, a malformed header: 401 before any MCP processing.
        async with httpx2.AsyncClient() as http:
            for headers in (
                {},
                {"Authorization": "Bearer not-the-token"},
                {"Authorization": TOKEN},
            ):
                response = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **headers})
                assert response.status_code == 401, (headers, response.text)
                assert response.json() == {"error": "a valid bearer token is required"}
                assert response.headers["www-authenticate"] == 'Bearer realm="ringfence"'
            ok = await http.post(
                url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"}
            )
            assert ok.status_code == 200, ok.text
            # A body over max_message_bytes (64 KiB here) is refused before it is parsed.
            huge = {**INITIALIZE, "params": {**INITIALIZE["params"], "pad": "z" * (100 << 10)}}
            too_big = await http.post(
                url, json=huge, headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"}
            )
            assert too_big.status_code == 413, too_big.text

        # The SDK client reports the 401 as an MCPError (inside its task groups' exception groups).
        with pytest.raises(BaseExceptionGroup) as refused:
            async with http_client(url, "not-the-token"):
                pass
        assert [(type(e), e.code, e.message) for e in leaves(refused.value)] == [
            (MCPError, -32603, "Server returned an error response")
        ]

        async with http_client(url, TOKEN) as client:
            assert names(await client.list_tools()) == {"time__get_current_time"}
            result = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert result.is_error is False
            assert result.structured_content is not None
            assert result.structured_content["timezone"] == "UTC"

        async with http_client(url, OTHER_TOKEN) as client:
            assert names(await client.list_tools()) == set()
            denied = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert denied.is_error is True
            assert text_of(denied).startswith("Ringfence denied this call: ")

        gateway.stop()

    records = audit_records(setup.data)
    decisions = [
        (d["agent"], d["tool"], d["effect"], d["rules"]) for d in of_type(records, "decision")
    ]
    assert decisions == [
        ("http-agent", "time__get_current_time", "allow", ["time-for-http-agent"]),
        ("other-agent", "time__get_current_time", "deny", ["ringfence:default-deny"]),
    ]
    (outcome,) = of_type(records, "outcome")
    assert (outcome["agent"], outcome["status"], outcome["labels"]) == ("http-agent", "ok", [])
    sessions = {d["session"] for d in of_type(records, "decision")}
    assert len(sessions) == 2  # one per HTTP client


async def test_http_upstream_by_url(tmp_path: Path) -> None:
    port = free_port()
    upstream = [sys.executable, str(FIXTURES / "http_server.py"), "--port", str(port)]
    setup = GatewaySetup(
        tmp_path,
        servers={"up": {"url": f"http://127.0.0.1:{port}/mcp", "timeout": 10}},
        rules=[
            {"id": "up", "effect": "allow", "tool": ["up__echo", "up__slow_progress", "up__big"]}
        ],
    )
    with background(upstream, port, tmp_path / "upstream.log"):
        async with gateway_client(setup) as client:
            assert names(await client.list_tools()) == {"up__echo", "up__slow_progress", "up__big"}

            echoed = await client.call_tool("up__echo", {"over": "http", "n": [1, 2]})
            assert (echoed.is_error, echoed.structured_content) == (
                False,
                {"over": "http", "n": [1, 2]},
            )

            seen: list[tuple[float, float | None, str | None]] = []

            async def progress(progress: float, total: float | None, message: str | None) -> None:
                seen.append((progress, total, message))

            slow = await client.call_tool("up__slow_progress", {}, progress_callback=progress)
            assert (slow.is_error, text_of(slow)) == (False, "done")
            assert seen == [
                (float(step), float(PROGRESS_STEPS), f"step {step}")
                for step in range(1, PROGRESS_STEPS + 1)
            ]

            big = await client.call_tool("up__big", {})
            assert text_of(big) == "x" * BIG_SIZE

    rows = {r["tool"]: r for r in setup.inventory()}
    assert {r["transport"] for r in rows.values()} == {"http"}
    assert {r["status"] for r in rows.values()} == {"pinned"}
    outcomes = of_type(audit_records(setup.data), "outcome")
    assert [(o["tool"], o["status"], o["labels"]) for o in outcomes] == [
        ("up__echo", "ok", ["untrusted"]),
        ("up__slow_progress", "ok", ["untrusted"]),
        ("up__big", "ok", ["scan_incomplete", "untrusted"]),  # 2 MiB: more than the tripwires read
    ]


async def test_http_gateway_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # SIGTERM is how service managers and container runtimes stop a server: the gateway
    # should shut down like it does when a stdio client leaves (exit 0, upstreams stopped,
    # the audit log closed with a final signed checkpoint covering every record).
    port = free_port()
    setup = http_setup(tmp_path, port)
    with background(setup.command("--http"), port, setup.log) as gateway:
        async with http_client(f"http://127.0.0.1:{port}/mcp", TOKEN) as client:
            result = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert result.is_error is False
        status = gateway.stop()
    verify = setup.cli("audit", "verify", "--data", str(setup.data), "--json")
    report = json.loads(verify.stdout)
    assert (status, report["ok"], report["unsealed"]) == (0, True, 0), setup.log_text()
