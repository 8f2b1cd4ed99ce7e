"""The gateway's stdio wire to an upstream server, with a direct lane for tool calls.

The SDK's :class:`mcp.Client` still speaks MCP to the server: negotiation (``initialize`` or
``server/discover``), listings, notifications, progress, everything.  This transport only
replaces how its messages reach the child process — a subprocess protocol whose output is
cut into lines as it arrives (:class:`~.framing.LineSplitter`), the same as :mod:`.stdio` on
the client side — and adds a :class:`Lane`: the gateway sends a ``tools/call`` it has
admitted straight to the pipe, and the answer is handed to the call's continuation in the
callback that read it (:meth:`Lane.start`), without the SDK session's request machinery (task
groups, memory streams, dispatcher contexts) and without a task or a future of its own.

What the lane does not do it leaves to the SDK: it is used only once the SDK has negotiated
the connection, it sends exactly the request envelope the SDK's own latest request carried
(the 2026-07-28 ``_meta`` stamp: protocol version, client info and capabilities), and every
answer is checked before it is used: the JSON-RPC frame's shape here, the result by the SDK's
types for the negotiated version (``mcp_types.methods.serialize_server_result``), or, for
the usual text answer, by :func:`~.shapes.plain_tool_result`, which a property test holds to
the same output.  Everything that is not a lane answer goes to the SDK client through its
own parser (``jsonrpc_message_adapter``).  Lane requests have string ids (``rf-1``,
``rf-2``, …); the SDK numbers its own, so the two never collide and an answer for anything
else goes to the SDK unchanged.

The child runs in its own session (process group).  On close its stdin is closed, then it
gets ``SIGTERM`` and, if it is still there, ``SIGKILL`` — the whole group, so a server that
started helpers does not leave them behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TextIO, cast

import anyio
import mcp_types as types
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import StdioServerParameters
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage
from mcp_types import methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ringfence.adapters.mcp.framing import LineSplitter, leading_id
from ringfence.adapters.mcp.shapes import plain_tool_result

__all__ = ["ENVELOPE_KEYS", "Lane", "LaneClosed", "LaneError", "LaneTooLarge", "pipe_client"]

log = logging.getLogger("ringfence.gateway")
ENVELOPE_KEYS = (
    types.PROTOCOL_VERSION_META_KEY,
    types.CLIENT_INFO_META_KEY,
    types.CLIENT_CAPABILITIES_META_KEY,
)
STOP_GRACE_S = 2.0  # after closing stdin, and again after SIGTERM
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class LaneClosed(Exception):
    """The connection ended (the server exited or closed its output) before the answer."""


class LaneError(Exception):
    """The server answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


Answered = Callable[[Any], None]
"""What a lane request's answer is handed to: the result (a dict, shaped by the SDK's types
for the connection's version) or the exception the request failed with."""


class LaneTooLarge(LaneError):
    """The server's answer was larger than the lane reads (it was dropped unread)."""


class Lane:
    """Requests the gateway writes to one upstream connection itself, beside the SDK's."""

    def __init__(self) -> None:
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._envelope: dict[str, Any] | None = None
        self._closed = False

    def open(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def learn(self, message: Any) -> None:
        """Keep the envelope of the SDK's latest request (modern era: its ``_meta`` stamp)."""
        root = getattr(message, "root", message)
        if not isinstance(root, types.JSONRPCRequest) or root.method in (
            "initialize",
            "server/discover",
        ):
            return
        meta = (root.params or {}).get("_meta")
        if isinstance(meta, dict) and types.PROTOCOL_VERSION_META_KEY in meta:
            self._envelope = {k: meta[k] for k in ENVELOPE_KEYS if k in meta}

    @property
    def waiting(self) -> bool:
        """Whether any lane request waits for its answer."""
        return bool(self._pending)

    def ready(self, version: str | None) -> bool:
        """Whether a request for a connection negotiated at ``version`` can take the lane."""
        if self._writer is None or self._closed or version is None:
            return False
        if version in MODERN_PROTOCOL_VERSIONS:
            envelope = self._envelope
            return envelope is not None and envelope.get(types.PROTOCOL_VERSION_META_KEY) == version
        return True

    def start(
        self,
        method: str,
        params: dict[str, Any],
        *,
        version: str,
        timeout: float,
        answered: Answered,
    ) -> _Pending:
        """Send ``method`` now; its outcome goes to ``answered``, exactly once, from the
        reader's callback (no task, no future: the caller's continuation runs as soon as the
        answer is read).  The outcome is the result as :meth:`request` returns it, or the
        exception it raises.  LaneClosed at once if the lane is not open.  The returned
        handle's ``cancel()`` gives the request up (the server is told; ``answered`` is not
        called)."""
        writer = self._writer
        if writer is None or self._closed:
            raise LaneClosed("not connected")
        envelope = self._envelope
        if envelope is not None and version in MODERN_PROTOCOL_VERSIONS:
            meta = params.get("_meta")
            params = {**params, "_meta": envelope if meta is None else {**meta, **envelope}}
        request_id = f"rf-{next(self._ids)}"
        frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        pending = _Pending(self, request_id, method, version, answered)
        self._pending[request_id] = pending
        writer.write(_encode(frame) + b"\n")
        pending.timer = asyncio.get_running_loop().call_later(timeout, pending.expire)
        return pending

    async def request(
        self, method: str, params: dict[str, Any], *, version: str, timeout: float
    ) -> dict[str, Any]:
        """Send ``method`` and return its result as the SDK's types put it on the wire for
        ``version`` (checked, ``None`` fields and fields outside that version dropped).

        LaneClosed if the connection ends first, TimeoutError after ``timeout`` seconds (the
        server is then told the request is cancelled), LaneError for an error answer,
        ValueError for an answer that is not a valid result.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def answered(outcome: Any) -> None:
            if future.done():
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        pending = self.start(method, params, version=version, timeout=timeout, answered=answered)
        writer = self._writer
        try:
            if writer is not None:
                await writer.drain()
            result: dict[str, Any] = await future
        except BaseException:
            pending.cancel()  # nothing to do once it was answered
            raise
        return result

    def _send_cancel(self, request_id: str, version: str) -> None:
        """Tell the server a request was given up (timeout, or the caller was cancelled)."""
        params: dict[str, Any] = {"requestId": request_id, "reason": "cancelled by the gateway"}
        if version in MODERN_PROTOCOL_VERSIONS and self._envelope is not None:
            params["_meta"] = dict(self._envelope)
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}
        with contextlib.suppress(Exception):
            if self._writer is not None and not self._closed:
                self._writer.write(_encode(note) + b"\n")

    def answer(self, message: dict[str, Any]) -> bool:
        """Hand ``message`` (a decoded JSON object) to the lane request it answers; False
        if it answers none (it then goes to the SDK)."""
        if not self._pending:
            return False
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, str) else None
        if pending is None:
            return False
        result = message.get("result")
        error = message.get("error")
        if message.get("jsonrpc") == "2.0" and ("result" in message) != ("error" in message):
            if isinstance(result, dict):
                pending.finish(pending.shape(result))
                return True
            if isinstance(error, dict):
                code, text = error.get("code"), error.get("message")
                if isinstance(code, int) and not isinstance(code, bool) and isinstance(text, str):
                    pending.finish(LaneError(code, text, error.get("data")))
                    return True
        pending.finish(ValueError("not a valid JSON-RPC response"))
        return True

    def refuse(self, request_id: str, why: str) -> bool:
        """Fail lane request ``request_id`` with an internal error (its answer could not be
        read); False if no such request is waiting."""
        pending = self._pending.get(request_id)
        if pending is None:
            return False
        pending.finish(LaneTooLarge(types.INTERNAL_ERROR, why))
        return True

    def close(self) -> None:
        """End the lane: every waiting request fails with LaneClosed."""
        self._closed = True
        self._writer = None
        for pending in list(self._pending.values()):
            pending.finish(LaneClosed("the server closed the connection"))
        self._pending.clear()


class _Pending:
    """One lane request waiting for its answer (see :meth:`Lane.start`)."""

    __slots__ = ("answered", "lane", "method", "request_id", "timer", "version")

    def __init__(
        self, lane: Lane, request_id: str, method: str, version: str, answered: Answered
    ) -> None:
        self.lane = lane
        self.request_id = request_id
        self.method = method
        self.version = version
        self.answered: Answered | None = answered
        self.timer: asyncio.TimerHandle | None = None

    def shape(self, result: dict[str, Any]) -> Any:
        """The result as the SDK's types put it on the wire for this connection's version,
        or the ValueError (pydantic's) saying why it is not a valid result."""
        if self.method == "tools/call":
            plain = plain_tool_result(result, self.version)
            if plain is not None:
                return plain
        try:
            shaped: dict[str, Any] = methods.serialize_server_result(
                self.method, self.version, result
            )
        except KeyError:  # outside the core vocabulary: the server's shape
            return dict(result)
        except ValueError as exc:
            return exc
        return shaped

    def finish(self, outcome: Any) -> None:
        """Hand the outcome over (once) and forget the request."""
        answered = self.answered
        if answered is None:
            return
        self._forget()
        answered(outcome)

    def expire(self) -> None:
        """The timeout: the server is told, the caller gets TimeoutError."""
        if self.answered is not None:
            self.lane._send_cancel(self.request_id, self.version)
            self.finish(TimeoutError())

    def cancel(self) -> None:
        """The caller gave up: the server is told; nothing is handed over."""
        if self.answered is None:
            return
        self._forget()
        self.lane._send_cancel(self.request_id, self.version)

    def _forget(self) -> None:
        self.answered = None
        if self.timer is not None:
            self.timer.cancel()
        self.lane._pending.pop(self.request_id, None)


@asynccontextmanager
async def pipe_client(
    params: StdioServerParameters,
    lane: Lane,
    *,
    errlog: TextIO,
    max_bytes: int,
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """Start the server and yield the (read, write) streams an SDK ``Client`` takes."""
    env = get_default_environment() | (params.env or {})
    try:
        err_fd: Any = errlog.fileno()
    except (AttributeError, OSError, ValueError):
        err_fd = asyncio.subprocess.PIPE  # a StringIO in tests: copied below
    loop = asyncio.get_running_loop()
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    # What the SDK client gets (everything but the lane's answers), in order; None at the
    # end of the server's output.
    slow: asyncio.Queue[bytes | Exception | None] = asyncio.Queue()

    def on_line(line: bytes) -> None:
        if not lane.waiting:  # nothing on the lane to answer: the SDK client's message
            slow.put_nowait(line)
            return
        try:
            raw = _decode(line)
        except msgspec.DecodeError:
            raw = None  # the SDK's parser below says what is wrong
        try:
            if isinstance(raw, dict) and lane.answer(raw):
                return
        except Exception:  # a failing continuation must not stop the reader
            log.exception("handing a lane answer over failed")
            return
        slow.put_nowait(line)

    def on_oversized(head: bytes) -> None:
        answered = leading_id(head)
        log.warning("MCP server sent a message larger than %d bytes", max_bytes)
        if isinstance(answered, str) and lane.refuse(
            answered, f"the server's answer is larger than {max_bytes} bytes"
        ):
            return  # that lane request fails now instead of timing out
        slow.put_nowait(ValueError(f"message larger than {max_bytes} bytes"))

    def on_end() -> None:
        lane.close()  # the server's output ended: waiting lane requests fail now
        slow.put_nowait(None)

    lines = LineSplitter(max_bytes, on_line, on_oversized)
    transport, child = await loop.subprocess_exec(
        lambda: _Child(loop, lines, on_end, errlog),
        params.command,
        *params.args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=err_fd,
        env=env,
        cwd=params.cwd,
        start_new_session=True,
    )
    stdin_pipe = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
    stdin = asyncio.StreamWriter(stdin_pipe, child, None, loop)
    lane.open(stdin)

    async def read_lines() -> None:
        async with read_send:
            while (item := await slow.get()) is not None:
                if isinstance(item, Exception):
                    await read_send.send(item)
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(item, by_name=False)
                except ValueError as exc:
                    await read_send.send(exc)  # the SDK session logs it, as with its own transport
                    continue
                await read_send.send(SessionMessage(message))

    async def write_lines() -> None:
        async with write_recv:
            async for item in write_recv:
                lane.learn(item.message)
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                try:
                    stdin.write(data.encode() + b"\n")
                    await stdin.drain()
                except (ConnectionError, OSError):
                    await read_send.aclose()  # the session sees the connection end
                    return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_lines)
            tg.start_soon(write_lines)
            try:
                yield read_recv, write_send
            finally:
                lane.close()
                tg.cancel_scope.cancel()
                for stream in (read_recv, write_send, read_send, write_recv):
                    stream.close()  # as the SDK's own transport does; idempotent
    finally:
        lane.close()
        with anyio.CancelScope(shield=True):
            await _stop(transport, child)


class _Child(asyncio.streams.FlowControlMixin, asyncio.SubprocessProtocol):
    """The server process: its output cut into lines as it arrives (:class:`LineSplitter`),
    its stderr copied to the error log, flow control for writes to its stdin."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        lines: LineSplitter,
        ended: Callable[[], None],
        errlog: TextIO,
    ) -> None:
        super().__init__(loop=loop)
        self._lines = lines
        self._ended: Callable[[], None] | None = ended
        self._errlog = errlog
        self.exited: asyncio.Future[int] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._lines.feed(data)
        else:
            self._errlog.write(data.decode(errors="replace"))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0:
            self.connection_lost(exc)  # writers waiting in drain() are released
        elif fd == 1:
            self._end()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(0)

    def _end(self) -> None:
        ended, self._ended = self._ended, None
        if ended is not None:
            self._lines.end()
            ended()


async def _stop(transport: asyncio.SubprocessTransport, child: _Child) -> None:
    """Close the server's stdin, then SIGTERM and SIGKILL its process group as needed."""
    pid = transport.get_pid()
    stdin = transport.get_pipe_transport(0)
    if stdin is not None:
        with contextlib.suppress(Exception):
            stdin.close()
    try:
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                _signal_group(pid, sig)
            try:
                await asyncio.wait_for(asyncio.shield(child.exited), STOP_GRACE_S)
            except TimeoutError:
                continue
            return
        log.warning("MCP server process %d survived SIGKILL; abandoning it", pid)
    finally:
        transport.close()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
