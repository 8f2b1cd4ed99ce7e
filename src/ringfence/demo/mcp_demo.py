"""The gateway demo: a scripted MCP client (no LLM) talks to real MCP servers through Ringfence.

Two upstream servers sit behind ``ringfence gateway run``: the reference filesystem server
(``@modelcontextprotocol/server-filesystem``, rooted at a fresh workspace) and a small weather
server shipped with Ringfence.  The script makes allowed and denied calls, then the weather
server "updates" itself with a poisoned tool description; on the next start the gateway
quarantines that tool.  Finally the audit log is verified.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringfence.errors import ConfigError

__all__ = ["Call", "filesystem_server", "prepare", "run_session"]

FS_ENTRY = "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"


@dataclass
class Call:
    """One request the scripted client made and what came back."""

    tool: str
    argument: str
    outcome: str  # allow | deny | error | listed
    rule: str
    detail: str


def filesystem_server() -> Path:
    """Where the reference filesystem server was installed (scripts/setup-mcp-servers.sh)."""
    candidates = [
        Path(os.environ.get("RINGFENCE_MCP_SERVERS_DIR", ".cache/mcp-servers")) / "npm" / FS_ENTRY,
        Path(__file__).resolve().parents[3] / ".cache/mcp-servers/npm" / FS_ENTRY,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        "the reference MCP filesystem server is not installed: run ./dev setup "
        "(or scripts/setup-mcp-servers.sh), which installs @modelcontextprotocol/server-filesystem",
        code="config.missing_server",
    )


def prepare(root: Path) -> Path:
    """Write the workspace, policy and gateway config under ``root``; the config's path."""
    if shutil.which("node") is None:
        raise ConfigError("the demo's filesystem server needs Node.js (node) on PATH")
    ws = root / "workspace"
    (ws / "notes").mkdir(parents=True, exist_ok=True)
    (ws / "secrets").mkdir(exist_ok=True)
    (ws / "secrets" / "api-key.txt").write_text("sk-demo-0000000000000000\n")
    (ws / "notes" / "plan.md").write_text("# Trip plan\n- Paris, Tuesday\n")
    (root / "weather.state").write_text("v1")
    path_arg = "{type: object, properties: {path: {type: string}}}"
    (root / "policy.yaml").write_text(
        textwrap.dedent(
            f"""\
            version: 1
            name: mcp-demo
            tools:
              files__read_text_file: {{args: {path_arg}, resources: {{path: path}}}}
              files__list_directory: {{args: {path_arg}, resources: {{path: path}}}}
              files__write_file: {{args: {path_arg}, resources: {{path: path}}}}
              files__move_file:
                args:
                  type: object
                  properties: {{source: {{type: string}}, destination: {{type: string}}}}
                resources: {{source: path, destination: path}}
            rules:
              - id: read-workspace
                effect: allow
                tool: [files__read_text_file, files__list_directory]
                resource: "path:{ws}/**"
                reason: the workspace may be read
              - id: write-notes
                effect: allow
                tool: files__write_file
                resource: "path:{ws}/notes/**"
                reason: notes may be written
              - id: no-secrets
                effect: deny
                resource: "path:{ws}/secrets/**"
                reason: secrets are never read or written by agents
              - id: moves-need-approval
                effect: require_approval
                tool: files__move_file
                reason: moving files needs a human
              - id: weather
                effect: allow
                tool: weather__get_weather
                reason: weather lookups are harmless
            """
        )
    )
    config = root / "gateway.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            policy: policy.yaml
            data_dir: data
            identity: {{agent: trip-planner, user: alice}}
            servers:
              files:
                command: node
                args: [{str(filesystem_server())!r}, {str(ws)!r}]
                trusted: true
              weather:
                command: {sys.executable!r}
                args: [-m, ringfence.demo.weather_server, --state, {str(root / "weather.state")!r}]
            """
        )
    )
    return config


async def run_session(
    config: Path, script: list[tuple[str, dict[str, Any]]], show: Callable[[Call], None]
) -> list[str]:
    """Start the gateway as an MCP client would, list tools, run ``script``; the tool names."""
    from mcp import Client, MCPError, StdioServerParameters

    ringfence = Path(sys.executable).with_name("ringfence")
    command = [str(ringfence)] if ringfence.exists() else [sys.executable, "-m", "ringfence.cli"]
    params = StdioServerParameters(
        command=command[0], args=[*command[1:], "gateway", "run", "--config", str(config)]
    )
    errlog = open(os.devnull, "w")  # noqa: SIM115 - the gateway's warnings go to the audit log
    try:
        from mcp.client.stdio import stdio_client

        async with Client(stdio_client(params, errlog=errlog), cache=None) as client:
            listed = [t.name for t in (await client.list_tools()).tools]
            for tool, args in script:
                key = str(next(iter(args.values()), "")) if args else ""
                try:
                    result = await client.call_tool(tool, args)
                except MCPError as exc:
                    rules = (
                        ", ".join((exc.data or {}).get("rules", []))
                        if isinstance(exc.data, dict)
                        else ""
                    )
                    show(Call(tool, key, "error", rules, f"JSON-RPC {exc.code}: {exc.message}"))
                    continue
                meta = (result.meta or {}).get("io.ringfence/decision")
                text = " ".join(getattr(c, "text", "") for c in result.content).strip()
                if meta:
                    effect = "approval" if "ringfence:approval" in meta["rules"] else "deny"
                    show(
                        Call(
                            tool, key, effect, ", ".join(meta["rules"]), "; ".join(meta["reasons"])
                        )
                    )
                else:
                    show(Call(tool, key, "allow", "", text.replace("\n", " ")[:90]))
            return listed
    finally:
        errlog.close()
