"""The neutral benchmark workload: the same rules, given to Ringfence and to every peer.

For ``n`` rules there are ``n`` tools ``tool_0 … tool_{n-1}``, each taking
``{"amount": int, "path": str}``.  The rule set is:

* ``deny-etc`` — deny any tool whose ``path`` starts with ``/etc/`` (applies to every call);
* ``r{i}`` for ``i < n-1`` — allow ``tool_i`` when ``amount < 1000`` and ``path`` starts
  with ``/data/``.

So "n rules" means n rules in total (one global deny plus n-1 per-tool allows).
Anything not allowed is denied (default deny).  The probes:

* ``match``    — ``tool_{n-2}`` (the last allow rule), amount 5, ``/data/report.csv`` → allow
* ``nomatch``  — ``tool_{n-2}``, amount 5000, ``/data/report.csv`` → deny (no rule allows)
* ``forbid``   — ``tool_{n-2}``, amount 5, ``/etc/passwd`` → deny (``deny-etc``)

For n == 1 the only rule is ``deny-etc``; the probes then use ``tool_0`` and all are denies.
This module is stdlib-only so that every peer's virtual environment can import it.
"""

from __future__ import annotations

from dataclasses import dataclass

AMOUNT_LIMIT = 1000
ALLOW_PREFIX = "/data/"
DENY_PREFIX = "/etc/"


@dataclass(frozen=True)
class AllowRule:
    """Allow ``tool`` when ``amount < AMOUNT_LIMIT`` and ``path`` starts with ``ALLOW_PREFIX``."""

    rule_id: str
    tool: str


@dataclass(frozen=True)
class Probe:
    """One call to decide, and the effect every engine must return for it."""

    name: str
    tool: str
    args: dict[str, object]
    expected: str  # "allow" or "deny"


def allow_rules(n: int) -> list[AllowRule]:
    """The per-tool allow rules of an ``n``-rule workload (``n - 1`` of them)."""
    return [AllowRule(f"r{i}", f"tool_{i}") for i in range(max(n - 1, 0))]


def tools(n: int) -> list[str]:
    """Every tool name the workload declares."""
    return [f"tool_{i}" for i in range(max(n - 1, 1))]


def probes(n: int) -> list[Probe]:
    """The three probes for an ``n``-rule workload."""
    target = f"tool_{max(n - 2, 0)}"
    has_allow = n >= 2
    return [
        Probe(
            "match",
            target,
            {"amount": 5, "path": "/data/report.csv"},
            "allow" if has_allow else "deny",
        ),
        Probe("nomatch", target, {"amount": 5000, "path": "/data/report.csv"}, "deny"),
        Probe("forbid", target, {"amount": 5, "path": "/etc/passwd"}, "deny"),
    ]
