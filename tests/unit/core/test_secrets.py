"""Secret handles: finding them, refusing malformed ones, checking grants, substituting."""

from __future__ import annotations

import json
import shlex
import urllib.parse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.core.policy.model import Where
from ringfence.core.policy.secrets import SecretGrant
from ringfence.core.secrets import (
    HandleUse,
    handle,
    is_secret_name,
    scan,
    substitute,
    url_hosts,
    use_problem,
)

W = Where("p.yaml", 1, "secrets.x")
GRANTS = {
    "stripe_key": SecretGrant("stripe_key", ("http_request", "stripe__*"), ("api.stripe.com",), W),
    "wildcard": SecretGrant("wildcard", ("http_request",), ("*.example.com",), W),
    "local": SecretGrant("local", ("db_query",), None, W),
}


def test_handle_form() -> None:
    assert handle("stripe_key") == "rf-secret:stripe_key"
    assert is_secret_name("a") and is_secret_name("stripe_key_2")
    for bad in ("", "Stripe", "2fa", "a-b", "a.b", "a" * 65, "ä"):
        assert not is_secret_name(bad)


names = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)


@given(names)
def test_handles_pass_through_json_urls_shells_and_templates_unchanged(name: str) -> None:
    h = handle(name)
    assert json.dumps(h) == f'"{h}"'  # nothing to escape
    assert json.loads(json.dumps({"k": h})) == {"k": h}
    assert urllib.parse.quote(h, safe=":") == h  # only unreserved characters and ":"
    assert shlex.quote(h) == h  # a plain shell word
    assert f"{h}".format() == h  # no braces for a format-string template to eat
    assert scan({"text": f"use {h}."}).uses == (HandleUse(name, "/text"),)


def test_scan_finds_every_handle_with_its_pointer() -> None:
    args = {
        "url": "https://api.stripe.com/v1/charges",
        "headers": {"Authorization": "Bearer rf-secret:stripe_key"},
        "list": ["a", "x rf-secret:local and rf-secret:stripe_key"],
    }
    found = scan(args)
    assert found.uses == (
        HandleUse("stripe_key", "/headers/Authorization"),
        HandleUse("local", "/list/1"),
        HandleUse("stripe_key", "/list/1"),
    )
    assert found.names == ("local", "stripe_key") and not found.problems
    assert not scan({"a": "no handles", "n": 1, "b": [None, True]})


@pytest.mark.parametrize(
    "text",
    [
        "rf-secret:Stripe_Key",  # upper case: not a name
        "RF-SECRET:stripe_key",  # the prefix in another case
        "rf-secret:stripe-key",  # a dash continues the name
        "rf-secret:",  # no name
        "rf-secret:2fa",
        "Rf-Secret:x",
    ],
)
def test_malformed_handles_are_problems_not_plain_text(text: str) -> None:
    found = scan({"a": [f"pre {text} post"]})
    assert not found.uses
    assert found.problems and found.problems[0].startswith("/a/0: ")
    assert "not a valid secret handle" in found.problems[0]


def test_a_handle_in_a_key_is_a_problem() -> None:
    found = scan({"rf-secret:stripe_key": "x"})
    assert found.problems == (
        "/rf-secret:stripe_key: a secret handle in an object key (handles are substituted "
        "in values only)",
    )


def test_substitute_replaces_only_handles_and_copies_only_what_changes() -> None:
    inner = {"keep": ["a", "b"]}
    args: dict[str, Any] = {
        "h": "Bearer rf-secret:stripe_key; again rf-secret:stripe_key.",
        "inner": inner,
        "t": ("rf-secret:local",),
        "n": 5,
    }
    out = substitute(args, {"stripe_key": "VALUE", "local": "L0CAL"})
    assert out == {
        "h": "Bearer VALUE; again VALUE.",
        "inner": {"keep": ["a", "b"]},
        "t": ("L0CAL",),
        "n": 5,
    }
    assert out["inner"] is inner
    assert args["h"].startswith("Bearer rf-secret:")  # the input is not modified
    assert substitute(inner, {}) is inner


def test_substituted_values_are_taken_literally() -> None:
    out = substitute({"a": "rf-secret:local"}, {"local": r"\1 \g<0> $1"})
    assert out == {"a": r"\1 \g<0> $1"}


def test_substitute_raises_for_a_missing_value() -> None:
    with pytest.raises(KeyError):
        substitute({"a": "rf-secret:nope"}, {})


def test_url_hosts_finds_destinations_inside_content() -> None:
    args = {
        "url": "https://API.Stripe.com./v1",
        "body": "see https://evil.example/collect?x=1 and ftp://files.example.org/a",
        "plain": "not a url: example.com",
        "bad": "http://[::1/",
    }
    assert url_hosts(args) == {
        "api.stripe.com",
        "evil.example",
        "files.example.org",
        "<unparseable URL>",
    }


@pytest.mark.parametrize(
    ("names", "tools", "hosts", "expected"),
    [
        (["stripe_key"], ["http_request"], ["api.stripe.com"], None),
        (["stripe_key"], ["stripe__charge"], ["api.stripe.com"], None),
        (["wildcard"], ["http_request"], ["a.example.com", "b.c.example.com"], None),
        (["local"], ["db_query"], [], None),
        (["nope"], ["http_request"], ["api.stripe.com"], "secret.unknown"),
        (["stripe_key"], ["send_email"], ["api.stripe.com"], "secret.tool"),
        (["stripe_key"], ["http_request", "send_email"], ["api.stripe.com"], "secret.tool"),
        (["stripe_key"], ["http_request"], ["evil.example"], "secret.host"),
        (["stripe_key"], ["http_request"], ["api.stripe.com", "evil.example"], "secret.host"),
        (["stripe_key"], ["http_request"], ["api.stripe.com.evil.example"], "secret.host"),
        (["stripe_key"], ["http_request"], [], "secret.no_destination"),
        (["wildcard"], ["http_request"], ["example.com"], "secret.host"),
        (["wildcard"], ["http_request"], ["evilexample.com"], "secret.host"),
        (["local"], ["db_query"], ["evil.example"], "secret.host"),
        (["local"], ["db_query"], ["<unparseable URL>"], "secret.host"),
    ],
)
def test_use_problem(
    names: list[str], tools: list[str], hosts: list[str], expected: str | None
) -> None:
    problem = use_problem(names, tools, hosts, GRANTS)
    assert (problem and problem[0]) == expected
    if problem:  # reasons name secrets, tools and hosts: never values
        assert names[0] in problem[1]
