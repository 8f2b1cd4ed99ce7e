"""Newline-delimited JSON-RPC framing shared by both sides of the gateway's stdio wire.

A line longer than the limit is never parsed: it is skipped to its newline, and only its
first bytes are kept, to find the id of the request or response it was (when the id comes
first, as every SDK writes it) so that the right caller gets an error instead of waiting.

:class:`LineSplitter` cuts lines out of the bytes an event loop's protocol callback
receives and hands each over at once, in that callback: a tool call is decided and sent on
without waiting for a reader task to be scheduled (one loop iteration fewer per message than
``StreamReader.readuntil``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["HEAD_BYTES", "LineSplitter", "leading_id"]

HEAD_BYTES = 256  # kept of an oversized line, to find its id


class LineSplitter:
    """Bytes in, whole lines out: ``line(bytes)`` for each line (with its newline) of at
    most ``max_bytes`` bytes before the newline, ``oversized(head)`` for each longer one
    (its first :data:`HEAD_BYTES` bytes; the rest is dropped as it arrives, never held)."""

    __slots__ = ("_buf", "_head", "_line", "_max", "_oversized")

    def __init__(
        self, max_bytes: int, line: Callable[[bytes], None], oversized: Callable[[bytes], None]
    ) -> None:
        self._max = max_bytes
        self._line = line
        self._oversized = oversized
        self._buf = bytearray()
        self._head: bytes | None = None  # of the oversized line being dropped

    def feed(self, data: bytes) -> None:
        buf = self._buf
        if not buf and self._head is None:
            end = data.find(b"\n")
            if end == len(data) - 1 and end <= self._max:  # the usual case: one whole line
                self._line(data)
                return
        buf += data
        start = 0
        while (nl := buf.find(b"\n", start)) >= 0:
            if self._head is not None:
                head, self._head = self._head, None
                self._oversized(head)
            elif nl - start > self._max:
                self._oversized(bytes(buf[start : start + HEAD_BYTES]))
            else:
                self._line(bytes(buf[start : nl + 1]))
            start = nl + 1
        if start:
            del buf[:start]
        if self._head is not None:
            buf.clear()
        elif len(buf) > self._max:
            self._head = bytes(buf[:HEAD_BYTES])
            buf.clear()

    def end(self) -> None:
        """The stream ended: a last line without its newline is handed over too."""
        head, tail = self._head, bytes(self._buf)
        self._head = None
        self._buf.clear()
        if head is not None:
            self._oversized(head)
        elif tail.strip():
            self._line(tail)


# The id of a message too large to parse, when it comes first (after "jsonrpc"), as every
# SDK writes it; otherwise the reply's id is null.  Never guessed from deeper in the text.
_LEADING_ID = re.compile(
    rb'^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,128}")\s*,'
)


def leading_id(head: bytes) -> int | str | None:
    m = _LEADING_ID.match(head)
    if m is None:
        return None
    raw = m[1].decode()
    return raw[1:-1] if raw.startswith('"') else int(raw)
