"""Shared helpers for the gateway integration tests (test_gateway_*.py).

Every test writes its own policy, gateway configuration and data folder into a temporary
folder (`GatewaySetup`), then drives `ringfence gateway run --config ...` as a real subprocess:
with the official SDK client over stdio (`gateway_client`), with raw newline-delimited
JSON-RPC (`RawGateway`, for the playbook tests), or over Streamable HTTP.  Files are written as
JSON, which the gateway's strict YAML loader reads as YAML.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from ringfence import open_audit_log

from .servers import FIXTURES, ServerSpec

CALL_TIMEOUT = 20.0
"""Upper bound on any one request, so a broken gateway fails a test instead of hanging it."""


def _ringfence() -> str:
    beside = Path(sys.executable).with_name("ringfence")
    if beside.exists():
        return str(beside)
    found = shutil.which("ringfence")
    if found is None:
        raise RuntimeError("the ringfence console script is not installed")
    return found


RINGFENCE = _ringfence()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# --- configuration ------------------------------------------------------------------------------


def server_entry(spec: ServerSpec, **extra: Any) -> dict[str, Any]:
    """A gateway `servers:` entry launching `spec` over stdio."""
    entry: dict[str, Any] = {"command": spec.command[0], "args": spec.command[1:]}
    if spec.env:
        entry["env"] = spec.env
    if spec.cwd is not None:
        entry["cwd"] = str(spec.cwd)
    entry.update(extra)
    return entry


def fixture_entry(script: str, *args: str, **extra: Any) -> dict[str, Any]:
    """A `servers:` entry for one of our fixture servers (run by the test interpreter)."""
    return {"command": sys.executable, "args": [str(FIXTURES / script), *args], **extra}


@dataclass
class GatewaySetup:
    """One gateway's folder: policy.yaml, gateway.yaml, data/ and the gateway's stderr log."""

    root: Path
    servers: dict[str, dict[str, Any]]
    rules: list[dict[str, Any]]
    tools: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.write()

    @property
    def config(self) -> Path:
        return self.root / "gateway.yaml"

    @property
    def policy(self) -> Path:
        return self.root / "policy.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "gateway.log"

    def write(self) -> None:
        policy: dict[str, Any] = {"version": 1, "name": "gateway-tests", "rules": self.rules}
        if self.tools:
            policy["tools"] = self.tools
        self.policy.write_text(json.dumps(policy, indent=2), encoding="utf-8")
        config = {"policy": "policy.yaml", "data_dir": "data", **self.options}
        config["servers"] = self.servers
        self.config.write_text(json.dumps(config, indent=2), encoding="utf-8")

    def command(self, *extra: str) -> list[str]:
        return [RINGFENCE, "gateway", "run", "--config", str(self.config), *extra]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `ringfence ARGS` (for example `gateway diff --config F`), capturing its output."""
        return subprocess.run(
            [RINGFENCE, *args], capture_output=True, text=True, timeout=60, check=False
        )

    def inventory(self) -> list[dict[str, Any]]:
        done = self.cli("inventory", "--config", str(self.config), "--json")
        assert done.returncode == 0, done.stderr
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8") if self.log.exists() else ""


@asynccontextmanager
async def gateway_client(setup: GatewaySetup, *, mode: str = "auto") -> AsyncIterator[Client]:
    """An initialized SDK client talking to `ringfence gateway run` over stdio."""
    params = StdioServerParameters(
        command=setup.command()[0], args=setup.command()[1:], cwd=setup.root
    )
    with setup.log.open("a", encoding="utf-8") as errlog:
        transport = stdio_client(params, errlog=errlog)
        async with Client(
            transport, cache=None, mode=mode, read_timeout_seconds=CALL_TIMEOUT
        ) as client:
            yield client


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


def names(result: types.ListToolsResult) -> set[str]:
    return {tool.name for tool in result.tools}


# --- the audit log ------------------------------------------------------------------------------


def audit_records(data_dir: Path) -> list[dict[str, Any]]:
    """Every record of the gateway's audit log, after checking the log verifies."""
    log = open_audit_log(data_dir)
    try:
        report = log.verify()
        assert report.ok, report.problems
        return [json.loads(data) for _, data in log.store.records()]
    finally:
        log.close()


def of_type(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == kind]


def by_decision(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by decision_id (decision, approval and outcome records)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if "decision_id" in r:
            out.setdefault(r["decision_id"], []).append(r)
    return out


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def background(command: list[str], port: int, log: Path, **env: str) -> Iterator[Listening]:
    """Run a server process listening on `port`; stopped with SIGTERM (then SIGKILL) after."""
    with log.open("ab") as errlog:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=errlog,
            stderr=errlog,
            env={**os.environ, **env},
        )
        listening = Listening(proc, port)
        try:
            wait_for_port(port, proc)
            yield listening
        finally:
            listening.stop()


@dataclass
class Listening:
    proc: subprocess.Popen[bytes]
    port: int

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait; SIGKILL if it does not stop.  The exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# --- raw JSON-RPC over stdio (playbook tests) ---------------------------------------------------


class RawGateway:
    """The gateway as a subprocess spoken to in newline-delimited JSON-RPC, no SDK in between."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._stdin = proc.stdin
        self._stdout = BufferedByteReceiveStream(proc.stdout)
        self.received: list[dict[str, Any]] = []

    async def send_line(self, line: bytes) -> None:
        await self._stdin.send(line + b"\n")

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_line(json.dumps(message).encode())

    async def receive(self, timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            line = await self._stdout.receive_until(b"\n", 64 << 20)
        message: dict[str, Any] = json.loads(line)
        self.received.append(message)
        return message

    async def request(
        self, id: int, method: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Send a request; every message received up to and including its response."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return await self.until(id)

    async def until(self, id: int) -> list[dict[str, Any]]:
        got = []
        while True:
            message = await self.receive()
            got.append(message)
            if message.get("id") == id and "method" not in message:
                return got

    async def initialize(self, version: str = "2025-11-25") -> dict[str, Any]:
        (response,) = await self.request(
            0,
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "playbook", "version": "1.0"},
            },
        )
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return response


@asynccontextmanager
async def raw_gateway(setup: GatewaySetup) -> AsyncIterator[RawGateway]:
    """The gateway subprocess with raw pipes; on exit stdin is closed and it must stop by itself."""
    with setup.log.open("ab") as errlog:
        proc = await anyio.open_process(setup.command(), stderr=errlog, cwd=setup.root)
        try:
            yield RawGateway(proc)
            assert proc.stdin is not None
            await proc.stdin.aclose()
            with anyio.fail_after(10):
                status = await proc.wait()
            assert status == 0, setup.log_text()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await proc.aclose()


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
