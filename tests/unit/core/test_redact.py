"""The redactor: known values in every encoding, common secret formats, JSON, and properties."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ringfence.core.redact import FORMATS, Finding, Redactor, marker, sensitive_key, variants

STRIPE = "sk_live_51HqLrT2eZvKYlo2CabcDEF"
PASSWORD = "p@ss w0rd/&ünï"
known = Redactor({"stripe_key": STRIPE, "db_password": PASSWORD})
formats_only = Redactor()


def strings_of(value: Any) -> list[str]:
    """Every string inside a JSON-like value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings_of(k), *strings_of(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_of(v)]
    return []


# -- known values ------------------------------------------------------------------------------


def b64(data: bytes, urlsafe: bool = False) -> str:
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()


ENCODINGS = {
    "raw": lambda v: v,
    "json-escaped": lambda v: json.dumps(v)[1:-1],
    "quote": lambda v: urllib.parse.quote(v, safe=""),
    "quote-path": lambda v: urllib.parse.quote(v),
    "quote-plus": urllib.parse.quote_plus,
    "percent-every-byte": lambda v: "".join(f"%{b:02X}" for b in v.encode()),
    "hex": lambda v: v.encode().hex(),
    "HEX": lambda v: v.encode().hex().upper(),
    "base64": lambda v: b64(v.encode()),
    "base64-urlsafe": lambda v: b64(v.encode(), urlsafe=True),
    "base64-basic-auth": lambda v: b64(b"user:" + v.encode()),
    "base64-offset-1": lambda v: b64(b"x" + v.encode() + b"yz"),
    "base64-offset-2": lambda v: b64(b"xy" + v.encode() + b"z"),
    "base64-urlsafe-offset-2": lambda v: b64(b"xy" + v.encode(), urlsafe=True),
    "reversed": lambda v: v[::-1],
}


@pytest.mark.parametrize("value", [STRIPE, PASSWORD])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_known_value_is_redacted_in_every_encoding(value: str, encoding: str) -> None:
    encoded = ENCODINGS[encoding](value)
    text = f"here it is: {encoded} (end)"
    out, hits = known.text(text)
    assert encoded not in out
    assert value not in out
    assert out.startswith("here it is: [REDACTED:secret:") and out.endswith(" (end)")
    assert hits and hits[0][1] in ("stripe_key", "db_password")


def test_base64_hit_widens_to_the_whole_blob() -> None:
    blob = b64(b"Authorization: " + STRIPE.encode() + b" and more text after it")
    out, _ = known.text(f"data={blob}&x=1")
    assert out == "data=[REDACTED:secret:stripe_key]&x=1"


def test_short_values_are_redacted_only_as_written() -> None:
    r = Redactor({"pin": "4711", "short": "abc1234"})
    assert r.redact_text("pin 4711, code abc1234") == (
        "pin [REDACTED:secret:pin], code [REDACTED:secret:short]"
    )
    assert r.redact_text("hex 616263313233 b64 YWJjMTIzNA") == "hex 616263313233 b64 YWJjMTIzNA"
    assert variants("abc") == []  # under four characters: not redacted at all


def test_old_values_after_rotation_stay_redacted() -> None:
    r = Redactor({"k": ("old-value-1234", "new-value-5678")})
    assert r.redact_text("old-value-1234 new-value-5678") == (
        "[REDACTED:secret:k] [REDACTED:secret:k]"
    )


def test_known_value_inside_a_format_hit_is_reported_as_the_known_secret() -> None:
    # The assignment format would match too; the finding must still name the secret.
    found = known.find({"env": f"STRIPE_API_KEY={STRIPE}"})
    assert [f.secret for f in found] == ["stripe_key"]


# -- formats -----------------------------------------------------------------------------------

SAMPLES = {
    "aws-access-key-id": ("id AKIAIOSFODNN7EXAMPLE ok", "id [REDACTED:aws-access-key-id] ok"),
    "aws-secret-access-key": (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "aws_secret_access_key = [REDACTED:aws-secret-access-key]\n",
    ),
    "github-token": (
        "token ghp_16C7e42F292c6912E7710c838347Ae178B4a here",
        "token [REDACTED:github-token] here",
    ),
    "github-pat": (
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "[REDACTED:github-token]",
    ),
    "gitlab-token": ("glpat-xxxxxxxxxxxxxxxxxxxx1", "[REDACTED:gitlab-token]"),
    "slack-token": ("xoxb-2234567890-1234567890123-AbCdEfGhIjKl", "[REDACTED:slack-token]"),
    "slack-webhook": (
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "https://hooks.slack.com/services/[REDACTED:slack-webhook]",
    ),
    "stripe-key": ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "[REDACTED:stripe-key]"),
    "stripe-webhook": ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "[REDACTED:stripe-key]"),
    "anthropic-key": (
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789-_ABCDEFGHIJ",
        "[REDACTED:anthropic-key]",
    ),
    "openai-key": (
        "OPENAI: sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "OPENAI: [REDACTED:openai-key]",
    ),
    "google-api-key": (
        "key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "key=[REDACTED:google-api-key]",
    ),
    "jwt": (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "[REDACTED:jwt]",
    ),
    "private-key": (
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n"
        "-----END RSA PRIVATE KEY-----\ndone",
        "key:\n[REDACTED:private-key]\ndone",
    ),
    "private-key-truncated": (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU",
        "[REDACTED:private-key]",
    ),
    "url-password": (
        "DATABASE_URL=postgres://app:s3cr3t-pw@db.internal:5432/app",
        "DATABASE_URL=postgres://app:[REDACTED:url-password]@db.internal:5432/app",
    ),
    "url-password-only": (
        "redis://:hunter2pw@cache:6379/0",
        "redis://:[REDACTED:url-password]@cache:6379/0",
    ),
    "authorization": (
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "Authorization: Basic [REDACTED:authorization]",
    ),
    "bearer": (
        "curl -H 'X: Bearer abcdef0123456789xyz'",
        "curl -H 'X: Bearer [REDACTED:bearer-token]'",
    ),
    "assignment": ("db_password=hunter22 next", "db_password=[REDACTED:assignment] next"),
    "assignment-json": ('{"api_key": "abcd1234efgh"}', '{"api_key": "[REDACTED:assignment]"}'),
    "assignment-header": ("X-Api-Key: 0123456789abcdef", "X-Api-Key: [REDACTED:assignment]"),
    "connection-string": (
        "Server=db;User Id=sa;Password=Pa55w0rd!;",
        "Server=db;User Id=sa;Password=[REDACTED:assignment];",
    ),
}


@pytest.mark.parametrize("case", sorted(SAMPLES))
def test_formats(case: str) -> None:
    text, expected = SAMPLES[case]
    assert formats_only.redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "request id 123e4567-e89b-12d3-a456-426614174000",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "pip install scikit-learn; sk-learn is its old name",
        "max_tokens: 4096, next_page_token=CAESBggDEAMYAQ",
        "password: true",
        "secret = null",
        "Authorization: rf-secret:stripe_key",
        "password=rf-secret:db_password",
        "password: [REDACTED:assignment]",
        "password: ********",
        "Please enter your password to continue.",
        "https://example.com/path?q=1#frag",
        "The weather in Paris is sunny, 21°C.",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert formats_only.redact_text(text) == text


def test_every_format_has_a_sample() -> None:
    kinds = {f.kind for f in FORMATS}
    covered = {
        formats_only.text(text)[1][0][0]
        for text, _ in SAMPLES.values()
        if formats_only.text(text)[1]
    }
    assert kinds <= covered


def test_formats_can_be_turned_off() -> None:
    r = Redactor({"k": STRIPE}, formats=False)
    assert (
        r.redact_text("AKIAIOSFODNN7EXAMPLE " + STRIPE)
        == "AKIAIOSFODNN7EXAMPLE [REDACTED:secret:k]"
    )


# -- JSON --------------------------------------------------------------------------------------


def test_json_redacts_values_and_keys_and_reports_pointers() -> None:
    doc = {"content": [{"type": "text", "text": f"key {STRIPE}"}], STRIPE: {"a/b": PASSWORD}}
    red = known.json(doc)
    assert red.value == {
        "content": [{"type": "text", "text": "key [REDACTED:secret:stripe_key]"}],
        "[REDACTED:secret:stripe_key]": {"a/b": "[REDACTED:secret:db_password]"},
    }
    assert red.findings == (
        Finding("secret:stripe_key", "/content/0/text", "stripe_key", "raw"),
        Finding("secret:stripe_key", "/[REDACTED:secret:stripe_key]", "stripe_key", "raw", True),
        Finding("secret:db_password", "/[REDACTED:secret:stripe_key]/a~1b", "db_password", "raw"),
    )
    assert red.secrets == ("db_password", "stripe_key")
    assert STRIPE not in json.dumps([f.to_dict() for f in red.findings])


def test_credential_keys_are_redacted_whole() -> None:
    red = formats_only.json(
        {
            "password": "x9",
            "client_secret": "abc",
            "Authorization": "Token zzz",
            "token": "page-2",
            "secret": True,
            "api_key": "rf-secret:stripe_key",
            "authorization": "Bearer rf-secret:stripe_key",
            "db_password": "hunter22 rf-secret:stripe_key",
            "passphrase": "****",
        }
    )
    assert red.value == {
        "password": "[REDACTED:credential-field]",
        "client_secret": "[REDACTED:credential-field]",
        "Authorization": "[REDACTED:credential-field]",
        "token": "page-2",
        "secret": True,
        "api_key": "rf-secret:stripe_key",
        "authorization": "Bearer rf-secret:stripe_key",  # a handle is not a secret
        "db_password": "[REDACTED:credential-field]",  # a handle does not shield a value
        "passphrase": "****",
    }
    assert sensitive_key("DB_PASSWORD") and sensitive_key("aws.secret_access_key")
    assert not sensitive_key("password_hint_shown") and not sensitive_key("next_page_token")


def test_colliding_redacted_keys_stay_apart() -> None:
    red = known.json({STRIPE: 1, "[REDACTED:secret:stripe_key]": 2})
    assert red.value == {"[REDACTED:secret:stripe_key]#2": 1, "[REDACTED:secret:stripe_key]": 2}


def test_unchanged_json_is_returned_as_is_and_tuples_stay_tuples() -> None:
    doc = {"a": [1, 2.5, None, True, "plain"]}
    assert known.json(doc).value is doc
    assert known.json(("x", STRIPE)).value == ("x", "[REDACTED:secret:stripe_key]")


def test_too_deep_json_is_replaced_whole() -> None:
    doc: Any = STRIPE
    for _ in range(300):
        doc = [doc]
    red = known.json(doc)
    assert STRIPE not in json.dumps(red.value)
    assert any(f.kind == "too-deep" for f in red.findings)


def test_marker() -> None:
    assert marker("jwt") == "[REDACTED:jwt]"


# -- properties --------------------------------------------------------------------------------

secret_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=8, max_size=40
)
json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def json_with_secret(draw: st.DrawFn) -> tuple[str, Any]:
    """A JSON value with a secret spliced into one of its strings (a key or a value)."""
    secret = draw(secret_values)
    doc = draw(json_values)
    prefix, suffix = draw(st.text(max_size=10)), draw(st.text(max_size=10))
    planted = prefix + secret + suffix
    where = draw(st.sampled_from(["value", "key", "wrap"]))
    if where == "wrap" or not isinstance(doc, dict | list):
        return secret, {"planted": planted, "doc": doc}
    if isinstance(doc, list):
        index = draw(st.integers(0, len(doc)))
        return secret, [*doc[:index], planted, *doc[index:]]
    if where == "key":
        return secret, {**doc, planted: draw(json_values)}
    return secret, {**doc, "planted-value": planted}


@settings(max_examples=300, deadline=None)
@given(json_with_secret())
def test_every_known_value_is_removed_from_arbitrary_json(case: tuple[str, Any]) -> None:
    secret, doc = case
    assume(secret.strip() == secret)
    r = Redactor({"s": secret})
    assume(secret not in marker("secret:s"))
    red = r.json(doc)
    assert red.findings
    for s in strings_of(red.value):
        assert secret not in s
    assert any(f.secret == "s" for f in red.findings)


@settings(max_examples=200, deadline=None)
@given(json_with_secret())
def test_redacting_twice_changes_nothing(case: tuple[str, Any]) -> None:
    secret, doc = case
    r = Redactor({"s": secret})
    once = r.json(doc).value
    assert r.json(once).value == once


@settings(max_examples=200, deadline=None)
@given(
    secret_values, st.sampled_from(sorted(ENCODINGS)), st.text(max_size=12), st.text(max_size=12)
)
def test_encoded_values_are_removed_wherever_they_are(
    secret: str, encoding: str, before: str, after: str
) -> None:
    assume(secret.strip() == secret)
    encoded = ENCODINGS[encoding](secret)
    r = Redactor({"s": secret}, formats=False)
    out = r.redact_text(before + " " + encoded + " " + after)
    assert encoded not in out
