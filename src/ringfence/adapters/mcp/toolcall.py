"""A tool call on its way through the gateway, and what of its result goes where.

:class:`ToolCall` is an admitted call (see ``Gateway.begin_call``); :func:`model_text` is what
of its result the session takes in; :func:`withheld_result` and :class:`Withheld` are the
answer for a call whose result the gateway does not pass on.
"""

from __future__ import annotations

from typing import Any

from mcp.shared.dispatcher import ProgressFnT as Progress

from ringfence.adapters.mcp.catalog import ToolEntry
from ringfence.adapters.mcp.results import META_KEY
from ringfence.core.action import Action
from ringfence.core.decision import Decision

__all__ = ["ToolCall", "Withheld", "model_text", "withheld_result"]

_MEDIA = ("image", "audio")


def model_text(dump: dict[str, Any]) -> list[Any]:
    """What of a ``CallToolResult`` (as JSON) the session takes in: each content block
    without its ``type``, the structured content and the result's own ``_meta`` — the
    values a model can be shown, not the protocol's envelope (``content``, ``type``,
    ``text``, ``isError``), whose fixed words carry nothing to scan or trace.  An image's or
    audio clip's ``data`` reaches the model as media, not text, and is left out (as the
    tripwire scan leaves it out of a whole result)."""
    out: list[Any] = []
    for block in dump.get("content") or ():
        if isinstance(block, dict):
            media = block.get("type") in _MEDIA
            out.extend(v for k, v in block.items() if k != "type" and not (media and k == "data"))
        else:
            out.append(block)
    for key in ("structuredContent", "_meta"):
        if key in dump:
            out.append(dump[key])
    return out


def withheld_result(decision: Decision, error: Exception) -> dict[str, Any]:
    """The result a client gets for a call whose result the gateway does not pass on."""
    return {
        "content": [{"type": "text", "text": f"Ringfence withheld the result: {error}"}],
        "isError": True,
        "_meta": {META_KEY: {"decision_id": decision.decision_id, "effect": "allow"}},
    }


class Withheld(Exception):
    """Raised instead of a failure whose answer is a result, not an error (see
    :meth:`Gateway.call_failed`): ``result`` is what the client gets."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("result withheld")
        self.result = result


class ToolCall:
    """An admitted tool call on its way to the upstream (see :meth:`Gateway.begin_call`)."""

    __slots__ = ("action", "decision", "entry", "progress", "send", "shaped_for", "started")

    def __init__(
        self,
        entry: ToolEntry,
        action: Action,
        decision: Decision,
        started: int,
        send: dict[str, Any],
        progress: Progress | None,
    ) -> None:
        self.entry = entry
        self.action = action
        self.decision = decision
        self.started = started
        self.send = send  # the arguments as the upstream gets them (secrets put in)
        self.progress = progress
        self.shaped_for: str | None = None  # the protocol version the result is shaped for

    @property
    def params(self) -> dict[str, Any]:
        """``tools/call`` params for the upstream."""
        return {"name": self.entry.tool.name, "arguments": self.send}
