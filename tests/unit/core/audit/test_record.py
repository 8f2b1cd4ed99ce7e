"""Audit record builders and redaction."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ringfence.core.action import Action, Resource
from ringfence.core.audit.encoding import canonical
from ringfence.core.audit.record import (
    REDACTED,
    SCHEMA_VERSION,
    approval_record,
    decision_record,
    outcome_record,
    redact,
)
from ringfence.core.decision import Decision, Effect, Obligations


def stored(record: object) -> dict[str, Any]:
    """The record as it is stored: JSON (what the log writer encodes)."""
    out: dict[str, Any] = json.loads(canonical(msgspec.to_builtins(record)))
    return out


ACTION = Action(
    kind="tool_call",
    tool="send",
    args={"to": "a@b.c", "auth": {"token": "s3cret", "user": "u"}, "body": "hi", "list": [1]},
    agent="bot",
    roles=("mailer",),
    user="alice",
    delegation=("root",),
    session="sess",
    trace_id="tr",
    span_id="sp",
    request="send the secret",
    reason="user asked",
)


def test_redact_replaces_named_fields_without_touching_the_action() -> None:
    args, request, reason = redact(ACTION, ("args.auth.token", "args.body", "request"))
    assert args == {
        "to": "a@b.c",
        "auth": {"token": REDACTED, "user": "u"},
        "body": REDACTED,
        "list": [1],
    }
    assert (request, reason) == (REDACTED, "user asked")
    assert ACTION.args["auth"] == {"token": "s3cret", "user": "u"}
    assert ACTION.args["body"] == "hi"


def test_redact_below_a_non_object_redacts_the_whole_value() -> None:
    args, _, _ = redact(ACTION, ("args.list.0", "args.to.x"))
    assert args["list"] == REDACTED
    assert args["to"] == REDACTED


def test_redact_of_missing_fields_is_a_no_op() -> None:
    args, request, reason = redact(Action(kind="k", tool="t"), ("args.x.y", "request", "reason"))
    assert (args, request, reason) == ({}, None, None)


def test_decision_record() -> None:
    decision = Decision(
        effect=Effect.DENY,
        rules=("no-secrets",),
        reasons=("secrets stay home",),
        policy_version="sha256:v",
        decision_id="d-1",
        obligations=Obligations(redact=("args.auth.token", "reason"), labels=("sensitive",)),
        errors=("rule x: oops",),
    )
    record = decision_record(
        ACTION,
        decision,
        (Resource("recipient", "a@b.c"),),
        time_ns=42,
        policy_name="p",
        enforced=True,
    )
    assert stored(record) == {
        "v": SCHEMA_VERSION,
        "seq": -1,
        "prev": "",
        "type": "decision",
        "ts": 42,
        "decision_id": "d-1",
        "agent": "bot",
        "roles": ["mailer"],
        "user": "alice",
        "delegation": ["root"],
        "credential": None,
        "session": "sess",
        "trace_id": "tr",
        "span_id": "sp",
        "request": "send the secret",
        "reason": REDACTED,
        "kind": "tool_call",
        "tool": "send",
        "args": {
            "to": "a@b.c",
            "auth": {"token": REDACTED, "user": "u"},
            "body": "hi",
            "list": [1],
        },
        "resources": [{"type": "recipient", "value": "a@b.c"}],
        "effect": "deny",
        "enforced": True,
        "rules": ["no-secrets"],
        "reasons": ["secrets stay home"],
        "errors": ["rule x: oops"],
        "obligations": {
            "counts": [],
            "redact": ["args.auth.token", "reason"],
            "labels": ["sensitive"],
            "sandbox": None,
        },
        "policy": {"name": "p", "version": "sha256:v"},
    }
    assert b"s3cret" not in canonical(msgspec.to_builtins(record))


def test_decision_record_without_redaction_keeps_the_args_object() -> None:
    decision = Decision(effect=Effect.ALLOW, rules=("r",), reasons=(), policy_version="v")
    record = decision_record(ACTION, decision, (), time_ns=1, policy_name="p", enforced=False)
    assert record.args is ACTION.args
    assert (record.request, record.reason, record.enforced) == (
        "send the secret",
        "user asked",
        False,
    )


def test_outcome_and_approval_records_have_fixed_keys() -> None:
    outcome = outcome_record(
        "d-1",
        ACTION,
        time_ns=5,
        status="ok",
        duration_ns=7,
        result_sha256=None,
        result_size=None,
        error=None,
    )
    assert stored(outcome) == {
        "v": 1,
        "seq": -1,
        "prev": "",
        "type": "outcome",
        "ts": 5,
        "decision_id": "d-1",
        "agent": "bot",
        "session": "sess",
        "tool": "send",
        "status": "ok",
        "duration_ns": 7,
        "result_sha256": None,
        "result_size": None,
        "error": None,
        "content": None,
        "labels": [],
    }
    approval = approval_record("d-1", ACTION, time_ns=6, approved=False, approver="bob", note="no")
    assert stored(approval) == {
        "v": 1,
        "seq": -1,
        "prev": "",
        "type": "approval",
        "ts": 6,
        "decision_id": "d-1",
        "agent": "bot",
        "session": "sess",
        "tool": "send",
        "approved": False,
        "approver": "bob",
        "note": "no",
    }


def test_records_round_trip() -> None:
    decision = Decision(effect=Effect.ALLOW, rules=("r",), reasons=("ok",), policy_version="v")
    records = [
        decision_record(
            ACTION, decision, (Resource("path", "/x"),), time_ns=1, policy_name="p", enforced=True
        ),
        outcome_record(
            "d",
            ACTION,
            time_ns=2,
            status="error",
            duration_ns=3,
            result_sha256="ab",
            result_size=4,
            error="boom",
        ),
        approval_record("d", ACTION, time_ns=3, approved=True, approver="bob", note=""),
    ]
    for record in records:
        assert msgspec.json.decode(msgspec.json.encode(record), type=type(record)) == record


def test_record_structs_encode_canonically_without_sorting() -> None:
    """Fields are declared in code-point order, so the cheap encoder gives canonical bytes."""
    import msgspec

    from ringfence.core.action import Action, Resource
    from ringfence.core.audit.encoding import canonical, encode_record
    from ringfence.core.audit.record import (
        ApprovalRecord,
        DecisionRecord,
        OutcomeRecord,
        approval_record,
        decision_record,
        outcome_record,
    )
    from ringfence.core.decision import Decision, Effect, Obligations

    for cls in (DecisionRecord, OutcomeRecord, ApprovalRecord):
        assert list(cls.__struct_fields__) == sorted(cls.__struct_fields__)
    action = Action(
        kind="tool_call",
        tool="t",
        args={"z": 1, "a": {"y": [1, {"c": 2, "b": 3}]}},
        agent="ag",
        roles=("r",),
        user="u",
        session="s",
        request="q",
        reason="why",
    )
    decision = Decision(
        effect=Effect.DENY,
        rules=("r1",),
        reasons=("no",),
        policy_version="sha256:x",
        decision_id="d1",
        obligations=Obligations(redact=("args.z",), labels=("l",)),
    )
    records = [
        decision_record(
            action, decision, (Resource("path", "/x"),), time_ns=5, policy_name="p", enforced=True
        ),
        outcome_record(
            "d1",
            action,
            time_ns=6,
            status="ok",
            duration_ns=7,
            result_sha256="ab",
            result_size=2,
            error=None,
        ),
        approval_record("d1", action, time_ns=8, approved=True, approver="bob", note="fine"),
    ]
    for record in records:
        data = encode_record(record)
        assert data == canonical(msgspec.to_builtins(record))
        assert msgspec.json.decode(data)["type"] in ("decision", "outcome", "approval")
