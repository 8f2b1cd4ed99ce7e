"""Warnings about policies that load but probably do not mean what their author thinks.

* ``unreachable`` — an allow/approval rule whose whole scope is covered by an unconditional
  deny, so it can never take effect (deny always wins).
* ``shadowed`` — a rule made redundant by an earlier unconditional rule with the same
  effect and a scope at least as broad.
* ``broad-allow`` — an allow rule for every tool, or for every agent with no conditions:
  the denies it coexists with are then the only protection, and an allow broader than the
  deny it sits beside grants everything that deny does not name.
* ``no-tool`` — a rule whose tool pattern matches none of the declared tools.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringfence.core.decision import Effect
from ringfence.core.policy.globs import name_pattern_covers
from ringfence.core.policy.model import PolicySpec, Rule
from ringfence.core.policy.validate import matching_tools

__all__ = ["LintWarning", "lint"]


@dataclass(frozen=True)
class LintWarning:
    """One lint finding, with the rule and position it concerns."""

    kind: str
    rule: str
    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: warning[{self.kind}] rule {self.rule!r}: {self.message}"


def _covers(general: tuple[str, ...] | None, specific: tuple[str, ...] | None) -> bool:
    """Does the scope list ``general`` include everything ``specific`` names?"""
    if general is None:
        return True
    if specific is None:
        return "*" in general
    return all(any(name_pattern_covers(g, s) for g in general) for s in specific)


def _scope_covers(general: Rule, specific: Rule) -> bool:
    return (
        _covers(general.kinds, specific.kinds)
        and _covers(general.tools, specific.tools)
        and _covers(general.agents, specific.agents)
        and (
            general.roles is None
            or (specific.roles is not None and set(specific.roles) <= set(general.roles))
        )
        and (general.users is None or _covers(general.users, specific.users))
    )


def lint(spec: PolicySpec) -> list[LintWarning]:
    """Every warning for ``spec``, in rule order."""
    out: list[LintWarning] = []

    def warn(kind: str, rule: Rule, message: str) -> None:
        out.append(LintWarning(kind, rule.id, rule.where.source, rule.where.line, message))

    rules = spec.rules
    for i, rule in enumerate(rules):
        if rule.effect is not Effect.DENY:
            for other in rules:
                if (
                    other.effect is Effect.DENY
                    and other.unconditional
                    and _scope_covers(other, rule)
                ):
                    warn(
                        "unreachable",
                        rule,
                        f"can never take effect: deny rule {other.id!r} (line {other.where.line}) "
                        "always matches everything it covers, and deny wins",
                    )
                    break
        for earlier in rules[:i]:
            if (
                earlier.effect is rule.effect
                and earlier.unconditional
                and _scope_covers(earlier, rule)
            ):
                warn(
                    "shadowed",
                    rule,
                    f"redundant: earlier rule {earlier.id!r} (line {earlier.where.line}) already "
                    f"gives {rule.effect.value} for everything this rule covers",
                )
                break
        if rule.effect is Effect.ALLOW:
            every_tool = rule.tools is None or "*" in rule.tools
            if every_tool and rule.unconditional and rule.agents is None:
                warn(
                    "broad-allow",
                    rule,
                    "allows every tool for every agent with no condition: any deny that does "
                    "not name an action exactly leaves it allowed",
                )
            elif every_tool and rule.unconditional:
                warn("broad-allow", rule, "allows every tool without any condition")
            elif rule.agents is not None and "*" in rule.agents and rule.unconditional:
                warn("broad-allow", rule, "allows every agent without any condition")
            for deny in rules:
                if (
                    deny.effect is Effect.DENY
                    and not deny.unconditional
                    and _scope_covers(rule, deny)
                    and not _scope_covers(deny, rule)
                    and rule.unconditional
                ):
                    warn(
                        "broad-allow",
                        rule,
                        f"is broader than deny rule {deny.id!r} (line {deny.where.line}), which "
                        "only stops some of what this allows; check that the rest is intended",
                    )
                    break
        if spec.tools and rule.tools is not None and not matching_tools(spec, rule):
            warn("no-tool", rule, f"tool pattern {', '.join(rule.tools)} matches no declared tool")
    return out
