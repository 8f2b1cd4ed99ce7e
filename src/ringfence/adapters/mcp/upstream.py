"""One upstream MCP server behind the gateway: connect, supervise, restart, call with timeouts.

The connection is the official SDK's :class:`mcp.Client` (stdio child process or Streamable
HTTP; both protocol eras).  A supervisor task owns it: anyio context managers must be left in
the task that entered them.  When a call finds the connection closed (the child crashed, the
HTTP server went away) the supervisor reconnects with backoff, if the server's ``restart``
setting allows; callers meanwhile get :class:`UpstreamUnavailable` with a readable reason.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ringfence import __version__
from ringfence.adapters.mcp.config import ServerConfig
from ringfence.adapters.mcp.pipe import Lane, LaneClosed, LaneError, LaneTooLarge, pipe_client
from ringfence.runtime.secrets import is_secret_env

__all__ = ["ResultTooLarge", "Upstream", "UpstreamUnavailable", "collect_pages"]

log = logging.getLogger("ringfence.gateway")
T = TypeVar("T")
CONNECTION_CLOSED = -32000
REQUEST_TIMEOUT = -32001
MAX_PAGES = 1000


class UpstreamUnavailable(Exception):
    """The server cannot take requests now (not connected, crashed, restarting, timed out)."""

    def __init__(self, server: str, reason: str, *, timeout: bool = False) -> None:
        super().__init__(f"MCP server {server!r} {reason}")
        self.server = server
        self.reason = reason
        self.timeout = timeout


class ResultTooLarge(Exception):
    """The server answered, but with more than the gateway reads (the answer was dropped)."""


class Upstream:
    """A supervised connection to one configured server."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        *,
        base: str = "",
        on_connect: Callable[[Upstream, Client], Awaitable[None]] | None = None,
        on_tools_changed: Callable[[Upstream], Awaitable[None]] | None = None,
        errlog: TextIO | None = None,
        transport: Callable[[], Any] | None = None,
        max_message_bytes: int = 32 << 20,
    ) -> None:
        self.name = name
        self.max_message_bytes = max_message_bytes
        self.lane: Lane | None = None  # the direct lane of the current stdio connection
        self._make_transport = transport
        self.config = config
        self.base = base
        self.client: Client | None = None
        self.status = "starting"  # starting | connected | restarting | unavailable | stopped
        self.last_error: str | None = None
        self.restarts = 0
        self._on_connect = on_connect
        self._on_tools_changed = on_tools_changed
        self._errlog = errlog or sys.stderr
        self._broken = anyio.Event()
        self._stopped = False
        self._changes: anyio.abc.TaskGroup | None = None  # where re-listings run

    # -- the supervisor ----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and keep connected until :meth:`stop`; run in the gateway's task group."""
        backoff = 0.2
        while not self._stopped:
            started = time.monotonic()
            # The connect timeout covers connecting and the first listing only: the scope's
            # deadline is lifted once the server is ready (anyio scopes cannot be re-entered,
            # and the Client must be left in the task that entered it).
            deadline = anyio.current_time() + self.config.connect_timeout
            try:
                with anyio.CancelScope(deadline=deadline) as scope:
                    async with self._client() as client:
                        self._broken = anyio.Event()
                        if self._on_connect is not None:
                            await self._on_connect(self, client)
                        scope.deadline = math.inf
                        self.client = client
                        self.status = "connected"
                        self.last_error = None
                        log.info("MCP server %r connected (%s)", self.name, client.protocol_version)
                        async with anyio.create_task_group() as tg:
                            self._changes = tg
                            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                                tg.start_soon(self._listen, client)
                            await self._broken.wait()
                            tg.cancel_scope.cancel()
                if scope.cancelled_caught:
                    self.last_error = "did not connect in time"
                    log.warning("MCP server %r: %s", self.name, self.last_error)
            except Exception as exc:  # any failure to connect is reported, then retried
                self.last_error = _describe(exc)
                log.warning("MCP server %r: %s", self.name, self.last_error)
            finally:
                self.client = None
                self._changes = None
            if self._stopped:
                break
            if not self.config.restart:
                self.status = "unavailable"
                return
            self.status = "restarting"
            self.restarts += 1
            if time.monotonic() - started > 30:
                backoff = 0.2  # it ran for a while: a fresh failure, not a crash loop
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
        self.status = "stopped"

    def _client(self) -> Client:
        return Client(
            self._transport(),
            cache=None,  # every listing is fetched, so a changed tool is always seen
            read_timeout_seconds=self.config.timeout,
            message_handler=self._message,
            mode="legacy" if self.config.protocol == "handshake" else "auto",
            client_info=types.Implementation(name="ringfence-gateway", version=__version__),
        )

    def _transport(self) -> Any:
        if self._make_transport is not None:  # tests: an in-process server
            return self._make_transport()
        c = self.config
        if c.command is not None:
            # Secret values and the secret file's key never go to a child process.
            env = (
                {k: v for k, v in os.environ.items() if not is_secret_env(k)}
                if c.inherit_env
                else {}
            )
            env.update(c.env)
            cwd = os.path.join(self.base, c.cwd) if c.cwd else None
            params = StdioServerParameters(command=c.command, args=list(c.args), env=env, cwd=cwd)
            self.lane = Lane()
            return pipe_client(
                params, self.lane, errlog=self._errlog, max_bytes=self.max_message_bytes
            )
        assert c.url is not None
        http = create_mcp_http_client(headers=dict(c.headers))
        return streamable_http_client(c.url, http_client=http)

    async def _message(self, message: Any) -> None:
        if isinstance(message, Exception):
            log.warning("MCP server %r sent something unreadable: %s", self.name, message)
            return
        root = getattr(message, "root", message)
        if isinstance(root, types.ToolListChangedNotification):
            self._tools_changed()

    def _tools_changed(self) -> None:
        """Re-list in a task of its own: the handler re-lists over the same connection, which
        cannot answer while the message that announced the change is still being handled."""
        handler, changes = self._on_tools_changed, self._changes
        if handler is not None and changes is not None:

            async def relist() -> None:
                await handler(self)

            changes.start_soon(relist)

    async def _listen(self, client: Client) -> None:
        """2026-07-28: changes come on a ``subscriptions/listen`` stream, not as notifications."""
        try:
            async with client.listen(tools_list_changed=True) as changes:
                # Events are not replayed: a change between the first listing and this
                # acknowledgement is only seen by listing again.
                self._tools_changed()
                async for _ in changes:
                    self._tools_changed()
        except ListenNotSupportedError:
            return
        except Exception as exc:  # changes are then seen on reconnect only
            log.info("MCP server %r: no tool-change stream (%s)", self.name, _describe(exc))

    def stop(self) -> None:
        """Disconnect for good (the supervisor leaves its loop)."""
        self._stopped = True
        self._broken.set()

    # -- requests ----------------------------------------------------------------------------

    async def connected(self) -> Client:
        """The live client, waiting up to the connect timeout for a (re)connection."""
        deadline = time.monotonic() + self.config.connect_timeout
        while self.client is None:
            if self.status in ("unavailable", "stopped") or time.monotonic() > deadline:
                why = f": {self.last_error}" if self.last_error else ""
                raise UpstreamUnavailable(self.name, f"is unavailable{why}")
            await anyio.sleep(0.02)
        return self.client

    async def request(self, call: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``call`` on the client; a closed connection or a timeout is UpstreamUnavailable."""
        client = await self.connected()
        broken = self._broken  # this connection's: a late failure must not end the next one
        try:
            return await call(client)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._lost(client, broken)  # the supervisor reconnects
                raise UpstreamUnavailable(self.name, self._closed_reason()) from exc
            if exc.code == REQUEST_TIMEOUT:
                raise UpstreamUnavailable(
                    self.name, f"did not answer within {self.config.timeout:g} s", timeout=True
                ) from exc
            raise
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._lost(client, broken)
            raise UpstreamUnavailable(self.name, f"connection failed: {exc}") from exc

    async def call_direct(self, method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """``method`` sent on the connection's direct lane (see :mod:`.pipe`): its result, or
        None when this connection has no lane ready (HTTP, not negotiated yet) — the caller
        then goes through the SDK client.  Failures as :meth:`request` reports them."""
        client = await self.connected()
        lane, version = self.lane, client.protocol_version
        if lane is None or version is None or not lane.ready(version):
            return None
        broken = self._broken
        try:
            return await lane.request(method, params, version=version, timeout=self.config.timeout)
        except (LaneClosed, TimeoutError, LaneError) as exc:
            raise self.lane_failure(exc, client, broken) from None

    def start_direct(
        self, method: str, params: dict[str, Any], answered: Callable[[Any], None]
    ) -> tuple[Callable[[], None], str] | None:
        """:meth:`call_direct` without awaiting: the request is sent now and its outcome
        (the result, or the exception :meth:`call_direct` would raise) goes to ``answered``
        from the lane's reader.  None, and nothing sent, when the lane cannot take it now
        (not connected, restarting, not negotiated): the caller then awaits
        :meth:`call_direct` or :meth:`request`.  Returns what gives the request up and the
        protocol version the result will be shaped for."""
        client, lane = self.client, self.lane
        if client is None or lane is None:
            return None
        version = client.protocol_version
        if version is None or not lane.ready(version):
            return None
        broken = self._broken

        def outcome(result: Any) -> None:
            if isinstance(result, LaneClosed | TimeoutError | LaneError):
                result = self.lane_failure(result, client, broken)
            answered(result)

        try:
            pending = lane.start(
                method, params, version=version, timeout=self.config.timeout, answered=outcome
            )
        except LaneClosed:
            return None  # closed since ready(): call_direct reports it (and reconnects)
        return pending.cancel, version

    def lane_failure(self, exc: Exception, client: Client, broken: anyio.Event) -> Exception:
        """What a failed lane request means to the caller (as :meth:`request` reports it)."""
        if isinstance(exc, LaneClosed):
            self._lost(client, broken)
            return UpstreamUnavailable(self.name, self._closed_reason())
        if isinstance(exc, TimeoutError):
            return UpstreamUnavailable(
                self.name, f"did not answer within {self.config.timeout:g} s", timeout=True
            )
        if isinstance(exc, LaneTooLarge):
            return ResultTooLarge(exc.message)
        if isinstance(exc, LaneError):
            return MCPError(exc.code, exc.message, exc.data)
        return exc

    def _closed_reason(self) -> str:
        if self.config.restart:
            return "closed the connection (crashed?); it is being restarted"
        return "closed the connection (crashed?)"

    def _lost(self, client: Client, broken: anyio.Event) -> None:
        """``client``'s connection failed: stop handing it out at once and wake the supervisor.

        Until the supervisor has left the old connection, :meth:`connected` would otherwise
        keep returning the dead client, failing the calls that follow a crash.
        """
        if self.client is client:
            self.client = None
            self.status = "restarting" if self.config.restart else "unavailable"
        broken.set()


async def collect_pages(
    client: Client, page: Callable[[Client, str | None], Awaitable[Any]], field: str, server: str
) -> list[Any]:
    """Every item of a paginated listing (``field`` of each page), following cursors."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        result = await page(client, cursor)
        items.extend(getattr(result, field))
        cursor = result.next_cursor
        if not cursor:
            return items
    raise UpstreamUnavailable(server, f"listed more than {MAX_PAGES} pages of {field}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "did not connect in time"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
