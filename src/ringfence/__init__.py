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
    "AuditError": "ringfence.errors",
    "AuditLog": "ringfence.runtime.audit",
    "Decision": "ringfence.core.decision",
    "DeniedError": "ringfence.errors",
    "Effect": "ringfence.core.decision",
    "Enforcement": "ringfence.runtime.guard",
    "Guard": "ringfence.runtime.guard",
    "InputError": "ringfence.errors",
    "Policy": "ringfence.core.policy.engine",
    "PolicyError": "ringfence.errors",
    "Resource": "ringfence.core.action",
    "RingfenceError": "ringfence.errors",
    "load_policy": "ringfence.core.policy.load",
    "open_audit_log": "ringfence.runtime.embedded",
    "open_guard": "ringfence.runtime.embedded",
    "policy_from_text": "ringfence.core.policy.load",
}

__all__ = [
    "Action",
    "ActionKind",
    "ApprovalAnswer",
    "AuditError",
    "AuditLog",
    "Decision",
    "DeniedError",
    "Effect",
    "Enforcement",
    "Guard",
    "InputError",
    "Policy",
    "PolicyError",
    "Resource",
    "RingfenceError",
    "load_policy",
    "open_audit_log",
    "open_guard",
    "policy_from_text",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers; runtime imports are lazy
    from ringfence.core.action import Action, ActionKind, Resource
    from ringfence.core.decision import Decision, Effect
    from ringfence.core.policy.engine import Policy
    from ringfence.core.policy.load import load_policy, policy_from_text
    from ringfence.errors import AuditError, DeniedError, InputError, PolicyError, RingfenceError
    from ringfence.runtime.audit import AuditLog
    from ringfence.runtime.embedded import open_audit_log, open_guard
    from ringfence.runtime.guard import Enforcement, Guard
    from ringfence.runtime.ports import ApprovalAnswer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ringfence' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
