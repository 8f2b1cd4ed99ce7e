"""The gateway's stdio wire to an upstream server, with a direct lane for tool calls.

The SDK's :class:`mcp.Client` still speaks MCP to the server: negotiation (``initialize`` or
``server/discover``), listings, notifications, progress, everything.  This transport only
replaces how its messages reach the child process — asyncio pipes and newline framing, the
same as :mod:`.stdio` on the client side — and adds a :class:`Lane`: the gateway sends a
``tools/call`` it has admitted straight to the pipe and the reader hands the answer back to
the waiting call, without the SDK session's request machinery (task groups, memory streams,
dispatcher contexts).  That machinery costs the gateway several hundred microseconds of CPU
per call; the lane costs a few (measured in ``bench/gateway.py``).

What the lane does not do it leaves to the SDK: it is used only once the SDK has negotiated
the connection, it sends exactly the request envelope the SDK's own latest request carried
(the 2026-07-28 ``_meta`` stamp: protocol version, client info and capabilities), and every
answer is checked with the SDK's own types (``jsonrpc_message_adapter`` for the frame,
``mcp_types.methods.validate_server_result`` for the result of the negotiated version).
Lane requests have string ids (``rf-1``, ``rf-2``, …); the SDK numbers its own, so the two
never collide and an answer for anything else goes to the SDK unchanged.

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio
import mcp_types as types
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import StdioServerParameters
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage
from mcp_types import methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ringfence.adapters.mcp.framing import leading_id, skip_line

__all__ = ["ENVELOPE_KEYS", "Lane", "LaneClosed", "LaneError", "pipe_client"]

log = logging.getLogger("ringfence.gateway")
ENVELOPE_KEYS = (
    types.PROTOCOL_VERSION_META_KEY,
    types.CLIENT_INFO_META_KEY,
    types.CLIENT_CAPABILITIES_META_KEY,
)
STOP_GRACE_S = 2.0  # after closing stdin, and again after SIGTERM
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class LaneClosed(Exception):
    """The connection ended (the server exited or closed its output) before the answer."""


class LaneError(Exception):
    """The server answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class Lane:
    """Requests the gateway writes to one upstream connection itself, beside the SDK's."""

    def __init__(self) -> None:
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
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

    def ready(self, version: str | None) -> bool:
        """Whether a request for a connection negotiated at ``version`` can take the lane."""
        if self._writer is None or self._closed or version is None:
            return False
        if version in MODERN_PROTOCOL_VERSIONS:
            envelope = self._envelope
            return envelope is not None and envelope.get(types.PROTOCOL_VERSION_META_KEY) == version
        return True

    async def request(
        self, method: str, params: dict[str, Any], *, version: str, timeout: float
    ) -> dict[str, Any]:
        """Send ``method`` and return its result as the SDK's types put it on the wire for
        ``version`` (checked, ``None`` fields and fields outside that version dropped).

        LaneClosed if the connection ends first, TimeoutError after ``timeout`` seconds (the
        server is then told the request is cancelled), LaneError for an error answer,
        ValueError for an answer that is not a valid result.
        """
        writer = self._writer
        if writer is None or self._closed:
            raise LaneClosed("not connected")
        if version in MODERN_PROTOCOL_VERSIONS and self._envelope is not None:
            params = {**params, "_meta": {**params.get("_meta", {}), **self._envelope}}
        request_id = f"rf-{next(self._ids)}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[request_id] = future
        # One timer per request (cheaper than asyncio.timeout's context manager): it fails
        # the future, and the except below tells the server.
        timer = loop.call_later(timeout, _expire, future)
        try:
            frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            writer.write(_encode(frame) + b"\n")
            await writer.drain()
            result = await future
        except BaseException:
            # Awaiting the future and being cancelled cancels the future too: only an
            # answer (or the connection's end) means there is nothing left to cancel.
            answered = (
                future.done()
                and not future.cancelled()
                and not isinstance(future.exception(), TimeoutError)
            )
            if not answered and not self._closed:
                self._cancel(request_id, version)
            raise
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)
        try:
            shaped: dict[str, Any] = methods.serialize_server_result(method, version, result)
        except KeyError:  # outside the core vocabulary: the server's shape
            return dict(result)
        return shaped

    def _cancel(self, request_id: str, version: str) -> None:
        """Tell the server a request was given up (timeout, or the caller was cancelled)."""
        params: dict[str, Any] = {"requestId": request_id, "reason": "cancelled by the gateway"}
        if version in MODERN_PROTOCOL_VERSIONS and self._envelope is not None:
            params["_meta"] = dict(self._envelope)
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.write(_encode(note) + b"\n")

    def answer(self, message: dict[str, Any]) -> bool:
        """Hand ``message`` (a decoded JSON object) to the lane request it answers; False
        if it answers none (it then goes to the SDK)."""
        if not self._pending:
            return False
        request_id = message.get("id")
        future = self._pending.get(request_id) if isinstance(request_id, str) else None
        if future is None or future.done():
            return False
        result = message.get("result")
        error = message.get("error")
        if message.get("jsonrpc") == "2.0" and ("result" in message) != ("error" in message):
            if isinstance(result, dict):
                future.set_result(result)
                return True
            if isinstance(error, dict):
                code, text = error.get("code"), error.get("message")
                if isinstance(code, int) and not isinstance(code, bool) and isinstance(text, str):
                    future.set_exception(LaneError(code, text, error.get("data")))
                    return True
        future.set_exception(ValueError("not a valid JSON-RPC response"))
        return True

    def refuse(self, request_id: str, why: str) -> bool:
        """Fail lane request ``request_id`` with an internal error (its answer could not be
        read); False if no such request is waiting."""
        future = self._pending.get(request_id)
        if future is None or future.done():
            return False
        future.set_exception(LaneError(types.INTERNAL_ERROR, why))
        return True

    def close(self) -> None:
        """End the lane: every waiting request fails with LaneClosed."""
        self._closed = True
        self._writer = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LaneClosed("the server closed the connection"))
        self._pending.clear()


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
    proc = await asyncio.create_subprocess_exec(
        params.command,
        *params.args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=err_fd,
        env=env,
        cwd=params.cwd,
        start_new_session=True,
        limit=max_bytes + 1,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    lane.open(stdin)

    async def read_lines() -> None:
        try:
            async with read_send:
                while await _read_one():
                    pass
        finally:
            lane.close()  # the server's output ended: waiting lane requests fail now

    async def _read_one() -> bool:
        """Read and deliver one message; False at the end of the server's output."""
        try:
            line = await stdout.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                await _deliver(exc.partial)
            return False
        except asyncio.LimitOverrunError:
            answered = leading_id(await skip_line(stdout))
            log.warning("MCP server sent a message larger than %d bytes", max_bytes)
            if isinstance(answered, str) and lane.refuse(
                answered, f"the server's answer is larger than {max_bytes} bytes"
            ):
                return True  # that lane request fails now instead of timing out
            await read_send.send(ValueError(f"message larger than {max_bytes} bytes"))
            return True
        except (ConnectionError, OSError):
            return False
        if line.strip():
            await _deliver(line)
        return True

    async def _deliver(line: bytes) -> None:
        try:
            raw = _decode(line)
        except msgspec.DecodeError:
            raw = None  # the SDK's parser below says what is wrong
        if isinstance(raw, dict) and lane.answer(raw):
            return
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValueError as exc:
            await read_send.send(exc)  # the SDK session logs it, as with its own transport
            return
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

    async def copy_stderr() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            errlog.write(chunk.decode(errors="replace"))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_lines)
            tg.start_soon(write_lines)
            if proc.stderr is not None:
                tg.start_soon(copy_stderr)
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
            await _stop(proc)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Close the server's stdin, then SIGTERM and SIGKILL its process group as needed."""
    if proc.stdin is not None:
        with contextlib.suppress(Exception):
            proc.stdin.close()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            _signal_group(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            continue
        return
    log.warning("MCP server process %d survived SIGKILL; abandoning it", proc.pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
