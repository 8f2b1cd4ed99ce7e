"""Human approval, the pure part: pending requests, signed receipts, grouping, caps and plans.

A ``require_approval`` decision becomes a :class:`PendingRequest` holding what a reviewer
needs: who (agent, roles, user, delegation), what (kind, tool, arguments *after redaction*,
resources), why (the user's request, the model's stated reason, the rules and reasons that
asked for approval) and where the session stands (:class:`SessionSummary`).

An approval is a :class:`Receipt`: an Ed25519-signed statement binding

- the steps it allows, each ``(kind, tool, args_hash)`` (one step for a single call, a
  short list for an approved plan), where ``args_hash`` is ``sha256:`` of the canonical
  JSON (``rf-cjson-1``, the audit encoding) of the *unredacted* arguments;
- the agent, the user and the session the call must come from;
- the policy version it was approved under;
- the approver, the issue time and an expiry; a random nonce; the key id.

:func:`binding_problem` says why a receipt does not cover a call (other arguments, tool,
agent, user, session, policy version, expired, bad signature); single use is enforced by the
store, which records each redeemed ``(receipt id, step)`` once, atomically.

Grouping (OWASP ASI09, approval fatigue): identical requests — same agent, user, session,
kind, tool and argument hash (:func:`group_key`) — share one pending request; the reviewer
sees it once with a count.  :class:`ApprovalLimits` caps requests per session (open and in
total) and per agent per time window; :func:`cap_problem` names the cap a new request breaks.

Nothing here reads a clock, a key file or a random source: times, ids, nonces and keys are
passed in (the runtime's :mod:`ringfence.runtime.approvals` supplies them).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NamedTuple

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ringfence.core.action import Action, Resource
from ringfence.core.audit.checkpoint import key_id
from ringfence.core.audit.record import redact as redact_fields
from ringfence.core.decision import Decision
from ringfence.core.flow import SessionState
from ringfence.core.policy.globs import is_glob, name_regex
from ringfence.core.redact import Redactor

__all__ = [
    "PLAN_KIND",
    "ApprovalLimits",
    "Counts",
    "PendingRequest",
    "Problem",
    "Receipt",
    "Scope",
    "SessionSummary",
    "Status",
    "Step",
    "Submission",
    "args_hash",
    "binding_problem",
    "cap_problem",
    "decode_receipt",
    "encode_receipt",
    "group_key",
    "new_request",
    "plan_request",
    "receipt_bytes",
    "receipt_record",
    "sign_receipt",
    "summarize",
    "verify_receipt",
]

RECEIPT_VERSION = 1
PLAN_KIND = "plan"
_DOMAIN = b"ringfence-approval-receipt/v1\n"
_RECEIPT_PREFIX = "rfa1."
_SKEW_NS = 60 * 10**9  # a receipt issued further in the future than this is refused
_canonical = msgspec.json.Encoder(order="sorted").encode
_DEFAULT_REDACTOR = Redactor()


class Status(StrEnum):
    """Where a request stands.  Only ``pending`` can be answered; only ``approved`` redeemed."""

    PENDING = "pending"
    APPROVED = "approved"  # a receipt was issued and is not used up yet
    DENIED = "denied"
    EXPIRED = "expired"  # nobody answered before its deadline
    CANCELLED = "cancelled"  # withdrawn while pending (kill switch, operator)
    USED = "used"  # every step of its receipt was redeemed
    REVOKED = "revoked"  # approved, then withdrawn before use


class Step(msgspec.Struct, frozen=True, gc=False):
    """One call a receipt allows: action kind, tool, and the hash of its exact arguments."""

    kind: str
    tool: str
    args: str  # args_hash of the arguments


class SessionSummary(msgspec.Struct, frozen=True, gc=False):
    """The session so far, for a reviewer: allowed calls, labels, busiest tools and counters."""

    calls: int = 0
    labels: tuple[str, ...] = ()
    tools: tuple[tuple[str, int], ...] = ()  # most-called first, at most 10
    counters: tuple[tuple[str, int], ...] = ()  # largest first, at most 10


class Receipt(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A signed approval (see the module docstring); ``sig`` is hex Ed25519 over
    :func:`receipt_bytes`.  Carry it as a token with :func:`encode_receipt`."""

    v: int = RECEIPT_VERSION
    id: str
    request: str  # the pending request it answers
    decision: str  # the decision that asked ("" for a plan)
    agent: str
    user: str | None
    session: str | None
    steps: tuple[Step, ...]
    policy: str  # policy version
    approver: str
    issued_ns: int
    expires_ns: int
    nonce: str
    kid: str = ""
    sig: str = ""


class PendingRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One approval request, as stored and shown to a reviewer (arguments already redacted).

    A plan request (``kind == "plan"``) carries its ``steps`` and each step's redacted
    arguments in ``plan_args``; a call request has no steps of its own.
    """

    id: str
    group: str
    status: Status = Status.PENDING
    created_ns: int
    deadline_ns: int  # unanswered by then: expired
    count: int = 1  # identical requests grouped into this one
    decision_id: str
    agent: str
    roles: tuple[str, ...] = ()
    user: str | None = None
    delegation: tuple[str, ...] = ()
    session: str | None = None
    kind: str
    tool: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    args_hash: str
    resources: tuple[Resource, ...] = ()
    request: str | None = None
    reason: str | None = None
    rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    policy_version: str
    history: SessionSummary | None = None
    steps: tuple[Step, ...] = ()
    plan_args: tuple[dict[str, Any], ...] = ()
    decided_by: str | None = None
    decided_ns: int | None = None
    note: str = ""
    receipt: Receipt | None = None

    def status_at(self, now_ns: int) -> Status:
        """The status, with a pending request past its deadline counted as expired."""
        if self.status is Status.PENDING and now_ns >= self.deadline_ns:
            return Status.EXPIRED
        return self.status

    @property
    def bucket(self) -> str:
        """What per-session caps count against (sessionless requests: per agent)."""
        return self.session if self.session is not None else f"agent:{self.agent}"


class ApprovalLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Timeouts, lifetimes and the caps against approval fatigue (seconds, counts)."""

    request_timeout_s: float = 300.0  # how long a request waits for an answer
    receipt_ttl_s: float = 300.0  # default lifetime of a receipt
    max_receipt_ttl_s: float = 3600.0
    max_pending_per_session: int = 5
    max_requests_per_session: int = 50
    max_requests_per_window: int = 20  # per agent
    window_s: float = 3600.0
    remember_denial_s: float = 600.0  # an identical call after a "no" is refused, not re-asked
    max_plan_steps: int = 20
    max_plan_ttl_s: float = 900.0


class Counts(NamedTuple):
    """What caps are checked against, counted by the store inside its transaction."""

    pending_in_session: int
    in_session: int
    in_window: int


class Submission(NamedTuple):
    """What submitting a request came to: the stored request (``joined`` when an identical
    pending one took it in), or ``refused`` naming the cap it would break."""

    request: PendingRequest | None
    joined: bool = False
    refused: str | None = None


class Problem(NamedTuple):
    """Why something was refused: a stable code (``approval.…``) and a readable message."""

    code: str
    message: str


class Scope(msgspec.Struct, frozen=True, kw_only=True):
    """Which requests and receipts a cancel reaches: every given field must match; a value
    may be a name glob (``github__*``), as in a kill switch scope; ``agent`` also matches an
    agent anywhere in the request's delegation chain.  ``everything`` reaches all; an empty
    scope reaches nothing."""

    agent: str | None = None
    tool: str | None = None
    session: str | None = None
    user: str | None = None
    everything: bool = False

    @classmethod
    def of(cls, kind: str, value: str | None = None) -> Scope:
        """The scope of a kill switch scope (``agent``/``tool``/``session``/``user``/``all``)."""
        if kind == "all":
            return cls(everything=True)
        if not value:
            return cls()  # reaches nothing: a kill without a name must not cancel everything
        if kind == "agent":
            return cls(agent=value)
        if kind == "tool":
            return cls(tool=value)
        if kind == "session":
            return cls(session=value)
        if kind == "user":
            return cls(user=value)
        return cls()  # an unknown kind reaches nothing

    def matches(self, req: PendingRequest) -> bool:
        """True if ``req`` is inside this scope (a plan is, if any of its steps' tools is)."""
        if self.everything:
            return True
        if self.agent is None and self.tool is None and self.session is None and self.user is None:
            return False
        if self.agent is not None and not any(
            _name(self.agent, a) for a in (req.agent, *req.delegation)
        ):
            return False
        if self.session is not None and not _name(self.session, req.session):
            return False
        if self.user is not None and not _name(self.user, req.user):
            return False
        if self.tool is not None:
            tools = {s.tool for s in req.steps} if req.kind == PLAN_KIND else {req.tool}
            return any(_name(self.tool, t) for t in tools)
        return True


def _name(pattern: str, value: str | None) -> bool:
    if value is None:
        return False
    if is_glob(pattern):
        return name_regex(pattern).fullmatch(value) is not None
    return pattern == value


# -- hashing and grouping ----------------------------------------------------------------------


def args_hash(args: Mapping[str, Any]) -> str:
    """``sha256:`` + hex SHA-256 of the canonical JSON of ``args`` (keys sorted, compact)."""
    return "sha256:" + hashlib.sha256(_canonical(args)).hexdigest()


def group_key(action: Action, hashed: str | None = None) -> str:
    """Identical requests share this key: agent, user, session, kind, tool, argument hash."""
    digest = hashed or args_hash(action.args)
    parts = [action.agent, action.user, action.session, action.kind, action.tool, digest]
    return "g:" + hashlib.sha256(_canonical(parts)).hexdigest()[:32]


def summarize(state: Any) -> SessionSummary | None:
    """A reviewer's summary of a session state (a SessionState, or a view holding one)."""
    session = getattr(state, "session", state)
    if not isinstance(session, SessionState):
        return None
    tools = sorted(session.tool_calls.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    counters = sorted(session.counters.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    return SessionSummary(
        session.calls, tuple(sorted(session.labels)), tuple(tools), tuple(counters)
    )


# -- requests ----------------------------------------------------------------------------------


def _redacted(
    action: Action, decision: Decision, redactor: Redactor
) -> tuple[dict[str, Any], str | None, str | None]:
    args, request, reason = redact_fields(action, decision.obligations.redact)
    args = redactor.json(args).value
    if request is not None:
        request = redactor.redact_text(request)
    if reason is not None:
        reason = redactor.redact_text(reason)
    return args, request, reason


def new_request(
    action: Action,
    decision: Decision,
    *,
    request_id: str,
    now_ns: int,
    timeout_ns: int,
    resources: tuple[Resource, ...] = (),
    redactor: Redactor | None = None,
) -> PendingRequest:
    """The pending request for ``action`` (arguments redacted: the policy's ``redact``
    obligations, then anything that looks like a secret)."""
    red = redactor or _DEFAULT_REDACTOR
    args, request, reason = _redacted(action, decision, red)
    hashed = args_hash(action.args)
    shown = tuple(Resource(r.type, red.redact_text(r.value)) for r in resources or action.resources)
    return PendingRequest(
        id=request_id,
        group=group_key(action, hashed),
        created_ns=now_ns,
        deadline_ns=now_ns + timeout_ns,
        decision_id=decision.decision_id,
        agent=action.agent,
        roles=action.roles,
        user=action.user,
        delegation=action.delegation,
        session=action.session,
        kind=action.kind,
        tool=action.tool,
        args=args,
        args_hash=hashed,
        resources=shown,
        request=request,
        reason=reason,
        rules=decision.rules,
        reasons=decision.reasons,
        policy_version=decision.policy_version,
        history=summarize(action.state),
    )


def plan_request(
    calls: list[tuple[str, str, dict[str, Any]]],
    *,
    request_id: str,
    agent: str,
    user: str | None,
    session: str | None,
    policy_version: str,
    now_ns: int,
    timeout_ns: int,
    reason: str | None = None,
    redactor: Redactor | None = None,
) -> PendingRequest:
    """A request to approve an exact plan: ``calls`` is ``[(kind, tool, args), ...]``."""
    red = redactor or _DEFAULT_REDACTOR
    steps = tuple(Step(kind, tool, args_hash(args)) for kind, tool, args in calls)
    shown = tuple(red.json(args).value for _, _, args in calls)
    return PendingRequest(
        id=request_id,
        group=f"plan:{request_id}",  # plans are never grouped
        created_ns=now_ns,
        deadline_ns=now_ns + timeout_ns,
        decision_id="",
        agent=agent,
        user=user,
        session=session,
        kind=PLAN_KIND,
        tool=", ".join(dict.fromkeys(s.tool for s in steps)),
        args_hash=args_hash({"steps": [msgspec.to_builtins(s) for s in steps]}),
        reason=None if reason is None else red.redact_text(reason),
        policy_version=policy_version,
        steps=steps,
        plan_args=shown,
    )


def cap_problem(limits: ApprovalLimits, counts: Counts) -> str | None:
    """Which cap a new request would break, naming it; None if it may be asked."""
    if counts.pending_in_session >= limits.max_pending_per_session:
        return (
            f"approval cap reached: {counts.pending_in_session} requests already pending in "
            f"this session (max_pending_per_session={limits.max_pending_per_session})"
        )
    if counts.in_session >= limits.max_requests_per_session:
        return (
            f"approval cap reached: {counts.in_session} requests in this session "
            f"(max_requests_per_session={limits.max_requests_per_session})"
        )
    if counts.in_window >= limits.max_requests_per_window:
        return (
            f"approval cap reached: {counts.in_window} requests by this agent in the last "
            f"{limits.window_s:g} s (max_requests_per_window={limits.max_requests_per_window})"
        )
    return None


# -- receipts ----------------------------------------------------------------------------------


def receipt_bytes(receipt: Receipt) -> bytes:
    """The exact bytes a receipt's signature covers: a domain tag + canonical JSON sans sig."""
    body = msgspec.to_builtins(receipt)
    del body["sig"]
    return _DOMAIN + _canonical(body)


def sign_receipt(key: SigningKey, receipt: Receipt) -> Receipt:
    """``receipt`` with ``kid`` set to ``key``'s id and signed."""
    unsigned = msgspec.structs.replace(receipt, kid=key_id(bytes(key.verify_key)), sig="")
    sig = key.sign(receipt_bytes(unsigned)).signature
    return msgspec.structs.replace(unsigned, sig=sig.hex())


def verify_receipt(receipt: Receipt, keys: Mapping[str, VerifyKey]) -> Problem | None:
    """Why the signature does not hold (unknown key, malformed, forged or tampered), or None."""
    key = keys.get(receipt.kid)
    if key is None:
        return Problem(
            "approval.receipt.signature", f"receipt signed by unknown key {receipt.kid!r}"
        )
    try:
        key.verify(receipt_bytes(receipt), bytes.fromhex(receipt.sig))
    except (BadSignatureError, ValueError):
        return Problem("approval.receipt.signature", "receipt signature does not verify")
    return None


def binding_problem(
    receipt: Receipt,
    action: Action,
    *,
    policy_version: str,
    now_ns: int,
    keys: Mapping[str, VerifyKey],
    hashed: str | None = None,
) -> tuple[tuple[int, ...], Problem | None]:
    """``(steps, None)``: the indexes of the receipt's steps that cover ``action``; or
    ``((), problem)`` naming why the receipt does not.  Single use is the store's job."""
    bad = verify_receipt(receipt, keys)
    if bad is not None:
        return (), bad
    if receipt.v != RECEIPT_VERSION:
        return (), Problem("approval.receipt.malformed", f"receipt version {receipt.v}")
    if now_ns >= receipt.expires_ns:
        return (), Problem("approval.receipt.expired", "receipt has expired")
    if receipt.issued_ns > now_ns + _SKEW_NS:
        return (), Problem("approval.receipt.malformed", "receipt is issued in the future")
    checks = (
        ("agent", receipt.agent, action.agent),
        ("user", receipt.user, action.user),
        ("session", receipt.session, action.session),
    )
    for field, bound, actual in checks:
        if bound != actual:
            return (), Problem(
                f"approval.receipt.{field}", f"receipt is for {field} {bound!r}, not {actual!r}"
            )
    if receipt.policy != policy_version:
        return (), Problem(
            "approval.receipt.policy",
            f"receipt was issued under policy {receipt.policy[:19]}…, "
            f"the policy is now {policy_version[:19]}…",
        )
    digest = hashed or args_hash(action.args)
    tools = [
        i for i, s in enumerate(receipt.steps) if s.kind == action.kind and s.tool == action.tool
    ]
    if not tools:
        return (), Problem("approval.receipt.tool", f"receipt does not cover tool {action.tool!r}")
    steps = tuple(i for i in tools if receipt.steps[i].args == digest)
    if not steps:
        return (), Problem("approval.receipt.arguments", "receipt is for other arguments")
    return steps, None


def encode_receipt(receipt: Receipt) -> str:
    """A receipt as a compact ASCII token (``rfa1.`` + base64url of its JSON)."""
    raw = msgspec.json.encode(receipt)
    return _RECEIPT_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_receipt_decoder = msgspec.json.Decoder(Receipt)


def decode_receipt(token: str) -> Receipt | Problem:
    """The receipt in ``token``, or the problem with it (never raises)."""
    if not token.startswith(_RECEIPT_PREFIX):
        return Problem("approval.receipt.malformed", "not a Ringfence approval receipt")
    body = token[len(_RECEIPT_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return _receipt_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return Problem("approval.receipt.malformed", "receipt token does not decode")


def receipt_record(
    event: str,
    receipt: Receipt,
    action: Action,
    *,
    decision_id: str,
    time_ns: int,
    step: int | None,
    problem: str | None = None,
) -> dict[str, Any]:
    """The audit record (type ``receipt``) of a receipt redeemed or refused for a call.

    It carries the whole signed receipt (who approved what, when, until when, under which
    policy, and the signature), so the log alone proves the approval the call ran under.
    """
    return {
        "v": 1,
        "type": "receipt",
        "ts": time_ns,
        "event": event,  # "redeemed" or "refused"
        "decision_id": decision_id,
        "agent": action.agent,
        "session": action.session,
        "tool": action.tool,
        "args_sha256": args_hash(action.args),
        "step": step,
        "problem": problem,
        "receipt": msgspec.to_builtins(receipt),
    }
