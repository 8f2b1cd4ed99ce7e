"""What the gateway hands back to a client: JSON-RPC errors, deny results, and their codes.

The gateway's request path (:mod:`.gateway`, :mod:`.requests`) decides; this module only shapes
the answer.  What reaches the client:

- a deny (policy, quarantine, approval not given) is a ``CallToolResult`` with ``isError`` and
  a text naming the reason and the decision id, so the agent can adapt; the upstream server
  never sees the call;
- a request that is malformed for the tool (unknown name, arguments the schema refuses,
  arguments too big or deep) is a JSON-RPC error ``-32602`` whose data carries the decision id;
- an upstream that crashed, hung or is restarting is a JSON-RPC error (``-32001`` on timeout,
  ``-32603`` otherwise) naming the server;
- a resources/read or prompts/get the policy refused is a JSON-RPC error ``-32003``, and a
  resources/read of a URI no server offers is ``-32002``.

The refusals the gateway makes itself, before the policy is asked, are recorded under the
pseudo-rules ``ringfence:unknown-tool``, ``ringfence:quarantine``, ``ringfence:upstream-schema``
and ``ringfence:input``.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp import MCPError

from ringfence.adapters.mcp.upstream import UpstreamUnavailable
from ringfence.core.decision import Decision, Effect
from ringfence.runtime.guard import APPROVAL_RULE, IDENTITY_RULE

__all__ = [
    "CREDENTIAL_REFUSED",
    "FORBIDDEN",
    "INPUT_RULE",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "META_KEY",
    "QUARANTINE_RULE",
    "REQUEST_TIMEOUT",
    "RESOURCE_NOT_FOUND",
    "UNKNOWN_TOOL_RULE",
    "UPSTREAM_SCHEMA_RULE",
    "GatewayError",
    "ToolError",
    "complete_result",
    "credential_error",
    "credential_refusal",
    "denied_result",
    "denied_text",
    "lane_result",
    "rpc_error",
    "upstream_error",
    "wire",
]

INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REQUEST_TIMEOUT = -32001
RESOURCE_NOT_FOUND = -32002
FORBIDDEN = -32003  # a resources/read or prompts/get the policy refused
CREDENTIAL_REFUSED = -32004
"""The JSON-RPC error code of a request refused for its credential (HTTP status 401)."""
# A credential that verifies but does not cover the request is a denial like a policy's (a
# result an agent can adapt to); any other credential failure is this error.
_SCOPE_CODES = frozenset(
    {
        "credential.tool_not_in_scope",
        "credential.resource_not_in_scope",
        "credential.budget_exhausted",
    }
)
UNKNOWN_TOOL_RULE = "ringfence:unknown-tool"
QUARANTINE_RULE = "ringfence:quarantine"
UPSTREAM_SCHEMA_RULE = "ringfence:upstream-schema"
INPUT_RULE = "ringfence:input"
META_KEY = "io.ringfence/decision"


class GatewayError(Exception):
    """A JSON-RPC error for the client: code, message and data (decision id and rule)."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class ToolError(Exception):
    """A result with isError set, recorded as an error outcome."""


def rpc_error(code: int, message: str, decision: Decision) -> GatewayError:
    """A JSON-RPC error for a request the gateway refused, with the decision id and rules."""
    return GatewayError(
        code, message, {"decision_id": decision.decision_id, "rules": list(decision.rules)}
    )


def credential_error(reason: str, code: str, decision: Decision) -> GatewayError:
    """The ``-32004`` error for a request refused for its credential: the coded reason,
    the decision id and rule."""
    return GatewayError(
        CREDENTIAL_REFUSED,
        f"{reason} (decision {decision.decision_id})",
        {"code": code, "decision_id": decision.decision_id, "rules": list(decision.rules)},
    )


def credential_refusal(decision: Decision) -> GatewayError | None:
    """The ``-32004`` error for a request the Guard refused because its credential did not
    verify (missing, expired, revoked, …) — as an HTTP request with such a credential gets
    before it is dispatched; None for any other decision, including a credential that
    verified but does not cover the request (out of scope, over budget)."""
    if decision.allowed or decision.rules != (IDENTITY_RULE,) or not decision.reasons:
        return None
    reason = decision.reasons[0]
    code = reason.partition(":")[0]
    if code in _SCOPE_CODES:
        return None
    return credential_error(reason, code, decision)


def upstream_error(exc: UpstreamUnavailable | MCPError, decision: Decision) -> GatewayError:
    """The JSON-RPC error for a request an upstream failed (unreachable, or its own error)."""
    if isinstance(exc, UpstreamUnavailable):
        code = REQUEST_TIMEOUT if exc.timeout else INTERNAL_ERROR
        return GatewayError(code, str(exc), {"decision_id": decision.decision_id})
    return GatewayError(exc.code, exc.message, exc.data if isinstance(exc.data, dict) else None)


def denied_text(decision: Decision) -> str:
    """The readable reason a request did not go through, with the decision id."""
    approval = APPROVAL_RULE in decision.rules
    if approval and any("approval pending" in reason for reason in decision.reasons):
        verb = "is waiting for human approval of this call"
    elif approval:
        verb = "requires human approval, which was not given"
    else:
        verb = "denied this call"
    return f"Ringfence {verb}: {'; '.join(decision.reasons)} (decision {decision.decision_id})"


def denied_result(decision: Decision) -> types.CallToolResult:
    """What the client gets for a call that did not go through."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=denied_text(decision))],
        is_error=True,
        _meta={
            META_KEY: {
                "decision_id": decision.decision_id,
                "effect": decision.effect.value if decision.effect is not Effect.ALLOW else "allow",
                "rules": list(decision.rules),
                "reasons": list(decision.reasons),
            }
        },
    )


def wire(result: Any) -> dict[str, Any]:
    """An SDK result model as JSON with its wire names."""
    dump: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dump


def lane_result(shaped: dict[str, Any] | None) -> dict[str, Any] | None:
    """:func:`complete_result` of a direct-lane answer, or None for none."""
    return None if shaped is None else complete_result(shaped)


def complete_result(shaped: dict[str, Any]) -> dict[str, Any]:
    """A ``tools/call`` result from the direct lane (already checked and shaped by the SDK's
    types for the upstream's version; see :meth:`.pipe.Lane.request`) with the defaults of
    the SDK's ``CallToolResult``.  ValueError for a result the gateway does not relay
    (anything but a complete one)."""
    shaped.setdefault("isError", False)
    kind = shaped.setdefault("resultType", "complete")
    if kind != "complete":
        raise ValueError(f"a {kind!r} result, which the gateway does not relay")
    return shaped
