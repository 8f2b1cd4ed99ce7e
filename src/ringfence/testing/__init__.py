"""Helpers shipped for users' own tests: a fixed clock, in-memory stores, the policy-test runner."""

from __future__ import annotations

from ringfence.stores.memory import MemoryAuditStore
from ringfence.testing.clock import FixedClock
from ringfence.testing.policy_tests import CaseResult, load_cases, run_cases

__all__ = ["CaseResult", "FixedClock", "MemoryAuditStore", "load_cases", "run_cases"]
