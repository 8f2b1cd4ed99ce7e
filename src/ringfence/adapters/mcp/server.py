"""The gateway's client side: an MCP server (the official SDK's low-level ``Server``).

Over stdio a client launches ``ringfence gateway run --config gateway.yaml`` as its MCP
server; over Streamable HTTP it connects to ``http://host:port/mcp``, presenting a bearer
token when the configuration lists tokens (each stands for an agent identity).  Every handler
translates to :class:`~ringfence.adapters.mcp.gateway.Gateway` and back; no decisions here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from ringfence import __version__
from ringfence.adapters.mcp.config import GatewayConfig, Identity
from ringfence.adapters.mcp.gateway import Connection, Gateway, GatewayError

__all__ = ["bearer_identity", "build_server"]

log = logging.getLogger("ringfence.gateway")
T = TypeVar("T")
PAGE_SIZE = 200
IDENTITY_KEY = "ringfence.identity"


def build_server(gateway: Gateway, stdio_connection: Connection | None = None) -> Server[Any]:
    """The MCP server the clients talk to; ``stdio_connection`` for the one stdio client."""
    sessions: dict[str, Connection] = {}

    def connection(ctx: ServerRequestContext[Any]) -> Connection:
        if stdio_connection is not None:
            return stdio_connection
        request = ctx.request
        scope: MutableMapping[str, Any] = getattr(request, "scope", {}) or {}
        identity = scope.get(IDENTITY_KEY) or gateway.config.identity
        headers = getattr(request, "headers", None)
        sid = headers.get("mcp-session-id") if headers is not None else None
        key = f"{identity.agent}/{sid or '-'}"
        conn = sessions.get(key)
        if conn is None:
            conn = Connection(identity)
            if len(sessions) > 10_000:
                sessions.clear()  # bounded; a forgotten session only loses its labels
            sessions[key] = conn
        return conn

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = gateway.list_tools(connection(ctx))
        start = _cursor(params.cursor if params else None, len(tools))
        page = tools[start : start + PAGE_SIZE]
        more = start + PAGE_SIZE < len(tools)
        return types.ListToolsResult(
            tools=page, next_cursor=str(start + PAGE_SIZE) if more else None
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        async def relay(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        wants_progress = bool(ctx.meta and ctx.meta.get("progress_token") is not None)
        try:
            return await gateway.call_tool(
                connection(ctx), params.name, params.arguments, relay if wants_progress else None
            )
        except GatewayError as exc:
            raise MCPError(exc.code, exc.message, exc.data) from None

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        page, cursor = _page(await gateway.list_resources(connection(ctx)), params)
        return types.ListResourcesResult(resources=page, next_cursor=cursor)

    async def list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        items = await gateway.list_resource_templates(connection(ctx))
        return types.ListResourceTemplatesResult(resource_templates=items)

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        try:
            return await gateway.read_resource(connection(ctx), str(params.uri))
        except GatewayError as exc:
            raise MCPError(exc.code, exc.message, exc.data) from None

    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        page, cursor = _page(await gateway.list_prompts(connection(ctx)), params)
        return types.ListPromptsResult(prompts=page, next_cursor=cursor)

    async def get_prompt(
        ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        try:
            return await gateway.get_prompt(connection(ctx), params.name, params.arguments)
        except GatewayError as exc:
            raise MCPError(exc.code, exc.message, exc.data) from None

    return Server(
        "ringfence-gateway",
        version=__version__,
        title="Ringfence MCP gateway",
        instructions=None,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )


def _page(
    items: list[T], params: types.PaginatedRequestParams | None
) -> tuple[list[T], str | None]:
    """One page of a listing and the cursor of the next (an offset, opaque to clients)."""
    start = _cursor(params.cursor if params else None, len(items))
    more = start + PAGE_SIZE < len(items)
    return items[start : start + PAGE_SIZE], str(start + PAGE_SIZE) if more else None


def _cursor(cursor: str | None, total: int) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or int(cursor) > total:
        raise MCPError(-32602, f"invalid cursor {cursor[:40]!r}")
    return int(cursor)


def bearer_identity(
    config: GatewayConfig, app: Callable[..., Awaitable[None]]
) -> Callable[..., Awaitable[None]]:
    """ASGI middleware: map the bearer token to an identity, or answer 401.

    With no tokens configured every request gets the default identity (loopback use).
    Tokens are compared by SHA-256 digest, so the file never holds one in the clear.
    """
    tokens = config.listen.tokens if config.listen else {}

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not tokens:
            await app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        identity: Identity | None = None
        if header[:7].lower() == b"bearer ":
            digest = hashlib.sha256(header[7:].strip()).hexdigest()
            identity = tokens.get(digest)
        if identity is None:
            body = b'{"error":"a valid bearer token is required"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="ringfence"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope[IDENTITY_KEY] = identity
        await app(scope, receive, send)

    return middleware
