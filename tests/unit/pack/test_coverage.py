"""Every rule of the pack is exercised through a real Guard: each deny and approval rule on
the side where it stops something, each allow rule on the side where it lets work through."""

from __future__ import annotations

from ringfence.core.decision import Effect

from . import (
    test_calendar,
    test_cloud,
    test_database,
    test_email,
    test_files,
    test_messaging,
    test_payments,
    test_repo,
    test_shell,
    test_web,
)
from ._support import Case, pack_policy

MODULES = [
    test_email,
    test_messaging,
    test_calendar,
    test_files,
    test_web,
    test_payments,
    test_shell,
    test_repo,
    test_database,
    test_cloud,
]
EXPECT = {Effect.ALLOW: "allow", Effect.DENY: "deny", Effect.REQUIRE_APPROVAL: "approval"}


def all_cases() -> list[Case]:
    return [case for module in MODULES for case in module.CASES]


def test_every_rule_has_a_case_on_its_own_side() -> None:
    covered = {(case.rule, case.expect) for case in all_cases()}
    missing = [
        f"{rule.id} ({EXPECT[rule.effect]})"
        for rule in pack_policy().rules
        if (rule.id, EXPECT[rule.effect]) not in covered
    ]
    assert missing == []


def test_every_case_names_a_rule_of_the_pack_or_a_builtin() -> None:
    ids = {rule.id for rule in pack_policy().rules}
    unknown = {c.rule for c in all_cases()} - ids - {"ringfence:schema"}
    assert unknown == set()


def test_deny_paths_are_at_least_as_many_as_allow_paths() -> None:
    cases = all_cases()
    stopped = [c for c in cases if c.expect != "allow"]
    allowed = [c for c in cases if c.expect == "allow"]
    assert len(stopped) >= len(allowed)
