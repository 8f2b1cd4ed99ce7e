"""The benchmark's upstream MCP server: one ``echo`` tool, over stdio, with no work in it.

Built on the SDK's low-level ``Server``, so what the gateway benchmark measures is the MCP
round trip and the gateway, not the server.  ``echo`` returns its arguments as JSON text.

    python bench/echo_server.py [--count-file PATH]

With ``--count-file`` it writes how many ``tools/call`` requests it served there when its
client disconnects (the gateway benchmark checks that denied calls never arrived).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

ECHO = types.Tool(
    name="echo",
    description="Return the arguments, as JSON text.",
    input_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["text"],
    },
)
served = [0]


async def list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[ECHO])


async def call_tool(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    if params.name != "echo":
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"no tool {params.name!r}")],
            is_error=True,
        )
    served[0] += 1
    text = json.dumps(params.arguments or {}, sort_keys=True)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def main(count_file: Path | None) -> None:
    server: Server[Any] = Server("bench-echo", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
    if count_file is not None:
        count_file.write_text(str(served[0]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count-file", type=Path)
    anyio.run(main, parser.parse_args().count_file)
