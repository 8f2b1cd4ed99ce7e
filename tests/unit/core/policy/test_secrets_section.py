"""The policy's ``secrets:`` section: parsed grants, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

import ringfence
from ringfence.errors import PolicyError

HEAD = """\
version: 1
tools:
  http_request:
    args: {type: object, properties: {url: {type: string}}}
    resources: {url: url}
  db_query:
    args: {type: object, properties: {sql: {type: string}}}
rules:
  - {id: any, effect: allow, tool: "*"}
"""


def load(section: str, source: str = "p.yaml") -> ringfence.Policy:
    return ringfence.policy_from_text(HEAD + section, source)


def test_grants_are_parsed() -> None:
    policy = load(
        """\
secrets:
  stripe_key:
    description: live key
    tools: [http_request, "stripe__*"]
    hosts: [API.stripe.com., "*.stripe.com"]
  db_password: {tools: db_query}
"""
    )
    grants = policy.spec.secrets
    assert sorted(grants) == ["db_password", "stripe_key"]
    stripe = grants["stripe_key"]
    assert stripe.tools == ("http_request", "stripe__*")
    assert stripe.hosts == ("api.stripe.com", "*.stripe.com")
    assert stripe.description == "live key"
    assert (stripe.where.source, stripe.where.line, stripe.where.field) == (
        "p.yaml",
        11,
        "secrets.stripe_key",
    )
    assert grants["db_password"].hosts is None
    assert stripe.allows_tool("stripe__refund") and not stripe.allows_tool("send_email")
    assert stripe.allows_host("api.stripe.com") and stripe.allows_host("files.stripe.com")
    assert not stripe.allows_host("stripe.com.evil.example")
    assert not grants["db_password"].allows_host("anything")


def test_a_policy_without_secrets_has_none() -> None:
    assert load("").spec.secrets == {}


def test_grants_change_the_policy_version() -> None:
    a = load("secrets:\n  k: {tools: [db_query]}\n")
    b = load("secrets:\n  k: {tools: [http_request], hosts: [a.example]}\n")
    assert a.version != b.version != load("").version


@pytest.mark.parametrize(
    ("section", "code", "where", "says"),
    [
        ("secrets: [a]\n", "policy.invalid", "p.yaml:10: secrets", "expected a mapping"),
        ("secrets:\n  Stripe: {tools: [x]}\n", "policy.invalid", "secrets.Stripe", "secret name"),
        ("secrets:\n  k: [x]\n", "policy.type", "p.yaml:11: secrets.k", "expected a mapping"),
        ("secrets:\n  k: {hosts: [a.com]}\n", "policy.missing_key", "secrets.k", "'tools'"),
        ("secrets:\n  k: {tools: []}\n", "policy.type", "secrets.k.tools", "non-empty"),
        ("secrets:\n  k: {tools: [1]}\n", "policy.type", "secrets.k.tools[0]", "a string"),
        ("secrets:\n  k: {tools: ['*']}\n", "policy.invalid", "secrets.k.tools[0]", "every tool"),
        ("secrets:\n  k: {tools: ['a b']}\n", "policy.invalid", "secrets.k.tools[0]", "glob"),
        ("secrets:\n  k: {tools: [x], to: y}\n", "policy.unknown_key", "secrets.k.to", "'to'"),
        (
            "secrets:\n  k: {tools: [db_query], hosts: ['https://a.com/x']}\n",
            "policy.invalid",
            "secrets.k.hosts[0]",
            "not a URL",
        ),
        (
            "secrets:\n  k: {tools: [db_query], hosts: ['a.com:443']}\n",
            "policy.invalid",
            "secrets.k.hosts[0]",
            "no ports",
        ),
        (
            "secrets:\n  k: {tools: [db_query], hosts: ['*']}\n",
            "policy.invalid",
            "secrets.k.hosts[0]",
            "exact or '*.'",
        ),
        (
            "secrets:\n  k: {tools: [db_query], hosts: ['a.*.com']}\n",
            "policy.invalid",
            "secrets.k.hosts[0]",
            "exact or '*.'",
        ),
        (
            "secrets:\n  k: {tools: [x], description: 3}\n",
            "policy.invalid",
            "secrets.k.description",
            "a string",
        ),
    ],
)
def test_errors_name_file_line_and_field(section: str, code: str, where: str, says: str) -> None:
    with pytest.raises(PolicyError) as info:
        load(section)
    assert info.value.code == code
    assert where in info.value.message
    assert says in info.value.message


def test_a_secret_declared_in_two_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(HEAD + "secrets:\n  k: {tools: [db_query]}\n")
    (tmp_path / "b.yaml").write_text(
        "version: 1\nsecrets:\n  k: {tools: [db_query]}\n"
        "rules:\n  - {id: b, effect: deny, tool: x}\n"
    )
    with pytest.raises(PolicyError) as info:
        ringfence.load_policy(tmp_path)
    assert info.value.code == "policy.duplicate_secret"
    assert "b.yaml:3: secrets.k" in info.value.message
    assert "a.yaml:11" in info.value.message


def test_ipv6_hosts_are_accepted() -> None:
    policy = load("secrets:\n  k: {tools: [http_request], hosts: ['[::1]', 'fe80::1']}\n")
    assert policy.spec.secrets["k"].hosts == ("::1", "fe80::1")
