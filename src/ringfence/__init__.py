"""Ringfence: the admission controller for AI agents' actions.

Every action is checked against a deterministic policy before it runs, enforced, and written
to a tamper-evident audit log::

    import ringfence
    guard = ringfence.open_guard("policy.yaml")

    @guard.protect
    def delete_file(path: str, recursive: bool = False) -> None: ...

Names are imported lazily so that ``import ringfence`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Action": "ringfence.core.action",
    "ActionKind": "ringfence.core.action",
    "ApprovalAnswer": "ringfence.runtime.ports",
    "ApprovalError": "ringfence.errors",
    "ApprovalQueue": "ringfence.runtime.approvals",
    "AuditError": "ringfence.errors",
    "AuditLog": "ringfence.runtime.audit",
    "Authority": "ringfence.runtime.authority",
    "ConfigError": "ringfence.errors",
    "Controls": "ringfence.runtime.controls",
    "Decision": "ringfence.core.decision",
    "DeniedError": "ringfence.errors",
    "Effect": "ringfence.core.decision",
    "Enforcement": "ringfence.runtime.guard",
    "Guard": "ringfence.runtime.guard",
    "IdentityError": "ringfence.errors",
    "InputError": "ringfence.errors",
    "LocalSandbox": "ringfence.runtime.sandbox",
    "Policy": "ringfence.core.policy.engine",
    "PolicyError": "ringfence.errors",
    "QueueApprover": "ringfence.runtime.approver",
    "Resource": "ringfence.core.action",
    "RingfenceError": "ringfence.errors",
    "SandboxError": "ringfence.errors",
    "SandboxProfile": "ringfence.runtime.sandbox",
    "SandboxUnavailable": "ringfence.errors",
    "SecretBroker": "ringfence.runtime.broker",
    "SecretError": "ringfence.errors",
    "Verifier": "ringfence.runtime.identity",
    "load_policy": "ringfence.core.policy.load",
    "open_approval_queue": "ringfence.runtime.approvals",
    "open_audit_log": "ringfence.runtime.embedded",
    "open_controls": "ringfence.runtime.controls",
    "open_guard": "ringfence.runtime.embedded",
    "policy_from_text": "ringfence.core.policy.load",
}

__all__ = [
    "Action",
    "ActionKind",
    "ApprovalAnswer",
    "ApprovalError",
    "ApprovalQueue",
    "AuditError",
    "AuditLog",
    "Authority",
    "ConfigError",
    "Controls",
    "Decision",
    "DeniedError",
    "Effect",
    "Enforcement",
    "Guard",
    "IdentityError",
    "InputError",
    "LocalSandbox",
    "Policy",
    "PolicyError",
    "QueueApprover",
    "Resource",
    "RingfenceError",
    "SandboxError",
    "SandboxProfile",
    "SandboxUnavailable",
    "SecretBroker",
    "SecretError",
    "Verifier",
    "load_policy",
    "open_approval_queue",
    "open_audit_log",
    "open_controls",
    "open_guard",
    "policy_from_text",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers; runtime imports are lazy
    from ringfence.core.action import Action, ActionKind, Resource
    from ringfence.core.decision import Decision, Effect
    from ringfence.core.policy.engine import Policy
    from ringfence.core.policy.load import load_policy, policy_from_text
    from ringfence.errors import (
        ApprovalError,
        AuditError,
        ConfigError,
        DeniedError,
        IdentityError,
        InputError,
        PolicyError,
        RingfenceError,
        SandboxError,
        SandboxUnavailable,
        SecretError,
    )
    from ringfence.runtime.approvals import ApprovalQueue, open_approval_queue
    from ringfence.runtime.approver import QueueApprover
    from ringfence.runtime.audit import AuditLog
    from ringfence.runtime.authority import Authority
    from ringfence.runtime.broker import SecretBroker
    from ringfence.runtime.controls import Controls, open_controls
    from ringfence.runtime.embedded import open_audit_log, open_guard
    from ringfence.runtime.guard import Enforcement, Guard
    from ringfence.runtime.identity import Verifier
    from ringfence.runtime.ports import ApprovalAnswer
    from ringfence.runtime.sandbox import LocalSandbox, SandboxProfile


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ringfence' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
