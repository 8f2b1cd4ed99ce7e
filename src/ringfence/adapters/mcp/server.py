"""The gateway's client side: an MCP server (the official SDK's low-level ``Server``).

Over stdio a client launches ``ringfence gateway run --config gateway.yaml`` as its MCP
server; over Streamable HTTP it connects to ``http://host:port/mcp``, presenting a bearer
token when the configuration lists tokens (each stands for an agent identity).  Every handler
translates to :class:`~ringfence.adapters.mcp.gateway.Gateway` and back; no decisions here.

With ``identity: {verify: true}`` the bearer token is the client's signed credential
instead (credentials.py): :func:`bearer_identity` verifies it on every HTTP request and
answers 401 with a JSON-RPC error naming the coded reason (recorded as a decision) when it
fails.  Over stdio the connection presents the credential from the configured variable or
file: a listing verifies it here (a failure is the same JSON-RPC error, recorded); a call,
a resource read or a prompt goes to the Gateway, whose Guard verifies it and refuses with the
coded reason like any other deny.  A verified client acts as the credential's agent, and each
call goes to the Guard with the credential (scope, budgets, its id on record).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, ParamSpec, TypeVar

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError

from ringfence import __version__
from ringfence.adapters.mcp.config import GatewayConfig, Identity
from ringfence.adapters.mcp.credentials import (
    CREDENTIAL_REFUSED,
    ClientCredentials,
    describe_request,
)
from ringfence.adapters.mcp.gateway import Connection, Gateway, GatewayError
from ringfence.core.action import ActionKind
from ringfence.errors import IdentityError
from ringfence.runtime.guard import Guard
from ringfence.runtime.identity import VerifiedCredential

__all__ = ["bearer_identity", "build_server"]

log = logging.getLogger("ringfence.gateway")
T = TypeVar("T")
P = ParamSpec("P")
PAGE_SIZE = 200
IDENTITY_KEY = "ringfence.identity"
CREDENTIAL_KEY = "ringfence.credential"  # the verified credential's text (ASGI scope)
VERIFIED_KEY = "ringfence.verified"  # the VerifiedCredential (ASGI scope)
Clock = Callable[[], int]
_MCP = ActionKind.MCP_REQUEST


def _rpc_errors(
    handler: Callable[P, Awaitable[T]],
) -> Callable[P, Awaitable[T]]:
    """A handler whose GatewayError reaches the client as a JSON-RPC error."""

    @functools.wraps(handler)
    async def wrapped(*a: P.args, **kw: P.kwargs) -> T:
        try:
            return await handler(*a, **kw)
        except GatewayError as exc:
            raise MCPError(exc.code, exc.message, exc.data) from None

    return wrapped


def build_server(
    gateway: Gateway, stdio_connection: Connection | None = None, *, clock: Clock = time.time_ns
) -> Server[Any]:
    """The MCP server the clients talk to; ``stdio_connection`` for the one stdio client.

    ``clock`` (ns since the epoch) is what credentials are verified against: the Guard's.
    """
    sessions: dict[str, Connection] = {}
    creds: ClientCredentials | None = None
    if gateway.config.identity.verify or gateway.guard.verifier is not None:
        creds = ClientCredentials(gateway.guard, gateway.config, clock=clock)

    def client(
        ctx: ServerRequestContext[Any],
        kind: str,
        tool: str,
        args: dict[str, Any],
        *,
        listing: bool = False,
    ) -> tuple[Connection, VerifiedCredential | None]:
        """The connection a request comes from, and its verified credential (identity on).

        Raises GatewayError (recorded) when the credential is missing or invalid: a client
        never falls back to the configured identity then.  Over stdio only a ``listing`` is
        verified here; anything else the Guard verifies when it checks the request.
        """
        if stdio_connection is not None:
            if creds is None or not listing:
                return stdio_connection, None
            return stdio_listing(stdio_connection, kind, tool, args)
        request = ctx.request
        scope: MutableMapping[str, Any] = getattr(request, "scope", {}) or {}
        verified: VerifiedCredential | None = None
        credential: str | None = None
        identity: Identity
        if creds is not None:
            verified = scope.get(VERIFIED_KEY)
            if verified is None:  # not through bearer_identity: nobody is identified
                problem = IdentityError("no credential was presented", code="credential.missing")
                raise creds.refuse(problem, kind, tool, args)
            identity = scope[IDENTITY_KEY]
            credential = scope[CREDENTIAL_KEY]
        else:
            identity = scope.get(IDENTITY_KEY) or gateway.config.identity
        headers = getattr(request, "headers", None)
        sid = headers.get("mcp-session-id") if headers is not None else None
        key = f"{identity.agent}/{sid or '-'}"
        conn = sessions.get(key)
        if conn is None:
            conn = Connection(identity, credential=credential)
            if len(sessions) > 10_000:
                sessions.clear()  # bounded; a forgotten session only loses its labels
            sessions[key] = conn
        elif conn.credential != credential or conn.identity != identity:
            # A renewed credential (or one for another user) on the same session: this
            # request is the new one's; the session and its labels carry on.
            conn = dataclasses.replace(conn, identity=identity, credential=credential)
            sessions[key] = conn
        return conn, verified

    def stdio_listing(
        conn: Connection, kind: str, tool: str, args: dict[str, Any]
    ) -> tuple[Connection, VerifiedCredential]:
        """The stdio connection as its credential's, read and verified for a listing."""
        assert creds is not None
        try:
            verified = creds.verify(conn.presented())
        except IdentityError as exc:
            raise creds.refuse(exc, kind, tool, args, conn.session) from None
        return dataclasses.replace(conn, identity=creds.identity(verified)), verified

    @contextlib.contextmanager
    def presenting(conn: Connection) -> Iterator[None]:
        """The connection's credential for every check the Guard makes in this block (the
        calls that do not pass it explicitly: resources/read, prompts/get)."""
        credential = conn.presented()
        if credential is None:
            yield
            return
        with gateway.guard.context(credential=credential):
            yield

    @_rpc_errors
    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        conn, verified = client(ctx, _MCP, "tools/list", {}, listing=True)
        tools = gateway.list_tools(conn)
        if verified is not None:  # a tool outside the credential's scope cannot be called
            tools = [t for t in tools if verified.scope.admits_tool(t.name)]
        start = _cursor(params.cursor if params else None, len(tools))
        page = tools[start : start + PAGE_SIZE]
        more = start + PAGE_SIZE < len(tools)
        return types.ListToolsResult(
            tools=page, next_cursor=str(start + PAGE_SIZE) if more else None
        )

    @_rpc_errors
    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        async def relay(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        wants_progress = bool(ctx.meta and ctx.meta.get("progress_token") is not None)
        conn, _ = client(ctx, ActionKind.TOOL_CALL, params.name, params.arguments or {})
        return await gateway.call_tool(
            conn, params.name, params.arguments, relay if wants_progress else None
        )

    @_rpc_errors
    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        conn, _ = client(ctx, _MCP, "resources/list", {}, listing=True)
        page, cursor = _page(await gateway.list_resources(conn), params)
        return types.ListResourcesResult(resources=page, next_cursor=cursor)

    @_rpc_errors
    async def list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        conn, _ = client(ctx, _MCP, "resources/templates/list", {}, listing=True)
        items = await gateway.list_resource_templates(conn)
        return types.ListResourceTemplatesResult(resource_templates=items)

    @_rpc_errors
    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        conn, _ = client(ctx, _MCP, "resources/read", {"uri": uri})
        with presenting(conn):
            return await gateway.read_resource(conn, uri)

    @_rpc_errors
    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        conn, _ = client(ctx, _MCP, "prompts/list", {}, listing=True)
        page, cursor = _page(await gateway.list_prompts(conn), params)
        return types.ListPromptsResult(prompts=page, next_cursor=cursor)

    @_rpc_errors
    async def get_prompt(
        ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        args = {"name": params.name, "arguments": dict(params.arguments or {})}
        conn, _ = client(ctx, _MCP, "prompts/get", args)
        with presenting(conn):
            return await gateway.get_prompt(conn, params.name, params.arguments)

    # 2026-07-28 clients hear of tool-list changes on a subscriptions/listen stream: every
    # change the gateway sees (a server's list_changed, a quarantine) is published to it.
    bus = InMemorySubscriptionBus()

    async def tools_changed() -> None:
        await bus.publish(ToolsListChanged())

    gateway.listeners.append(tools_changed)
    return Server(
        "ringfence-gateway",
        version=__version__,
        title="Ringfence MCP gateway",
        instructions=gateway.instructions(),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_subscriptions_listen=ListenHandler(bus),
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
    config: GatewayConfig,
    app: Callable[..., Awaitable[None]],
    guard: Guard | None = None,
    *,
    clock: Clock = time.time_ns,
    refusals: RefusalBudget | None = None,
) -> Callable[..., Awaitable[None]]:
    """ASGI middleware: map the bearer token to an identity, or answer 401.

    With no tokens configured every request gets the default identity (loopback use).
    Tokens are compared by SHA-256 digest, so the file never holds one in the clear.

    With ``identity.verify`` the token is the client's credential, verified with ``guard``'s
    verifier on every request (``clock``: the Guard's); a failure is a 401 whose body is a
    JSON-RPC error with the coded reason, recorded as a decision by ``ringfence:identity`` —
    up to ``refusals`` (:class:`RefusalBudget`) per client address; past it, 429.
    """
    if config.identity.verify or (guard is not None and guard.verifier is not None):
        if guard is None:
            raise TypeError("bearer_identity needs the Guard when identity.verify is on")
        return _credential_middleware(
            ClientCredentials(guard, config, clock=clock),
            app,
            config.max_message_bytes,
            refusals or RefusalBudget(),
        )
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
            await _respond_401(send, body, b'Bearer realm="ringfence"')
            return
        scope[IDENTITY_KEY] = identity
        await app(scope, receive, send)

    return middleware


class RefusalBudget:
    """How many refused requests each client address gets on record: a token bucket per
    address (``burst``, refilled at ``rate`` a second), so that whoever can reach the port
    cannot flood the audit log with refusals.  Past it a request is answered 429 and only
    counted; the count goes on record with that address's next recorded refusal."""

    def __init__(
        self,
        rate: float = 10.0,
        burst: int = 50,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._max = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # [tokens, at, skipped]

    def take(self, client: str) -> tuple[bool, int]:
        """(record this refusal?, refusals not recorded since the last recorded one)."""
        now = self._clock()
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = [float(self.burst), now, 0.0]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        self._buckets[client] = bucket
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)  # the least recently refused first
        bucket[1] = now
        if tokens < 1:
            bucket[0], bucket[2] = tokens, bucket[2] + 1
            return False, 0
        skipped = int(bucket[2])
        bucket[0], bucket[2] = tokens - 1, 0.0
        return True, skipped


def _credential_middleware(
    creds: ClientCredentials,
    app: Callable[..., Awaitable[None]],
    max_body: int,
    refusals: RefusalBudget,
) -> Callable[..., Awaitable[None]]:
    """Verify ``Authorization: Bearer <credential>`` on every HTTP request."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await app(scope, receive, send)
            return
        if kind != "http":  # nothing else is served; never unauthenticated
            await send({"type": "websocket.close", "code": 1008})
            return
        header = b""
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                header = value
                break
        credential: str | None = None
        if header[:7].lower() == b"bearer ":
            with contextlib.suppress(UnicodeDecodeError):
                credential = header[7:].strip().decode("ascii") or None
        try:
            verified = creds.verify(credential)
        except IdentityError as exc:
            client = scope.get("client")
            address = str(client[0]) if client else "unknown"
            recorded, skipped = refusals.take(address)
            if not recorded:
                await _respond_429(send)
                return
            if skipped:
                more = f"{skipped} more refused requests from {address} not on record"
                exc = IdentityError(f"{exc.message} ({more})", code=exc.code)
            await _refuse(creds, exc, scope, receive, send, max_body)
            return
        scope[IDENTITY_KEY] = creds.identity(verified)
        scope[CREDENTIAL_KEY] = credential
        scope[VERIFIED_KEY] = verified
        await app(scope, receive, send)

    return middleware


async def _refuse(
    creds: ClientCredentials,
    problem: IdentityError,
    scope: dict[str, Any],
    receive: Any,
    send: Any,
    max_body: int,
) -> None:
    """Record a request refused for its credential and answer 401 with a JSON-RPC error."""
    verb = str(scope.get("method") or "GET")
    body = await _read_body(receive, max_body) if verb == "POST" else None
    rid, kind, tool, args = describe_request(body, verb)
    error = creds.refuse(problem, kind, tool, args)
    payload = {
        "jsonrpc": "2.0",
        "id": rid,
        "error": {"code": error.code, "message": error.message, "data": error.data},
    }
    challenge = b'Bearer realm="ringfence"'
    if problem.code != "credential.missing":  # RFC 6750 3.1: no error code without a token
        challenge += b', error="invalid_token", error_description="' + problem.code.encode() + b'"'
    await _respond_401(send, json.dumps(payload).encode(), challenge)


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request body, or None if it is larger than ``limit`` or the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond_429(send: Any) -> None:
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": CREDENTIAL_REFUSED,
                "message": "too many refused requests from this address: not verified, "
                "not on record; retry later with a valid credential",
            },
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _respond_401(send: Any, body: bytes, challenge: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", challenge),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
