"""The gateway's stdio wire: newline-delimited JSON-RPC with limits and error replies.

The SDK's ``stdio_server`` is not used for the client side of the gateway because a proxy in
front of an agent needs three things it does not do: a line longer than
``max_message_bytes`` is refused before it is parsed; a line that is not JSON, or not a valid
JSON-RPC message, gets a JSON-RPC error reply (``-32700`` / ``-32600``) instead of being dropped
(a client waiting on that id would hang); and reads and writes go through asyncio pipes, not a
worker thread per line (measured: about 0.4 ms less per call).  Lines are cut as bytes
arrive (:class:`~.framing.LineSplitter`, in the read protocol's callback): a plain
``tools/call`` is decoded there and handed to :class:`~.fastpath.DirectCalls`, which decides
and forwards it before the callback returns; every other line goes, in order, through the
SDK's own parser (``jsonrpc_message_adapter``) to the SDK server, whose answers are
serialised by the SDK (``model_dump_json``).

While serving, file descriptor 0 reads from ``/dev/null`` and 1 writes to stderr, so a stray
``print`` (ours or a library's) can never corrupt the wire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from ringfence.adapters.mcp.fastpath import DirectCalls
from ringfence.adapters.mcp.framing import LineSplitter, leading_id

__all__ = ["INVALID_REQUEST", "PARSE_ERROR", "wire_stdio"]

log = logging.getLogger("ringfence.gateway")
PARSE_ERROR = -32700
MAX_WAITING = 64  # lines waiting for the SDK server before reading pauses
MAX_UNREAD_BYTES = 4 << 20  # answers written but not yet read by the client
_decode = msgspec.json.Decoder().decode
INVALID_REQUEST = -32600


def _claim() -> tuple[int, int]:
    """Private copies of fds 0 and 1 for the wire; 0 -> /dev/null, 1 -> stderr."""
    wire_in = os.dup(0)
    wire_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return wire_in, wire_out


@asynccontextmanager
async def wire_stdio(
    max_bytes: int, *, fds: tuple[int, int] | None = None, direct: DirectCalls | None = None
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """(read, write) streams for ``Server.run`` over stdin/stdout (or the given fds).

    With ``direct``, the tool calls it takes are answered without the SDK server (see
    :mod:`.fastpath`); everything else reaches the server as before.
    """
    wire_in, wire_out = fds if fds is not None else _claim()
    loop = asyncio.get_running_loop()
    in_file = os.fdopen(wire_in, "rb", buffering=0, closefd=fds is None)
    out_file = os.fdopen(wire_out, "wb", buffering=0, closefd=fds is None)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(loop=loop), out_file
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    # Lines the SDK server gets (everything but the tool calls taken directly), in order;
    # None at the end of the input.  Reading pauses while too many wait.
    slow: _Slow = asyncio.Queue()
    reading = _Reading()

    def on_line(line: bytes) -> None:
        # Only a line naming tools/call can be a direct call (one that spells it with JSON
        # escapes takes the SDK's path, which is right, only slower).
        if direct is not None and b"tools/call" in line:
            try:
                raw = _decode(line)
            except msgspec.DecodeError:
                raw = None  # the SDK's parser says what is wrong
            try:
                if direct.take_call(raw, writer):
                    reading.check_output(writer)
                    return
            except Exception:  # never lose a message: the SDK path answers it
                log.exception("direct tool call failed before it was taken")
        reading.put(slow, line)

    def on_oversized(head: bytes) -> None:
        reading.put(slow, _Oversized(head))

    lines = LineSplitter(max_bytes, on_line, on_oversized)
    in_transport, _ = await loop.connect_read_pipe(
        lambda: _LineProtocol(lines, lambda: slow.put_nowait(None)), in_file
    )
    reading.transport = in_transport

    async def reply_error(request_id: Any, code: int, message: str) -> None:
        body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
        await write_line(json.dumps(body).encode() + b"\n")

    async def write_line(data: bytes) -> None:
        writer.write(data)  # one write per frame: frames from several tasks never interleave
        await writer.drain()

    async def read_lines() -> None:
        async with read_send:
            while True:
                item = await slow.get()
                reading.taken(slow)
                if item is None:
                    return
                if isinstance(item, _Oversized):
                    log.warning("refused a message larger than %d bytes", max_bytes)
                    await reply_error(
                        leading_id(item.head),
                        INVALID_REQUEST,
                        f"message larger than {max_bytes} bytes",
                    )
                    continue
                if not item.strip():
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(item, by_name=False)
                except Exception as exc:  # not JSON, or not JSON-RPC: answer, never drop
                    request_id, code, why = _diagnose(item, exc)
                    log.warning("refused a malformed message: %s", why)
                    await reply_error(request_id, code, why)
                    continue
                if direct is not None and direct.take(message, writer):
                    continue
                await read_send.send(SessionMessage(message))

    async def write_lines() -> None:
        async with write_recv:
            async for item in write_recv:
                if direct is not None:
                    direct.sent(item.message)
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                await write_line(data.encode() + b"\n")

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_lines)
            tg.start_soon(write_lines)
            yield read_recv, write_send
            tg.cancel_scope.cancel()
    finally:
        in_transport.close()
        if direct is not None:
            await direct.drain()
        transport.close()


class _Oversized:
    """A line over the limit, in its place in the order: its first bytes, for its id."""

    __slots__ = ("head",)

    def __init__(self, head: bytes) -> None:
        self.head = head


_Slow = asyncio.Queue[bytes | _Oversized | None]


class _LineProtocol(asyncio.Protocol):
    """The client's input, cut into lines (:class:`LineSplitter`) as it arrives."""

    def __init__(self, lines: LineSplitter, ended: Callable[[], None]) -> None:
        self._lines = lines
        self._ended: Callable[[], None] | None = ended

    def data_received(self, data: bytes) -> None:
        self._lines.feed(data)

    def eof_received(self) -> bool | None:
        self._end()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        ended, self._ended = self._ended, None
        if ended is not None:
            self._lines.end()
            ended()


class _Reading:
    """Flow control for the client's input: reading pauses while more than
    :data:`MAX_WAITING` lines wait for the SDK server, or while the answers already written
    pile up unread (:data:`MAX_UNREAD_BYTES`), and resumes once they have gone."""

    def __init__(self) -> None:
        self.transport: asyncio.ReadTransport | None = None
        self._waiting = False  # paused for the queue
        self._unread = False  # paused for the output

    def put(self, queue: _Slow, item: bytes | _Oversized) -> None:
        queue.put_nowait(item)
        if queue.qsize() > MAX_WAITING and not self._waiting:
            self._waiting = True
            self._pause()

    def taken(self, queue: _Slow) -> None:
        if self._waiting and queue.qsize() <= MAX_WAITING // 2:
            self._waiting = False
            self._resume()

    def check_output(self, writer: asyncio.StreamWriter) -> None:
        if self._unread or writer.transport.get_write_buffer_size() <= MAX_UNREAD_BYTES:
            return
        self._unread = True
        self._pause()

        async def drained() -> None:
            try:
                await writer.drain()
            finally:
                self._unread = False
                self._resume()

        _background.add(task := asyncio.get_running_loop().create_task(drained()))
        task.add_done_callback(_background.discard)

    def _pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._waiting or self._unread:
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


_background: set[asyncio.Task[None]] = set()


def _diagnose(line: bytes, exc: Exception) -> tuple[Any, int, str]:
    """(id to answer with, code, message) for a line the SDK could not accept."""
    try:
        value = json.loads(line)
    except ValueError as err:
        return None, PARSE_ERROR, f"parse error: {err}"
    request_id = value.get("id") if isinstance(value, dict) else None
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        request_id = None
    first = str(exc).splitlines()
    detail = first[0] if first else type(exc).__name__
    return request_id, INVALID_REQUEST, f"invalid JSON-RPC message: {detail}"
