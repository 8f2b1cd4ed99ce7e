"""The one tools/call result shape the gateway recognises without pydantic (see
:func:`plain_tool_result`)."""

from __future__ import annotations

from typing import Any

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

__all__ = ["plain_tool_result"]


_RESULT_KEYS = frozenset(("content", "isError", "resultType", "structuredContent", "_meta"))
_SDK_META = "io.modelcontextprotocol/"


def plain_tool_result(result: Any, version: str) -> dict[str, Any] | None:
    """``result`` as ``mcp_types.methods.serialize_server_result("tools/call", version, …)``
    returns it, for the one shape nearly every tool answers with — text blocks, an error
    flag, structured content — or None for anything else (the SDK's types then decide).

    Pydantic validation of the whole result union is the dearest step left on the path of
    an answer; this is not a second schema: it recognises only a shape the SDK's types are
    known to pass through unchanged, and ``tests/unit/adapters/mcp/test_plain_results.py``
    checks it against the SDK for every protocol version on generated results.  The SDK's
    own ``_meta`` keys (its serverInfo stamp) are dropped: the gateway never passes the
    upstream's protocol metadata on (see :meth:`.Gateway._record`).
    """
    if type(result) is not dict or not result.keys() <= _RESULT_KEYS:
        return None
    content = result.get("content")
    if type(content) is not list:
        return None
    blocks = []
    for block in content:
        if type(block) is not dict or len(block) != 2 or block.get("type") != "text":
            return None
        text = block.get("text")
        if type(text) is not str:
            return None
        blocks.append({"text": text, "type": "text"})
    out: dict[str, Any] = {"content": blocks}
    if "isError" in result:
        if type(result["isError"]) is not bool:
            return None
        out["isError"] = result["isError"]
    if "structuredContent" in result:
        if type(result["structuredContent"]) is not dict:
            return None
        out["structuredContent"] = result["structuredContent"]
    meta = result.get("_meta")
    if meta is not None and (
        type(meta) is not dict
        or not meta
        or not all(type(k) is str and k.startswith(_SDK_META) for k in meta)
    ):
        return None
    kind = result.get("resultType")
    if version in MODERN_PROTOCOL_VERSIONS:
        if kind != "complete":
            return None
        out["resultType"] = kind
    elif version not in HANDSHAKE_PROTOCOL_VERSIONS or (kind is not None and kind != "complete"):
        return None
    return out
