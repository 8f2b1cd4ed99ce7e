"""The Guard's vocabulary: enforcement modes, the call context, and its pseudo-rule ids.

The pseudo-rule ids name the refusals the Guard makes itself rather than the policy (the
audit log was unavailable, an internal error, a failed identity, secret or sandbox check);
they appear in a decision's ``rules`` like a policy rule's id.  :class:`CallContext` is what
``guard.context(...)`` sets, held in a contextvar so it follows threads and asyncio tasks
that copy the context.  Everything here is re-exported by :mod:`ringfence.runtime.guard`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "APPROVAL_RULE",
    "AUDIT_RULE",
    "CALL_CONTEXT",
    "IDENTITY_RULE",
    "INTERNAL_RULE",
    "SANDBOX_RULE",
    "SECRET_RULE",
    "UNRECORDED",
    "CallContext",
    "Enforcement",
]

AUDIT_RULE = "ringfence:audit"
INTERNAL_RULE = "ringfence:internal"
APPROVAL_RULE = "ringfence:approval"
IDENTITY_RULE = "ringfence:identity"
SECRET_RULE = "ringfence:secret"  # noqa: S105 - a rule id (= runtime.broker.SECRET_RULE)
SANDBOX_RULE = "ringfence:sandbox"  # = runtime.sandbox.executor.SANDBOX_RULE
# Refusals that stop an action in every mode, audit-only included: it could not be decided
# or recorded, or (with a verifier) nobody verifiably asked for it.
UNRECORDED = frozenset({AUDIT_RULE, INTERNAL_RULE, IDENTITY_RULE})


class Enforcement(StrEnum):
    """How decisions are applied.  There is no mode that allows without deciding and recording."""

    ENFORCE = "enforce"
    UNSAFE_AUDIT_ONLY = "unsafe_audit_only"  # decide and record, but run everything (dry run)


@dataclass(frozen=True)
class CallContext:
    """Who is acting and why, for the actions a Guard builds."""

    agent: str = "anonymous"
    roles: tuple[str, ...] = ()
    user: str | None = None
    delegation: tuple[str, ...] = ()
    session: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    request: str | None = None
    reason: str | None = None
    credential: str | None = field(default=None, repr=False)  # checked by a Verifier


# The context ``guard.context(...)`` set for this thread / task; None: the Guard's defaults.
CALL_CONTEXT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "ringfence_context", default=None
)
