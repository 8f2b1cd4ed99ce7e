"""The regex operator runs on RE2: linear time on hostile input, CEL-compatible syntax."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ringfence.core.action import Action
from ringfence.core.policy.load import policy_from_text
from ringfence.errors import PolicyError

POLICY = """\
version: 1
tools:
  t:
    args: {type: object, properties: {s: {type: string}}}
rules:
  - {id: ok, effect: allow, tool: t}
  - {id: evil, effect: deny, tool: t, when: [{arg: s, regex: "PATTERN"}]}
"""


@pytest.mark.parametrize("pattern", [r"(a)\\1", r"(?<=a)b", r"(?=a)", r"(?!a)b"])
def test_backreferences_and_lookaround_are_load_errors(pattern: str) -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_text(POLICY.replace("PATTERN", pattern), "p.yaml")
    assert err.value.line == 7
    assert "RE2 syntax" in err.value.reason


def test_catastrophic_pattern_finishes_on_hostile_input() -> None:
    # With a backtracking engine this input takes far longer than the timeout.
    code = (
        "from ringfence.core.policy.load import policy_from_text\n"
        "from ringfence.core.action import Action\n"
        f"p = policy_from_text({POLICY.replace('PATTERN', '^(a+)+$')!r})\n"
        "d = p.evaluate(Action(kind='tool_call', tool='t', args={'s': 'a' * 60 + 'b'}))\n"
        "print(d.effect.value, d.rules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "allow ('ok',)"


def test_match_and_case_flags() -> None:
    policy = policy_from_text(POLICY.replace("PATTERN", r"(?i)\\bdrop\\b"))
    deny = policy.evaluate(Action(kind="tool_call", tool="t", args={"s": "please DROP table"}))
    allow = policy.evaluate(Action(kind="tool_call", tool="t", args={"s": "dropped"}))
    assert (deny.effect.value, deny.rules) == ("deny", ("evil",))
    assert allow.effect.value == "allow"
