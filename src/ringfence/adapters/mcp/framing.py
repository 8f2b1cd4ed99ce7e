"""Newline-delimited JSON-RPC framing shared by both sides of the gateway's stdio wire.

A line longer than the limit is never parsed: it is skipped to its newline, and only its
first bytes are kept, to find the id of the request or response it was (when the id comes
first, as every SDK writes it) so that the right caller gets an error instead of waiting.
"""

from __future__ import annotations

import asyncio
import re

__all__ = ["leading_id", "skip_line"]


async def skip_line(reader: asyncio.StreamReader) -> bytes:
    """Drop the rest of an oversized line, up to and including its newline; its first bytes."""
    head = b""
    while True:
        try:
            chunk = await reader.readuntil(b"\n")
            return head or chunk[:256]
        except asyncio.LimitOverrunError as exc:
            chunk = await reader.readexactly(exc.consumed)
            head = head or chunk[:256]
        except asyncio.IncompleteReadError:
            return head


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
