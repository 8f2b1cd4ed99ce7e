"""What the Guard writes: decision, approval and outcome records; redaction; labels; context."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import hashlib
import threading
from typing import Any

import msgspec
import pytest

import ringfence
from ringfence import Action, DeniedError, Effect, Guard
from ringfence.core.audit.merkle import leaf_hash
from ringfence.runtime.audit import AuditLog

from ._support import GuardFactory, records_of

NOTES = """
version: 1
name: notes
tools:
  write_note:
    args:
      type: object
      properties:
        title: {type: string}
        token: {type: string}
        auth:
          type: object
          properties:
            user: {type: string}
            secret: {type: string}
rules:
  - id: notes
    effect: allow
    tool: write_note
    redact: [args.token, args.auth.secret, request]
  - id: no-live-tokens
    effect: deny
    tool: write_note
    when: [{arg: token, startswith: sk-live-}]
"""

DECISION_FIELDS = {
    "v",
    "seq",
    "prev",
    "type",
    "ts",
    "decision_id",
    "agent",
    "roles",
    "user",
    "delegation",
    "credential",
    "session",
    "trace_id",
    "span_id",
    "request",
    "reason",
    "kind",
    "tool",
    "args",
    "resources",
    "effect",
    "enforced",
    "rules",
    "reasons",
    "errors",
    "obligations",
    "policy",
}
OUTCOME_FIELDS = {
    "v",
    "seq",
    "prev",
    "type",
    "ts",
    "decision_id",
    "content",
    "labels",
    "agent",
    "session",
    "tool",
    "status",
    "duration_ns",
    "result_sha256",
    "result_size",
    "error",
}

FILES = """
version: 1
name: files
tools:
  safe_delete:
    args:
      type: object
      properties: {path: {type: string}}
    resources: {path: path}
rules:
  - id: tmp-only
    effect: allow
    tool: safe_delete
    resource: "path:/tmp/**"
"""


def test_decision_record_has_every_field(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES, agent="cleaner", roles=("janitor",), clock=lambda: 1234)
    with guard.context(
        user="alice",
        session="s-1",
        delegation=["planner"],
        trace_id="trace-9",
        span_id="span-3",
        request="tidy up /tmp",
        reason="the disk is full",
    ):
        decision = guard.check(guard.action("safe_delete", {"path": "/tmp/a/../b"}))

    (record,) = records_of(memory_log)
    assert set(record) == DECISION_FIELDS
    assert record == {
        "v": 1,
        "seq": 0,
        "prev": "",
        "type": "decision",
        "ts": 1234,
        "decision_id": decision.decision_id,
        "agent": "cleaner",
        "roles": ["janitor"],
        "user": "alice",
        "delegation": ["planner"],
        "credential": None,
        "session": "s-1",
        "trace_id": "trace-9",
        "span_id": "span-3",
        "request": "tidy up /tmp",
        "reason": "the disk is full",
        "kind": "tool_call",
        "tool": "safe_delete",
        "args": {"path": "/tmp/a/../b"},
        "resources": [{"type": "path", "value": "/tmp/b"}],
        "effect": "allow",
        "enforced": True,
        "rules": ["tmp-only"],
        "reasons": ["rule tmp-only (allow)"],
        "errors": [],
        "obligations": {"counts": [], "redact": [], "labels": [], "sandbox": None},
        "policy": {"name": "files", "version": guard.policy.version},
    }
    assert guard.policy.version.startswith("sha256:")


def test_unknown_context_is_null_not_missing(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    guard.check(guard.action("safe_delete", {"path": "/etc/passwd"}))
    (record,) = records_of(memory_log)
    assert set(record) == DECISION_FIELDS
    assert record["agent"] == "anonymous"
    for name in ("user", "credential", "session", "trace_id", "span_id", "request", "reason"):
        assert record[name] is None
    assert record["effect"] == "deny"
    assert record["rules"] == ["ringfence:default-deny"]


def test_records_are_hash_linked(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)

    @guard.protect
    def safe_delete(path: str) -> None:
        pass

    safe_delete("/tmp/a")
    with pytest.raises(DeniedError):
        safe_delete("/etc/a")
    rows = list(memory_log.store.records())
    assert [seq for seq, _ in rows] == [0, 1, 2]
    records = records_of(memory_log)
    assert records[0]["prev"] == ""
    assert records[1]["prev"] == leaf_hash(rows[0][1]).hex()
    assert records[2]["prev"] == leaf_hash(rows[1][1]).hex()
    assert memory_log.verify().ok


def test_redaction_hides_values_without_touching_the_callers_dict(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(NOTES)
    args = {
        "title": "hello",
        "token": "sk-test-123",
        "auth": {"user": "alice", "secret": "hunter2"},
    }
    before = copy.deepcopy(args)
    with guard.context(request="my password is hunter2", reason="asked to"):
        decision = guard.check(guard.action("write_note", args))

    assert decision.allowed
    assert args == before
    (record,) = records_of(memory_log)
    assert record["args"] == {
        "title": "hello",
        "token": "[REDACTED]",
        "auth": {"user": "alice", "secret": "[REDACTED]"},
    }
    assert record["request"] == "[REDACTED]"
    assert record["reason"] == "asked to"
    assert sorted(record["obligations"]["redact"]) == ["args.auth.secret", "args.token", "request"]
    raw = b"".join(data for _, data in memory_log.store.records())
    assert b"hunter2" not in raw
    assert b"sk-test-123" not in raw


def test_redaction_applies_to_denied_calls_and_the_policy_sees_the_real_value(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(NOTES)
    ran: list[str] = []

    @guard.protect
    def write_note(title: str, token: str = "", auth: dict[str, str] | None = None) -> None:
        ran.append(token)

    auth = {"user": "alice", "secret": "hunter2"}
    with pytest.raises(DeniedError) as info:
        write_note("x", token="sk-live-999", auth=auth)
    assert info.value.decision.rules == ("no-live-tokens",)  # decided on the real token
    assert auth == {"user": "alice", "secret": "hunter2"}
    assert ran == []
    (record,) = records_of(memory_log)
    assert record["effect"] == "deny"
    assert record["args"]["token"] == "[REDACTED]"
    assert record["args"]["auth"]["secret"] == "[REDACTED]"
    raw = b"".join(data for _, data in memory_log.store.records())
    assert b"sk-live-999" not in raw
    assert b"hunter2" not in raw


def test_redaction_of_an_absent_argument_adds_nothing(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(NOTES)
    guard.check(guard.action("write_note", {"title": "t"}))
    assert records_of(memory_log)[0]["args"] == {"title": "t"}


def test_outcome_record_of_a_successful_call(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES, agent="cleaner")
    result = {"deleted": ["/tmp/a"], "count": 1}

    @guard.protect
    def safe_delete(path: str) -> dict[str, Any]:
        return result

    with guard.context(session="s-7"):
        assert safe_delete("/tmp/a") is result
    decision, outcome = records_of(memory_log)
    assert set(outcome) == OUTCOME_FIELDS
    encoded = msgspec.json.encode(result, order="sorted")
    assert outcome["status"] == "ok"
    assert outcome["decision_id"] == decision["decision_id"]
    assert outcome["result_sha256"] == hashlib.sha256(encoded).hexdigest()
    assert outcome["result_size"] == len(encoded)
    assert outcome["error"] is None
    assert isinstance(outcome["duration_ns"], int)
    assert outcome["duration_ns"] >= 0
    assert (outcome["agent"], outcome["session"], outcome["tool"]) == (
        "cleaner",
        "s-7",
        "safe_delete",
    )
    assert outcome["seq"] == decision["seq"] + 1


@pytest.mark.parametrize(
    ("result", "encoded"),
    [(None, b"null"), ("ok", b'"ok"'), ({"b": 1, "a": 2}, b'{"a":2,"b":1}')],
)
def test_result_hash_is_over_the_canonical_json(
    make_guard: GuardFactory, memory_log: AuditLog, result: Any, encoded: bytes
) -> None:
    guard = make_guard(FILES)
    guard.wrap(lambda path: result, tool="safe_delete")("/tmp/a")
    outcome = records_of(memory_log, "outcome")[0]
    assert outcome["result_sha256"] == hashlib.sha256(encoded).hexdigest()
    assert outcome["result_size"] == len(encoded)


def test_result_that_is_not_json_is_still_hashed(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    marker = object()
    assert guard.wrap(lambda path: marker, tool="safe_delete")("/tmp/a") is marker
    outcome = records_of(memory_log, "outcome")[0]
    assert outcome["status"] == "ok"
    assert len(outcome["result_sha256"]) == 64
    assert outcome["result_size"] > 0


def test_exception_gives_an_error_outcome_and_is_reraised(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    boom = PermissionError("x" * 2000)

    @guard.protect
    def safe_delete(path: str) -> None:
        raise boom

    with pytest.raises(PermissionError) as info:
        safe_delete("/tmp/a")
    assert info.value is boom
    decision, outcome = records_of(memory_log)
    assert decision["effect"] == "allow"
    assert outcome["status"] == "error"
    assert outcome["error"] == "PermissionError: " + "x" * 500
    assert outcome["result_sha256"] is None
    assert outcome["result_size"] is None


def test_base_exceptions_are_recorded_too(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)

    @guard.protect
    def safe_delete(path: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_delete("/tmp/a")
    assert records_of(memory_log, "outcome")[0]["error"] == "KeyboardInterrupt: "


# -- session labels ------------------------------------------------------------------------

LABELS = """
version: 1
tools:
  fetch_web:
    args: {type: object, properties: {url: {type: string}}}
  read_db:
    args: {type: object, properties: {table: {type: string}}}
  send_email:
    args: {type: object, properties: {to: {type: string}}}
rules:
  - id: fetch-https
    effect: allow
    tool: fetch_web
    labels: [untrusted]
    when: [{arg: url, startswith: "https://"}]
  - id: read
    effect: allow
    tool: read_db
    labels: [sensitive]
  - id: mail
    effect: allow
    tool: send_email
  - id: no-mail-after-untrusted
    effect: deny
    tool: send_email
    reason: the session has read untrusted content
    when: [{field: labels, contains: untrusted}]
"""


def test_labels_accumulate_per_session_and_steer_later_decisions(make_guard: GuardFactory) -> None:
    guard = make_guard(LABELS)

    def decide(tool: str, args: dict[str, Any], session: str | None) -> Effect:
        with guard.context(session=session):
            return guard.check(guard.action(tool, args)).effect

    mail = {"to": "bob@example.com"}
    assert decide("send_email", mail, "s1") is Effect.ALLOW
    assert decide("fetch_web", {"url": "http://x.test"}, "s1") is Effect.DENY
    assert guard.session_labels("s1") == frozenset()  # a denied call labels nothing
    assert decide("send_email", mail, "s1") is Effect.ALLOW
    assert decide("fetch_web", {"url": "https://x.test"}, "s1") is Effect.ALLOW
    assert guard.session_labels("s1") == {"untrusted"}
    assert decide("send_email", mail, "s1") is Effect.DENY
    assert decide("read_db", {"table": "hr"}, "s1") is Effect.ALLOW
    assert guard.session_labels("s1") == {"untrusted", "sensitive"}
    assert decide("send_email", mail, "s2") is Effect.ALLOW  # another session is clean
    assert decide("fetch_web", {"url": "https://x.test"}, None) is Effect.ALLOW
    assert decide("send_email", mail, None) is Effect.ALLOW  # no session, nothing to carry
    assert guard.session_labels("s2") == frozenset()


def test_later_actions_carry_the_labels(make_guard: GuardFactory) -> None:
    seen: list[frozenset[str]] = []
    policy = LABELS.replace(
        "effect: allow\n    tool: send_email", "effect: require_approval\n    tool: send_email"
    )

    def approver(action: Action, decision: ringfence.Decision) -> ringfence.ApprovalAnswer:
        seen.append(action.labels)
        return ringfence.ApprovalAnswer(True, "alice")

    guard = make_guard(policy, approver=approver)
    fetch = guard.wrap(lambda url: None, tool="fetch_web")
    send = guard.wrap(lambda to: None, tool="send_email")
    with guard.context(session="s1"):
        send("a@example.com")
        fetch("https://x.test")
        with pytest.raises(DeniedError) as info:
            send("a@example.com")
    assert seen == [frozenset()]  # the labelled call was denied before anyone was asked
    assert info.value.decision.reasons == ("the session has read untrusted content",)


def test_labels_from_an_approved_call(make_guard: GuardFactory) -> None:
    policy = """
version: 1
tools:
  open_attachment: {args: {type: object, properties: {name: {type: string}}}}
rules:
  - id: ask
    effect: require_approval
    tool: open_attachment
    labels: [untrusted]
"""
    answers = iter([False, True])
    guard = make_guard(
        policy, approver=lambda a, d: ringfence.ApprovalAnswer(next(answers), "alice")
    )
    with guard.context(session="s1"):
        assert not guard.check(guard.action("open_attachment", {"name": "a"})).allowed
        assert guard.session_labels("s1") == frozenset()
        assert guard.check(guard.action("open_attachment", {"name": "a"})).allowed
    assert guard.session_labels("s1") == {"untrusted"}


# -- context -------------------------------------------------------------------------------


def test_context_sets_identity_for_actions_built_inside_it(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES, agent="default-agent", user="default-user")
    assert guard.action("safe_delete", {}).agent == "default-agent"
    with guard.context(agent="a1", user="u1", session="s1", roles=["r1", "r2"]) as ctx:
        assert ctx.roles == ("r1", "r2")
        inner = guard.action("safe_delete", {})
        with guard.context(session="s2"):
            nested = guard.action("safe_delete", {})
        after_nested = guard.action("safe_delete", {})
    outside = guard.action("safe_delete", {})

    assert (inner.agent, inner.user, inner.session, inner.roles) == ("a1", "u1", "s1", ("r1", "r2"))
    assert (nested.agent, nested.user, nested.session) == ("a1", "u1", "s2")
    assert after_nested.session == "s1"
    assert (outside.agent, outside.user, outside.session) == ("default-agent", "default-user", None)


def test_context_is_restored_after_an_exception(make_guard: GuardFactory) -> None:
    guard = make_guard(FILES)
    with pytest.raises(RuntimeError), guard.context(agent="temporary"):
        raise RuntimeError
    assert guard.action("safe_delete", {}).agent == "anonymous"


def test_context_rejects_unknown_fields(make_guard: GuardFactory) -> None:
    guard = make_guard(FILES)
    with pytest.raises(TypeError), guard.context(agnet="typo"):
        pass


def test_context_is_per_thread_and_per_task(make_guard: GuardFactory) -> None:
    guard = make_guard(FILES)
    seen: dict[str, str] = {}

    def in_thread() -> None:
        seen["plain thread"] = guard.action("safe_delete", {}).agent

    async def task(name: str) -> str:
        with guard.context(agent=name):
            await asyncio.sleep(0)
            return guard.action("safe_delete", {}).agent

    async def main() -> list[str]:
        return list(await asyncio.gather(task("t1"), task("t2")))

    with guard.context(agent="outer"):
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        copied = contextvars.copy_context()
        seen["copied"] = copied.run(lambda: guard.action("safe_delete", {}).agent)
        assert asyncio.run(main()) == ["t1", "t2"]
        assert guard.action("safe_delete", {}).agent == "outer"
    assert seen == {"plain thread": "anonymous", "copied": "outer"}


def test_action_time_comes_from_the_guards_clock(memory_log: AuditLog) -> None:
    guard = Guard(ringfence.policy_from_text(FILES), audit=memory_log, clock=lambda: 42)
    assert guard.action("safe_delete", {}).time_ns == 42
    decision = guard.check(guard.action("safe_delete", {"path": "/tmp/x"}))
    assert decision.decision_id.startswith("d-")  # the default id source
    assert records_of(memory_log)[0]["ts"] == 42


def test_guard_is_a_context_manager_that_closes_its_log(memory_log: AuditLog) -> None:
    with Guard(ringfence.policy_from_text(FILES), audit=memory_log) as guard:
        guard.check(guard.action("safe_delete", {"path": "/tmp/x"}))
    with pytest.raises(ringfence.AuditError):
        memory_log.append({"type": "late"})


def test_guard_action_fills_every_context_field(make_guard: GuardFactory) -> None:
    """Guard.action builds Actions positionally: pin that each field lands where it belongs."""
    guard = make_guard(
        "version: 1\nrules:\n  - {id: r, effect: allow}\n",
        agent="agent:a",
        roles=("r1",),
        user="u",
        clock=lambda: 123,
    )
    with guard.context(
        delegation=["agent:root"],
        session="s",
        trace_id="t",
        span_id="sp",
        request="q",
        reason="why",
    ):
        a = guard.action("tool", {"x": 1}, "code_exec")
    assert (a.kind, a.tool, a.args, a.agent, a.roles, a.user) == (
        "code_exec",
        "tool",
        {"x": 1},
        "agent:a",
        ("r1",),
        "u",
    )
    assert (a.delegation, a.resources, a.session, a.trace_id, a.span_id) == (
        ("agent:root",),
        (),
        "s",
        "t",
        "sp",
    )
    assert (a.request, a.reason, a.time_ns, a.labels, a.context) == (
        "q",
        "why",
        123,
        frozenset(),
        {},
    )


def test_refuse_records_a_deny_with_the_pseudo_rule(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    seen: list[str] = []
    guard = make_guard(FILES, agent="cleaner", on_decision=lambda a, d: seen.append(d.effect))
    action = guard.action("safe_delete", {"path": "/tmp/a"})
    decision = guard.refuse(action, "ringfence:quarantine", "tool definition changed")
    assert decision.effect is Effect.DENY
    assert decision.rules == ("ringfence:quarantine",)
    assert decision.reasons == ("tool definition changed",)
    (record,) = records_of(memory_log)
    assert record["effect"] == "deny"
    assert record["rules"] == ["ringfence:quarantine"]
    assert record["decision_id"] == decision.decision_id
    assert record["args"] == {"path": "/tmp/a"}
    assert seen == [Effect.DENY]


def test_refuse_when_the_log_is_down_still_denies(
    make_guard: GuardFactory, memory_log: AuditLog, memory_store: Any
) -> None:
    guard = make_guard(FILES)
    memory_store.fail_writes = True
    decision = guard.refuse(guard.action("safe_delete", {"path": "/x"}), "ringfence:q", "no")
    assert decision.effect is Effect.DENY
    assert decision.rules == ("ringfence:audit",)


def test_outcome_content_and_labels_are_recorded_and_label_the_session(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    with guard.context(session="s-1"):
        action = guard.action("safe_delete", {"path": "/tmp/a"})
    decision = guard.check(action)
    guard.record_outcome(
        action,
        decision,
        started_ns=0,
        result={"text": "page"},
        content={"text": "page"},
        labels=("untrusted",),
    )
    outcome = records_of(memory_log)[-1]
    assert outcome["content"] == {"text": "page"}
    assert outcome["labels"] == ["untrusted"]
    assert guard.session_labels("s-1") == frozenset({"untrusted"})
    guard.label_session("s-1", ("pii",))
    assert guard.session_labels("s-1") == frozenset({"untrusted", "pii"})


def test_an_outcome_hashes_the_bytes_its_caller_already_encoded(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    # An adapter that encoded the result (the MCP gateway, for its size limit) hands the
    # bytes over: they are what is hashed and counted, and they are the canonical encoding.
    from ringfence.runtime.guard_outcomes import encode_result

    guard = make_guard(FILES)
    result = {"b": [1, 2], "a": "x"}
    data = encode_result(result)
    assert data == b'{"a":"x","b":[1,2]}'
    for encoded, expected in ((data, data), (None, data), (b"other", b"other")):
        action = guard.action("safe_delete", {"path": "/tmp/a"})
        decision = guard.check(action)
        guard.record_outcome(action, decision, started_ns=0, result=result, encoded=encoded)
        outcome = records_of(memory_log)[-1]
        assert outcome["result_sha256"] == hashlib.sha256(expected).hexdigest()
        assert outcome["result_size"] == len(expected)


def test_outcome_content_that_cannot_be_encoded_is_not_recorded_as_is(
    make_guard: GuardFactory, memory_log: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    guard = make_guard(FILES)
    action = guard.action("safe_delete", {"path": "/tmp/a"})
    decision = guard.check(action)
    guard.record_outcome(action, decision, started_ns=0, content={"x": float("nan")})
    assert len(records_of(memory_log)) == 1  # refused by the encoder's checks, and logged
    assert "could not record the outcome" in caplog.text
