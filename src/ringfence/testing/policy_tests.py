"""Policy test files (``ringfence test``): actions and the decisions a policy must give them.

A test file is YAML::

    policy: ../policy.yaml          # path(s) relative to this file, or an inline policy mapping
    cases:
      - name: reading /etc is denied
        action: {tool: read_file, args: {path: /etc/passwd}, agent: agent:reporter}
        expect: deny                # allow | deny | require_approval
        rules: [deny-system-files]  # optional: exactly the deciding rule ids
        reason_contains: off limits # optional

Deny cases are as first-class as allow cases; a file with no cases is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from ringfence.core.action import Action, Resource
from ringfence.core.decision import Decision, Effect
from ringfence.core.policy.engine import Policy
from ringfence.core.policy.load import load_policy, policy_from_text
from ringfence.core.policy.yamlsrc import parse
from ringfence.errors import InputError, PolicyError

__all__ = ["CaseResult", "TestCase", "action_from_dict", "load_cases", "run_cases"]

_CASE_KEYS = {"name", "action", "expect", "rules", "reason_contains"}


@dataclass(frozen=True)
class TestCase:
    """One expectation: this action gets this effect (and, optionally, these rules)."""

    name: str
    action: Action
    expect: Effect
    rules: tuple[str, ...] | None
    reason_contains: str | None
    source: str
    line: int | None


@dataclass(frozen=True)
class CaseResult:
    """A case and what the policy actually decided."""

    case: TestCase
    decision: Decision
    passed: bool
    problem: str


def action_from_dict(data: Any, where: str = "action") -> Action:
    """An Action from JSON-like data; InputError naming the bad field otherwise."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected an object", code="input.action")
    data = dict(data)
    data.setdefault("kind", "tool_call")
    resources = data.pop("resources", [])
    if not isinstance(resources, list):
        raise InputError(f"{where}.resources: expected a list", code="input.action")
    parsed_resources = []
    for i, r in enumerate(resources):
        if isinstance(r, str) and ":" in r:
            t, _, v = r.partition(":")
            parsed_resources.append(Resource(t, v))
        elif isinstance(r, dict) and set(r) == {"type", "value"}:
            parsed_resources.append(Resource(str(r["type"]), str(r["value"])))
        else:
            raise InputError(f"{where}.resources[{i}]: write 'type:value'", code="input.action")
    for key in ("roles", "delegation"):
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
    if isinstance(data.get("labels"), list):
        data["labels"] = frozenset(data["labels"])
    try:
        action = msgspec.convert(data, Action, strict=True)
    except msgspec.ValidationError as exc:
        raise InputError(
            f"{where}: {exc}".replace("`$", "`" + where), code="input.action"
        ) from None
    return msgspec.structs.replace(action, resources=tuple(parsed_resources))


def _policy_for(spec: Any, base: Path, source: str) -> Policy:
    if isinstance(spec, dict):
        return policy_from_text(yaml.safe_dump(spec, sort_keys=False), f"{source}#policy")
    paths = [spec] if isinstance(spec, str) else spec
    if not isinstance(paths, list) or not paths:
        raise PolicyError("'policy' must be a path, a list of paths or a mapping", source=source)
    return load_policy([base / p for p in paths])


def load_cases(path: str | os.PathLike[str]) -> tuple[Policy, list[TestCase]]:
    """The policy a test file names and its cases."""
    source = str(path)
    located = parse(Path(path).read_bytes(), source)
    top = located.value
    if not isinstance(top, dict) or "policy" not in top or "cases" not in top:
        raise PolicyError(
            "a test file needs 'policy' and 'cases'", code="test.invalid", source=source
        )
    unknown = set(top) - {"policy", "cases", "description"}
    if unknown:
        raise located.error(
            (sorted(unknown)[0],), f"unknown key {sorted(unknown)[0]!r}", "test.invalid"
        )
    policy = _policy_for(top["policy"], Path(path).parent, source)
    raw_cases = top["cases"]
    if not isinstance(raw_cases, list) or not raw_cases:
        raise located.error(("cases",), "'cases' must be a non-empty list", "test.invalid")
    cases = []
    for i, raw in enumerate(raw_cases):
        where = ("cases", i)
        if not isinstance(raw, dict):
            raise located.error(where, "a case must be a mapping", "test.invalid")
        for key in raw:
            if key not in _CASE_KEYS:
                raise located.error((*where, key), f"unknown key {key!r}", "test.invalid")
        for key in ("action", "expect"):
            if key not in raw:
                raise located.error(where, f"a case needs {key!r}", "test.invalid")
        try:
            expect = Effect(raw["expect"])
        except ValueError:
            raise located.error(
                (*where, "expect"), f"unknown effect {raw['expect']!r}", "test.invalid"
            ) from None
        try:
            action = action_from_dict(raw["action"], f"cases[{i}].action")
        except InputError as exc:
            raise located.error((*where, "action"), exc.message, "test.invalid") from None
        rules = raw.get("rules")
        cases.append(
            TestCase(
                name=str(raw.get("name", f"case {i + 1}")),
                action=action,
                expect=expect,
                rules=tuple(rules) if isinstance(rules, list) else None,
                reason_contains=raw.get("reason_contains"),
                source=source,
                line=located.line(where),
            )
        )
    return policy, cases


def run_cases(policy: Policy, cases: list[TestCase]) -> list[CaseResult]:
    """Evaluate every case; a case passes when effect (and rules, reason) are as expected."""
    results = []
    for case in cases:
        decision = policy.evaluate(case.action, "test")
        problems = []
        if decision.effect is not case.expect:
            problems.append(f"expected {case.expect.value}, got {decision.effect.value}")
        if case.rules is not None and tuple(sorted(decision.rules)) != tuple(sorted(case.rules)):
            problems.append(f"expected rules {list(case.rules)}, got {list(decision.rules)}")
        if case.reason_contains and not any(case.reason_contains in r for r in decision.reasons):
            problems.append(
                f"no reason contains {case.reason_contains!r}: {list(decision.reasons)}"
            )
        results.append(CaseResult(case, decision, not problems, "; ".join(problems)))
    return results
