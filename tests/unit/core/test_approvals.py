"""The pure part of approvals: hashing, grouping, redaction, caps, receipts and their binding.

Every way a receipt can fail to bind to a call is a test of its own; so is every cap.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ringfence.core.action import Action, Resource
from ringfence.core.approvals import (
    ApprovalLimits,
    Counts,
    PendingRequest,
    Receipt,
    Scope,
    SessionSummary,
    Status,
    Step,
    args_hash,
    binding_problem,
    cap_problem,
    decode_receipt,
    encode_receipt,
    group_key,
    new_request,
    plan_request,
    receipt_bytes,
    receipt_record,
    sign_receipt,
    summarize,
    verify_receipt,
)
from ringfence.core.audit.checkpoint import key_id
from ringfence.core.decision import Decision, Effect, Obligations
from ringfence.core.flow import SessionState

T0 = 1_700_000_000_000_000_000
S = 10**9
POLICY = "sha256:" + "ab" * 32
KEY = SigningKey(b"\x01" * 32)
KEYS = {key_id(bytes(KEY.verify_key)): KEY.verify_key}


def action(**changes: Any) -> Action:
    fields: dict[str, Any] = {
        "kind": "tool_call",
        "tool": "send_email",
        "args": {"to": "bob@partner.test", "body": "hello"},
        "agent": "mailer",
        "user": "alice",
        "session": "s1",
        "time_ns": T0,
    }
    fields.update(changes)
    return Action(**fields)


def decision(**changes: Any) -> Decision:
    fields: dict[str, Any] = {
        "effect": Effect.REQUIRE_APPROVAL,
        "rules": ("external-mail",),
        "reasons": ("mail leaving the organisation needs a human",),
        "policy_version": POLICY,
        "decision_id": "d-1",
    }
    fields.update(changes)
    return Decision(**fields)


def receipt(call: Action | None = None, **changes: Any) -> Receipt:
    call = call or action()
    fields: dict[str, Any] = {
        "id": "rc-1",
        "request": "ap-1",
        "decision": "d-1",
        "agent": call.agent,
        "user": call.user,
        "session": call.session,
        "steps": (Step(call.kind, call.tool, args_hash(call.args)),),
        "policy": POLICY,
        "approver": "alice",
        "issued_ns": T0,
        "expires_ns": T0 + 300 * S,
        "nonce": "00" * 16,
    }
    fields.update(changes)
    return sign_receipt(KEY, Receipt(**fields))


def bind(r: Receipt, call: Action | None = None, **kw: Any) -> tuple[tuple[int, ...], Any]:
    kw.setdefault("policy_version", POLICY)
    kw.setdefault("now_ns", T0 + S)
    kw.setdefault("keys", KEYS)
    return binding_problem(r, call or action(), **kw)


# -- hashing and grouping ---------------------------------------------------------------------


def test_args_hash_is_canonical() -> None:
    a = args_hash({"b": 1, "a": [1, 2, {"y": None, "x": "é"}]})
    b = args_hash({"a": [1, 2, {"x": "é", "y": None}], "b": 1})
    assert a == b
    assert a.startswith("sha256:") and len(a) == 7 + 64
    assert args_hash({"a": 1}) != args_hash({"a": "1"})
    assert args_hash({"a": 1}) != args_hash({"a": 1, "b": None})


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_args_hash_ignores_key_order(args: dict[str, Any]) -> None:
    assert args_hash(args) == args_hash(dict(reversed(list(args.items()))))


def test_identical_calls_share_a_group_and_any_difference_splits_it() -> None:
    base = group_key(action())
    assert base == group_key(action(args={"body": "hello", "to": "bob@partner.test"}))
    assert base == group_key(action(reason="other words", request="other request"))
    for change in (
        {"agent": "other"},
        {"user": "mallory"},
        {"user": None},
        {"session": "s2"},
        {"session": None},
        {"tool": "send_sms"},
        {"kind": "mcp_request"},
        {"args": {"to": "bob@partner.test", "body": "hello!"}},
    ):
        assert group_key(action(**change)) != base, change


# -- the pending request ----------------------------------------------------------------------


def test_a_request_holds_what_a_reviewer_needs() -> None:
    state = SessionState().with_labels("untrusted").with_call("fetch", "x").with_call("fetch", "y")
    state = state.with_counter("payments", 3)
    call = action(request="mail bob the report", reason="the user asked", state=state)
    req = new_request(
        call,
        decision(),
        request_id="ap-1",
        now_ns=T0,
        timeout_ns=60 * S,
        resources=(Resource("recipient", "bob@partner.test"),),
    )
    assert req.status is Status.PENDING and req.count == 1
    assert (req.created_ns, req.deadline_ns) == (T0, T0 + 60 * S)
    assert (req.agent, req.user, req.session, req.tool) == ("mailer", "alice", "s1", "send_email")
    assert req.args == {"to": "bob@partner.test", "body": "hello"}
    assert req.args_hash == args_hash(call.args)
    assert req.group == group_key(call)
    assert req.resources == (Resource("recipient", "bob@partner.test"),)
    assert (req.request, req.reason) == ("mail bob the report", "the user asked")
    assert req.rules == ("external-mail",)
    assert req.reasons == ("mail leaving the organisation needs a human",)
    assert (req.policy_version, req.decision_id) == (POLICY, "d-1")
    assert req.history == SessionSummary(2, ("untrusted",), (("fetch", 2),), (("payments", 3),))


def test_request_arguments_are_redacted_but_hashed_unredacted() -> None:
    secret = "ghp_" + "a" * 36
    call = action(
        args={"to": "bob@partner.test", "body": "hi", "token": secret, "password": "hunter22!"},
        request=f"use {secret}",
        reason="Authorization: Bearer abcdefghijklmnop",
    )
    req = new_request(
        call,
        decision(obligations=Obligations(redact=("args.body",))),
        request_id="ap-1",
        now_ns=T0,
        timeout_ns=S,
        resources=(Resource("url", "https://u:pa55word@example.com/"),),
    )
    assert req.args["body"] == "[REDACTED]"  # the policy's redact obligation
    assert secret not in repr(req) and "hunter22" not in repr(req)
    assert "abcdefghijklmnop" not in repr(req) and "pa55word" not in repr(req)
    assert req.args["to"] == "bob@partner.test"
    assert req.args_hash == args_hash(call.args)  # the receipt binds to what will run
    assert call.args["body"] == "hi"  # the action itself is untouched


def test_request_redacts_user_request_and_reason_when_the_policy_says_so() -> None:
    call = action(request="private words", reason="private reasoning")
    ob = Obligations(redact=("request", "reason"))
    req = new_request(call, decision(obligations=ob), request_id="ap-1", now_ns=T0, timeout_ns=S)
    assert (req.request, req.reason) == ("[REDACTED]", "[REDACTED]")


def test_summary_of_nothing_is_none() -> None:
    assert summarize(None) is None
    assert summarize(object()) is None
    assert summarize(SessionState()) == SessionSummary()


def test_status_at_counts_a_late_pending_request_as_expired() -> None:
    req = new_request(action(), decision(), request_id="ap-1", now_ns=T0, timeout_ns=S)
    assert req.status_at(T0 + S - 1) is Status.PENDING
    assert req.status_at(T0 + S) is Status.EXPIRED
    done = msgspec.structs.replace(req, status=Status.APPROVED)
    assert done.status_at(T0 + 10 * S) is Status.APPROVED


def test_sessionless_requests_count_per_agent() -> None:
    req = new_request(action(session=None), decision(), request_id="a", now_ns=T0, timeout_ns=S)
    assert req.bucket == "agent:mailer"
    assert new_request(action(), decision(), request_id="a", now_ns=T0, timeout_ns=S).bucket == "s1"


def test_a_plan_request_lists_its_steps_and_is_never_grouped() -> None:
    calls = [
        ("tool_call", "send_email", {"to": "a@x.test", "api_key": "sk-live-abcdefghijklmnopqrstu"}),
        ("tool_call", "archive", {"id": 7}),
    ]
    a = plan_request(
        calls,
        request_id="ap-1",
        agent="mailer",
        user="alice",
        session="s1",
        policy_version=POLICY,
        now_ns=T0,
        timeout_ns=S,
    )
    b = plan_request(
        calls,
        request_id="ap-2",
        agent="mailer",
        user="alice",
        session="s1",
        policy_version=POLICY,
        now_ns=T0,
        timeout_ns=S,
    )
    assert a.kind == "plan" and a.group != b.group
    assert a.steps == (
        Step("tool_call", "send_email", args_hash(calls[0][2])),
        Step("tool_call", "archive", args_hash({"id": 7})),
    )
    assert "sk-live" not in repr(a.plan_args)
    assert a.tool == "send_email, archive"


# -- caps -------------------------------------------------------------------------------------


LIMITS = ApprovalLimits(
    max_pending_per_session=2, max_requests_per_session=5, max_requests_per_window=3, window_s=60
)


def test_under_every_cap_a_request_may_be_asked() -> None:
    assert cap_problem(LIMITS, Counts(1, 4, 2)) is None


@pytest.mark.parametrize(
    ("counts", "named"),
    [
        (Counts(2, 2, 2), "max_pending_per_session=2"),
        (Counts(0, 5, 0), "max_requests_per_session=5"),
        (Counts(0, 0, 3), "max_requests_per_window=3"),
        (Counts(9, 9, 9), "max_pending_per_session=2"),
    ],
)
def test_each_cap_refuses_and_names_itself(counts: Counts, named: str) -> None:
    problem = cap_problem(LIMITS, counts)
    assert problem is not None
    assert problem.startswith("approval cap reached") and named in problem


# -- receipts ---------------------------------------------------------------------------------


def test_a_receipt_binds_to_its_call() -> None:
    r = receipt()
    assert r.kid == key_id(bytes(KEY.verify_key)) and len(bytes.fromhex(r.sig)) == 64
    assert verify_receipt(r, KEYS) is None
    assert bind(r) == ((0,), None)


def test_signed_bytes_are_domain_tagged_and_exclude_the_signature() -> None:
    r = receipt()
    data = receipt_bytes(r)
    assert data.startswith(b"ringfence-approval-receipt/v1\n")
    assert r.sig.encode() not in data
    assert receipt_bytes(msgspec.structs.replace(r, sig="00")) == data


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (action(args={"to": "eve@evil.test", "body": "hello"}), "approval.receipt.arguments"),
        (
            action(args={"to": "bob@partner.test", "body": "hello", "cc": "x"}),
            "approval.receipt.arguments",
        ),
        (action(tool="send_sms"), "approval.receipt.tool"),
        (action(kind="mcp_request"), "approval.receipt.tool"),
        (action(session="s2"), "approval.receipt.session"),
        (action(session=None), "approval.receipt.session"),
        (action(agent="other-agent"), "approval.receipt.agent"),
        (action(user="mallory"), "approval.receipt.user"),
    ],
)
def test_a_receipt_does_not_cover_another_call(call: Action, code: str) -> None:
    steps, problem = bind(receipt(), call)
    assert steps == ()
    assert problem is not None and problem.code == code


def test_a_receipt_is_refused_under_another_policy_version() -> None:
    steps, problem = bind(receipt(), policy_version="sha256:" + "cd" * 32)
    assert steps == () and problem.code == "approval.receipt.policy"


def test_a_receipt_is_refused_from_its_expiry_on() -> None:
    r = receipt()
    assert bind(r, now_ns=r.expires_ns - 1)[1] is None
    for now in (r.expires_ns, r.expires_ns + 1, r.expires_ns + 10**18):
        assert bind(r, now_ns=now)[1].code == "approval.receipt.expired"


def test_a_receipt_issued_in_the_future_is_refused() -> None:
    r = receipt(issued_ns=T0 + 3600 * S, expires_ns=T0 + 7200 * S)
    assert bind(r, now_ns=T0)[1].code == "approval.receipt.malformed"


@pytest.mark.parametrize(
    "change",
    [
        {"expires_ns": T0 + 10**18},
        {"approver": "mallory"},
        {"session": "s2"},
        {"agent": "other"},
        {"policy": "sha256:" + "cd" * 32},
        {"steps": (Step("tool_call", "send_email", args_hash({"to": "eve@evil.test"})),)},
        {"request": "ap-2"},
        {"nonce": "11" * 16},
        {"v": 2},
    ],
)
def test_a_tampered_receipt_fails_its_signature(change: dict[str, Any]) -> None:
    tampered = msgspec.structs.replace(receipt(), **change)
    problem = verify_receipt(tampered, KEYS)
    assert problem is not None and problem.code == "approval.receipt.signature"
    assert bind(tampered)[1].code == "approval.receipt.signature"


def test_a_receipt_signed_by_another_key_is_refused() -> None:
    other = SigningKey(b"\x02" * 32)
    forged = sign_receipt(other, msgspec.structs.replace(receipt(), sig=""))
    assert bind(forged)[1].code == "approval.receipt.signature"
    assert "unknown key" in bind(forged)[1].message
    # Claiming the trusted key's id does not help: the signature does not verify under it.
    claimed = msgspec.structs.replace(forged, kid=receipt().kid)
    assert bind(claimed)[1].message == "receipt signature does not verify"


@pytest.mark.parametrize("sig", ["", "zz", "00" * 64, "ab"])
def test_a_receipt_with_a_malformed_signature_is_refused(sig: str) -> None:
    assert bind(msgspec.structs.replace(receipt(), sig=sig))[1].code == "approval.receipt.signature"


def test_a_receipt_of_another_version_is_refused_even_when_signed() -> None:
    r = receipt(v=2)
    assert bind(r)[1].code == "approval.receipt.malformed"


def test_a_plan_receipt_offers_every_matching_step() -> None:
    call = action()
    step = Step(call.kind, call.tool, args_hash(call.args))
    other = Step("tool_call", "archive", args_hash({"id": 1}))
    r = receipt(steps=(step, other, step))
    assert bind(r, call) == ((0, 2), None)
    assert bind(r, action(tool="archive", args={"id": 1})) == ((1,), None)
    assert bind(r, action(tool="archive", args={"id": 2}))[1].code == "approval.receipt.arguments"


def test_token_round_trip() -> None:
    r = receipt()
    token = encode_receipt(r)
    assert token.startswith("rfa1.") and token.isascii() and "=" not in token
    assert decode_receipt(token) == r


@pytest.mark.parametrize(
    "token",
    [
        "",
        "rfa1.",
        "rfa2." + encode_receipt(receipt())[5:],
        "rfa1.!!!!",
        "rfa1." + "e30",  # {}
        encode_receipt(receipt())[:-10],
    ],
)
def test_a_garbled_token_is_malformed(token: str) -> None:
    problem = decode_receipt(token)
    assert not isinstance(problem, Receipt)
    assert problem.code == "approval.receipt.malformed"


def test_a_token_with_an_extra_field_is_refused() -> None:
    import base64

    body = msgspec.to_builtins(receipt()) | {"uses": 99}
    raw = base64.urlsafe_b64encode(msgspec.json.encode(body)).decode().rstrip("=")
    assert not isinstance(decode_receipt("rfa1." + raw), Receipt)


# -- scopes and records -----------------------------------------------------------------------


def _req(**changes: Any) -> PendingRequest:
    req = new_request(action(), decision(), request_id="ap-1", now_ns=T0, timeout_ns=S)
    return msgspec.structs.replace(req, **changes)


def test_scopes() -> None:
    req = _req()
    assert not Scope().matches(req)  # an empty scope reaches nothing
    assert Scope(everything=True).matches(req)
    assert Scope(agent="mailer").matches(req) and not Scope(agent="x").matches(req)
    assert Scope(tool="send_email").matches(req) and not Scope(tool="send").matches(req)
    assert Scope(session="s1").matches(req) and not Scope(session="s2").matches(req)
    assert Scope(user="alice").matches(req) and not Scope(user="bob").matches(req)
    assert Scope(agent="mailer", session="s1").matches(req)
    assert not Scope(agent="mailer", session="s2").matches(req)
    plan = _req(
        kind="plan", tool="a, b", steps=(Step("tool_call", "a", ""), Step("tool_call", "b", ""))
    )
    assert Scope(tool="b").matches(plan) and not Scope(tool="a, b").matches(plan)


def test_scopes_take_globs_and_the_delegation_chain() -> None:
    req = _req(tool="github__create_issue", delegation=("planner", "mailer"))
    assert Scope(tool="github__*").matches(req) and not Scope(tool="slack__*").matches(req)
    assert Scope(agent="planner").matches(req)  # a sub-agent acting for a killed agent
    assert Scope(agent="mail*").matches(req) and not Scope(agent="x*").matches(req)
    assert Scope(session="s*").matches(req)
    assert not Scope(user="*").matches(_req(user=None))


@pytest.mark.parametrize(
    ("kind", "value", "scope"),
    [
        ("all", None, Scope(everything=True)),
        ("all", "*", Scope(everything=True)),
        ("agent", "mailer", Scope(agent="mailer")),
        ("tool", "github__*", Scope(tool="github__*")),
        ("session", "s1", Scope(session="s1")),
        ("user", "alice", Scope(user="alice")),
        ("tenant", "x", Scope()),  # unknown kinds reach nothing
        ("agent", None, Scope()),
        ("agent", "", Scope()),
    ],
)
def test_scope_of_a_kill(kind: str, value: str | None, scope: Scope) -> None:
    assert Scope.of(kind, value) == scope


def test_receipt_record_carries_the_signed_receipt() -> None:
    r = receipt()
    rec = receipt_record("redeemed", r, action(), decision_id="d-9", time_ns=T0, step=0)
    assert rec["type"] == "receipt" and rec["event"] == "redeemed"
    assert rec["decision_id"] == "d-9" and rec["step"] == 0 and rec["problem"] is None
    assert rec["args_sha256"] == args_hash(action().args)
    assert msgspec.convert(rec["receipt"], Receipt) == r
