"""OWASP Top 10 for Agentic Applications (2026): what a loaded policy and setup address.

Derived from the policy's rules and declarations and from the features the caller says are
switched on (the MCP gateway's pinning and scan, an approver) — never from what could be
imported.  Each risk gets the rules and controls that address it, what is not covered, and
the tests in this repository that show the block.  Pure: the caller gathers the features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ringfence.core.decision import Effect
from ringfence.core.policy.engine import Policy
from ringfence.core.policy.model import Condition, Rule

__all__ = ["RISKS", "Coverage", "Features", "owasp_coverage"]

RISKS = {
    "ASI01": "Agent Goal Hijack",
    "ASI02": "Tool Misuse and Exploitation",
    "ASI03": "Identity and Privilege Abuse",
    "ASI04": "Agentic Supply Chain Vulnerabilities",
    "ASI05": "Unexpected Code Execution",
    "ASI06": "Memory and Context Poisoning",
    "ASI07": "Insecure Inter-Agent Communication",
    "ASI08": "Cascading Failures",
    "ASI09": "Human-Agent Trust Exploitation",
    "ASI10": "Rogue Agents",
}

# Tests that demonstrate a block for each risk (paths in this repository).
DEMONSTRATED = {
    "ASI01": ["tests/unit/runtime/test_guard_sessions.py", "tests/unit/pack/", "ringfence eval"],
    "ASI02": [
        "tests/unit/core/policy/test_engine.py",
        "tests/integration/mcp/test_gateway_reference.py",
    ],
    "ASI03": [
        "tests/unit/core/policy/test_engine.py (agent/role/user scope)",
        "tests/unit/runtime/test_guard_identity.py",
        "tests/unit/core/identity/",
    ],
    "ASI04": ["tests/integration/mcp/test_gateway_pins.py", "tests/unit/adapters/mcp/test_scan.py"],
    "ASI05": [
        "tests/unit/pack/ (shell family)",
        "tests/integration/test_sandbox_escape.py",
        "tests/unit/runtime/test_guard_wiring.py",
    ],
    "ASI06": ["tests/unit/runtime/test_guard_sessions.py", "tests/unit/core/test_tripwires.py"],
    "ASI07": ["tests/unit/core/identity/ (delegation chains)"],
    "ASI08": [
        "tests/unit/runtime/test_guard_sessions.py (loops, budgets)",
        "tests/integration/mcp/test_gateway_robustness.py (timeouts, crashes)",
        "tests/unit/runtime/test_controls.py (rate limits, budgets, breakers)",
    ],
    "ASI09": [
        "tests/unit/runtime/test_guard_approval.py",
        "tests/unit/runtime/test_approvals.py (receipts, caps, grouping)",
        "tests/integration/test_approvals_cli.py",
    ],
    "ASI10": [
        "tests/unit/core/audit/",
        "tests/integration/test_crash.py",
        "tests/integration/test_kill_switch_processes.py",
    ],
}

_SESSION_LABELS = {"untrusted", "injection", "role_marker", "hidden_text", "encoded_payload"}
_SHELLISH = ("shell", "exec", "python", "code", "bash", "terminal", "command")
_DESTRUCTIVE = ("delete", "drop", "remove", "destroy", "force", "iam", "access_key", "wipe")


@dataclass(frozen=True)
class Features:
    """Controls switched on around the policy (what the CLI found in the configuration)."""

    gateway: bool = False
    pinning: str | None = None  # "tofu" | "allowlist"
    scan: str | None = None  # "warn" | "quarantine"
    approver: bool = False  # an approver answers require_approval (e.g. the approval queue)
    audit: bool = True
    tripwires: bool = True
    identity: bool = False  # every check verifies a signed agent credential
    sandbox: bool = False  # a sandbox executor runs the profiles rules name
    kill_switch: bool = False  # the kill switch is checked (every open_guard Guard, gateway)
    secrets: bool = False  # a secret broker substitutes handles


@dataclass
class Coverage:
    """One risk: what addresses it, what does not, where a test shows it."""

    risk: str
    title: str
    rules: list[str] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """covered / partial / not covered."""
        if not self.rules and not self.controls:
            return "not covered"
        return "partial" if self.gaps else "covered"


def _leaves(conds: tuple[Condition, ...]) -> list[Condition]:
    out: list[Condition] = []
    for c in conds:
        out.extend(_leaves(c.children) if c.children else [c])
    return out


def _uses(rule: Rule, test: Callable[[Condition], bool], cel_words: tuple[str, ...]) -> bool:
    if any(test(c) for c in _leaves(rule.when)):
        return True
    return rule.cel is not None and any(w in rule.cel for w in cel_words)


def _names(rule: Rule, words: tuple[str, ...]) -> bool:
    return any(w in t.lower() for t in (rule.tools or ()) for w in words)


def owasp_coverage(policy: Policy, features: Features) -> list[Coverage]:
    """Coverage of each ASI risk by ``policy`` and ``features``, in risk order."""
    rules = policy.rules
    ids = {r: f"{r.id} ({r.effect.value})" for r in rules}
    provenance = [
        r
        for r in rules
        if _uses(r, lambda c: c.op == "provenance", ("untrusted_only", "not_trusted", "from_user"))
    ]
    labelled = [
        r
        for r in rules
        if _uses(
            r, lambda c: c.subject == ("labels",) and c.operand in _SESSION_LABELS, ("labels",)
        )
    ]
    loops = [r for r in rules if _uses(r, lambda c: c.subject[:1] == ("state",), ("state.",))]
    scoped = [r for r in rules if r.agents or r.roles or r.users]
    approvals = [r for r in rules if r.effect is Effect.REQUIRE_APPROVAL]
    denies_on_resources = [r for r in rules if r.effect is Effect.DENY and r.resources]
    shell = [r for r in rules if _names(r, _SHELLISH) or "code_exec" in (r.kinds or ())]
    destructive = [r for r in rules if _names(r, _DESTRUCTIVE) and r.effect is not Effect.ALLOW]
    agent_msgs = [
        r
        for r in rules
        if "agent_message" in (r.kinds or ())
        or (r.cel and "delegation" in r.cel)
        or any(c.subject == ("delegation",) for c in _leaves(r.when))
    ]
    declared = [t for t in policy.tools.values() if t.schema is not None]
    credential = [
        r for r in rules if _uses(r, lambda c: c.subject[:1] == ("credential",), ("credential.",))
    ]
    sandboxed = [r for r in rules if r.sandbox is not None]
    limits = policy.spec.limit_set
    grants = policy.spec.secrets
    out = {k: Coverage(k, v, tests=list(DEMONSTRATED[k])) for k, v in RISKS.items()}

    c = out["ASI01"]
    c.rules = [ids[r] for r in provenance + labelled]
    if features.tripwires:
        c.controls.append("tripwires label injected instructions in tool results")
    if not provenance:
        c.gaps.append("no rule checks where argument values came from (provenance)")
    if not labelled:
        c.gaps.append("no rule reacts to untrusted or injected content in the session")

    c = out["ASI02"]
    c.rules = [ids[r] for r in denies_on_resources + destructive]
    c.controls.append(
        f"default deny; arguments checked against declared schemas ({len(declared)} tools declared)"
    )
    if not declared:
        c.gaps.append("no tool declares its arguments: conditions on arguments cannot be checked")
    if features.gateway:
        c.controls.append("MCP gateway: tools/list filtered by policy, every call checked")
    if grants:
        c.controls.append(
            f"secret broker: {len(grants)} secret(s) granted to named tools and hosts; "
            "the model sees handles only, values are redacted from results and records"
        )

    c = out["ASI03"]
    c.rules = [ids[r] for r in scoped + credential]
    if not scoped and not credential:
        c.gaps.append("no rule is scoped to an agent, role, user or credential claim")
    if features.identity:
        c.controls.append(
            "every check verifies a signed, short-lived credential (scopes, budgets, expiry, "
            "audience, revocation); delegation only narrows"
        )
    else:
        c.gaps.append(
            "no credential verifier configured: agent identities are asserted, not verified "
            "(Guard(verifier=...), docs/identity.md)"
        )

    c = out["ASI04"]
    if features.gateway and features.pinning:
        c.controls.append(f"MCP tool definitions pinned ({features.pinning}); changes quarantined")
    if features.gateway and features.scan:
        c.controls.append(f"tool descriptions scanned for poisoning ({features.scan})")
    if not features.gateway:
        c.gaps.append("no MCP gateway configuration given: tool definitions are not pinned")

    c = out["ASI05"]
    c.rules = [ids[r] for r in shell]
    c.rules += [ids[r] for r in sandboxed if ids[r] not in c.rules]
    if not shell:
        c.gaps.append("no rule covers shell or code-execution tools")
    if not sandboxed:
        c.gaps.append("no rule names a sandbox profile (rule key `sandbox:`)")
    if features.sandbox:
        c.controls.append(
            "sandbox executor: bwrap or process tier, no network, read-only system, limits; "
            "an unavailable profile is a deny"
        )
    else:
        c.gaps.append("no sandbox executor configured: code runs where the tool runs")

    c = out["ASI06"]
    c.rules = [ids[r] for r in labelled]
    c.controls.append("session labels only grow; value provenance per session")
    if features.tripwires:
        c.controls.append("tripwires on every observed tool result")
    c.gaps.append("long-term memory stores are not tracked across sessions")

    c = out["ASI07"]
    c.rules = [ids[r] for r in agent_msgs]
    if not agent_msgs:
        c.gaps.append("no rule covers agent_message actions or delegation chains")
    if features.identity:
        c.controls.append("delegation chains verified to a trusted root on every use")
    else:
        c.gaps.append("messages between agents are not authenticated (no credential verifier)")

    c = out["ASI08"]
    c.rules = [ids[r] for r in loops]
    if features.gateway:
        c.controls.append("MCP gateway: upstream timeouts, crash restarts, size limits")
    if not loops and not limits.loop:
        c.gaps.append("no loop detection or per-session budget (state.repeats, state.counters)")
    if limits.rates or limits.budgets:
        c.controls.append(
            f"limits: {len(limits.rates)} rate limit(s), {len(limits.budgets)} budget(s)"
        )
    else:
        c.gaps.append("no rate limit or budget (policy `limits:`)")
    if limits.breakers:
        c.controls.append(f"{len(limits.breakers)} circuit breaker(s)")
    else:
        c.gaps.append("no circuit breaker (policy `limits: breakers`)")

    c = out["ASI09"]
    c.rules = [ids[r] for r in approvals]
    if approvals and not features.approver:
        c.gaps.append("approval rules exist but no approver is configured: they deny")
    if not approvals:
        c.gaps.append("no rule asks a human")
    if features.approver:
        c.controls.append(
            "approvals are single-use signed receipts bound to the arguments, session and "
            "policy version; identical requests grouped; caps per session and window"
        )

    c = out["ASI10"]
    if features.audit:
        c.controls.append("tamper-evident audit log (Merkle tree, signed checkpoints)")
    if features.kill_switch:
        c.controls.append("kill switch (ringfence kill): agent, tool, session, user or all")
    else:
        c.gaps.append("no kill switch in this setup (open_guard and the gateway have one)")
    return list(out.values())
