"""Policy.could_allow: which tools a listing may show an agent (never authorization)."""

from __future__ import annotations

import textwrap

import pytest

from ringfence.core.policy.engine import Policy
from ringfence.core.policy.load import policy_from_text

POLICY: Policy = policy_from_text(
    textwrap.dedent(
        """
        version: 1
        tools:
          fs.read: {args: {type: object, properties: {path: {type: string}}}}
          fs.write: {args: {type: object, properties: {path: {type: string}}}}
          mail.send: {args: {type: object, properties: {to: {type: string}}}}
        rules:
          - {id: read, effect: allow, tool: "fs.read", when: {arg: path, startswith: /data/}}
          - {id: write-ops, effect: require_approval, tool: "fs.write", role: ops}
          - {id: time, effect: allow, tool: "time.*", agent: "assistant-*"}
          - {id: no-time-for-bob, effect: deny, tool: "time.*", user: bob}
          - {id: never-shell, effect: deny, tool: "shell.*"}
          - {id: shell-allowed-by-mistake, effect: allow, tool: "shell.*"}
          - {id: mail-for-alice, effect: allow, tool: "mail.send", user: alice}
          - {id: mail-no-x, effect: deny, tool: "mail.send", when: {arg: to, endswith: .x}}
        """
    ).lstrip("\n")
)


@pytest.mark.parametrize(
    ("tool", "agent", "roles", "user", "expected"),
    [
        ("fs.read", "a", (), None, True),  # conditions are assumed satisfiable
        ("fs.write", "a", (), None, False),  # only for role ops
        ("fs.write", "a", ("ops",), None, True),  # approval counts as reachable
        ("time.now", "assistant-1", (), None, True),
        ("time.now", "other", (), None, False),  # agent scope
        ("time.now", "assistant-1", (), "bob", False),  # an unconditional deny in scope
        ("time.now", "assistant-1", (), "carol", True),
        ("shell.run", "a", (), None, False),  # unconditional deny beats any allow
        ("mail.send", "a", (), "alice", True),  # a conditional deny does not hide it
        ("mail.send", "a", (), None, False),  # user-scoped rule needs a user
        ("unknown.tool", "a", (), None, False),  # default deny
    ],
)
def test_could_allow(
    tool: str, agent: str, roles: tuple[str, ...], user: str | None, expected: bool
) -> None:
    assert POLICY.could_allow("tool_call", tool, agent=agent, roles=roles, user=user) is expected


def test_a_declared_tool_under_another_kind_is_never_listed() -> None:
    assert not POLICY.could_allow("mcp_request", "fs.read", agent="a")


def test_kind_scoped_rules() -> None:
    policy = policy_from_text(
        "version: 1\nrules:\n  - {id: r, effect: allow, kind: mcp_request, tool: '*'}\n"
    )
    assert policy.could_allow("mcp_request", "x.resources/read", agent="a")
    assert not policy.could_allow("tool_call", "x.y", agent="a")
