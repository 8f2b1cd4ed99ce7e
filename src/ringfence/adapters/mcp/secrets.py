"""The gateway's side of the secret broker: what a call's handles are checked against, and
secrets taken out of what comes back (results, errors, progress messages).

The broker (:mod:`ringfence.runtime.broker`) does the work; these helpers only translate
between it and MCP types, so that :mod:`.gateway` stays a request path.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT as Progress

from ringfence.adapters.mcp.catalog import ToolEntry
from ringfence.adapters.mcp.config import SEPARATOR
from ringfence.core.action import Action, ActionKind
from ringfence.core.decision import Decision
from ringfence.core.policy.engine import Policy
from ringfence.errors import SecretError
from ringfence.runtime.broker import SECRET_RULE, SecretBroker, destinations

__all__ = [
    "REDACTED_KEY",
    "WITHHELD",
    "redact_result",
    "redacting",
    "scrub_error",
    "secret_refused_result",
    "secret_scope",
]

log = logging.getLogger("ringfence.gateway")
REDACTED_KEY = "io.ringfence/redacted"  # result metadata: what was redacted (kinds, pointers)
WITHHELD = "Ringfence withheld the result: it held a secret that could not be redacted"
META_KEY = "io.ringfence/decision"
R = TypeVar("R", types.CallToolResult, types.ReadResourceResult, types.GetPromptResult)


def secret_scope(
    policy: Policy, entry: ToolEntry, action: Action
) -> tuple[list[str], Any, frozenset[str]]:
    """(tools, arguments, destination hosts) a call's secret handles are checked against.

    A meta tool's call reaches the tool it runs too: both must be granted the secret, and
    the destinations of both count.
    """
    tools = [entry.exposed]
    hosts = destinations(policy, action)
    spec = entry.config.proxies if entry.config else None
    if spec is not None:
        args = action.args
        inner = args.get(spec.tool)
        server = args.get(spec.server, entry.server) if spec.server else entry.server
        inner_args = args.get(spec.arguments, {}) if spec.arguments else {}
        if isinstance(inner, str) and isinstance(server, str):
            exposed = f"{server}{SEPARATOR}{inner}"
            tools.append(exposed)
            if isinstance(inner_args, dict):
                inner_action = Action(kind=ActionKind.TOOL_CALL, tool=exposed, args=inner_args)
                hosts |= destinations(policy, inner_action)
    return tools, action.args, hosts


def redacting(broker: SecretBroker, inner: Progress) -> Progress:
    """``inner`` with secrets redacted from the progress messages it relays."""

    async def relay(progress: float, total: float | None, message: str | None) -> None:
        await inner(progress, total, broker.redact_text(message) if message else message)

    return relay


def scrub_error(
    broker: SecretBroker, message: str, data: dict[str, Any] | None
) -> tuple[str, dict[str, Any] | None]:
    """A JSON-RPC error's message and data with secrets redacted."""
    return broker.redact_text(message), (broker.redact(data).value if data is not None else None)


def redact_result(
    broker: SecretBroker, kind: type[R], dump: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any], bool]:
    """(dump, meta, found): ``dump`` (a ``kind`` as JSON) with secrets redacted and what was
    redacted named in its ``_meta`` (``meta``: that ``_meta``).

    The dump is None when it is no longer a valid ``kind`` once redacted: the caller
    withholds the result.
    """
    redaction = broker.redact(dump)
    if not redaction:
        return dump, {}, False
    meta = dict(redaction.value.get("_meta") or {})
    meta[REDACTED_KEY] = [f.to_dict() for f in redaction.findings[:100]]
    redacted = {**redaction.value, "_meta": meta}
    try:
        kind.model_validate(redacted, by_name=False)
    except ValueError:
        log.warning("a result held a secret and could not be redacted in place; withheld")
        return None, {REDACTED_KEY: meta[REDACTED_KEY]}, True
    return redacted, meta, True


def withheld_result(meta: dict[str, Any]) -> types.CallToolResult:
    """The tool result sent instead of one that could not be redacted."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=WITHHELD)], is_error=True, _meta=meta
    )


def secret_refused_result(decision: Decision, error: SecretError) -> types.CallToolResult:
    """What the client gets when a secret could not be substituted into an allowed call."""
    return types.CallToolResult(
        content=[
            types.TextContent(
                type="text",
                text=f"Ringfence did not run this call: {error.code}: {error.message} "
                f"(decision {decision.decision_id})",
            )
        ],
        is_error=True,
        _meta={
            META_KEY: {
                "decision_id": decision.decision_id,
                "effect": "deny",
                "rules": [SECRET_RULE],
                "reasons": [f"{error.code}: {error.message}"],
            }
        },
    )
