"""The parsed, not yet compiled, form of a policy: tool declarations, rules and conditions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ringfence.core.decision import Effect
from ringfence.core.limits import NO_LIMITS, LimitSet

if TYPE_CHECKING:
    from ringfence.core.policy.secrets import SecretGrant

# Operators of the declarative condition form, and what their operand must be.
STRING_OPS = ("startswith", "endswith", "glob", "regex")
NUMBER_OPS = ("lt", "le", "gt", "ge")
EQUALITY_OPS = ("eq", "ne")
MEMBER_OPS = ("in", "not_in")
OTHER_OPS = ("contains", "exists", "provenance")
# Operands of ``provenance``: where the value's significant parts (addresses, links, account
# numbers, paths, …) were seen in the session — see ringfence.core.flow.
PROVENANCE = (
    "untrusted_only",
    "unknown",
    "not_trusted",
    "from_user",
    "trusted",
    "stated",
    "user_named",
)
# ``field: state.…`` — the session's state when the action is decided.
STATE_FIELDS = ("calls", "repeats", "counters", "tool_calls")
OPERATORS = STRING_OPS + NUMBER_OPS + EQUALITY_OPS + MEMBER_OPS + OTHER_OPS
COMBINATORS = ("all", "any", "not")

# Action fields a condition may name with ``field:`` (besides ``args.…`` and ``context.…``).
ACTION_FIELDS = (
    "agent",
    "roles",
    "user",
    "delegation",
    "session",
    "trace_id",
    "span_id",
    "request",
    "reason",
    "kind",
    "tool",
    "labels",
    "resources",
    "time_ns",
    "state",
)


@dataclass(frozen=True)
class Where:
    """Where a piece of policy came from: file, line, dotted field."""

    source: str
    line: int | None
    field: str


@dataclass(frozen=True)
class ToolDecl:
    """A tool the policy knows: its argument JSON Schema and which arguments name resources."""

    name: str
    kind: str
    description: str
    schema: dict[str, Any] | None
    resources: tuple[tuple[tuple[str, ...], str], ...]  # (argument path, resource type)
    where: Where
    labels: tuple[str, ...] = ()  # labels the session gains from this tool's results
    # ``user_named: {by, vouch}``: a result record the user named by a ``by`` field vouches
    # for its ``vouch`` fields (ringfence.core.flow.named_values); None if not declared.
    user_named: tuple[tuple[str, ...], tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Condition:
    """One node of a declarative condition: an operator test or a combinator."""

    op: str  # an operator, or "all" / "any" / "not"
    subject: tuple[str, ...] = ()  # ("args", "path") or ("agent",) — empty for combinators
    operand: Any = None
    children: tuple[Condition, ...] = ()
    where: Where | None = None


@dataclass(frozen=True)
class ResourcePattern:
    """``type:glob`` — matches a resource of that type whose value fits the glob."""

    type: str
    glob: str


@dataclass(frozen=True)
class Rule:
    """One rule as written: scope (kind, tool, agent, role, user, resource) plus conditions."""

    id: str
    effect: Effect
    where: Where
    description: str = ""
    reason: str = ""
    kinds: tuple[str, ...] | None = None
    tools: tuple[str, ...] | None = None
    agents: tuple[str, ...] | None = None
    roles: tuple[str, ...] | None = None
    users: tuple[str, ...] | None = None
    resources: tuple[ResourcePattern, ...] = ()
    when: tuple[Condition, ...] = ()
    cel: str | None = None
    cel_where: Where | None = None
    redact: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()  # counter name, amount added when it allows
    sandbox: str | None = None  # the sandbox profile the action must run in

    @property
    def unconditional(self) -> bool:
        """True when the rule has no conditions, no CEL and no resource patterns."""
        return not self.when and self.cel is None and not self.resources


@dataclass(frozen=True)
class PolicySpec:
    """A whole policy as parsed from one or more files, before compilation."""

    name: str
    tools: dict[str, ToolDecl]
    rules: tuple[Rule, ...]
    sources: tuple[str, ...]
    canonical: tuple[Any, ...] = field(default=(), repr=False)  # parsed documents, for hashing
    # The ``secrets:`` section: where each secret may go (ringfence.core.policy.secrets).
    secrets: dict[str, SecretGrant] = field(default_factory=dict)
    # The ``limits:`` section: rate limits, budgets, breakers (ringfence.core.policy.limits).
    limit_set: LimitSet = NO_LIMITS
