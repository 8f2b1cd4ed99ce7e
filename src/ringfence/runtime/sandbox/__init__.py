"""Sandboxed execution of code and shell tools, in the profile a policy decision names.

- :mod:`.profile` — :class:`SandboxProfile` (tier, network, file system, limits) loaded from
  YAML, and :class:`SandboxResult`;
- :mod:`.egress` — a profile's network allowlist (:class:`Egress`, :class:`HostRule`) and
  what the egress proxy let through or refused (:class:`EgressReport`, :class:`EgressRecord`);
  :mod:`.proxy` is that proxy, :mod:`.forwarder` its relay inside the sandbox;
- :mod:`.local` — :class:`LocalSandbox`, the tiers (bubblewrap namespaces; or rlimits +
  Landlock + seccomp), availability probing and fail-closed tier selection;
- :mod:`.executor` — :class:`SandboxExecutor` and :func:`run_guarded`, which tie a decision's
  ``sandbox`` obligation to a run and its audit record.

docs/sandbox.md is the reference.
"""

from __future__ import annotations

from ringfence.runtime.sandbox.egress import Egress, EgressRecord, EgressReport, HostRule
from ringfence.runtime.sandbox.executor import SANDBOX_RULE, SandboxExecutor, run_guarded
from ringfence.runtime.sandbox.local import Availability, LocalSandbox
from ringfence.runtime.sandbox.profile import (
    SandboxLimits,
    SandboxProfile,
    SandboxResult,
    Tier,
    load_profiles,
    profiles_from_text,
)

__all__ = [
    "SANDBOX_RULE",
    "Availability",
    "Egress",
    "EgressRecord",
    "EgressReport",
    "HostRule",
    "LocalSandbox",
    "SandboxExecutor",
    "SandboxLimits",
    "SandboxProfile",
    "SandboxResult",
    "Tier",
    "load_profiles",
    "profiles_from_text",
    "run_guarded",
]
