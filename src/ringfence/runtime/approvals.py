"""Human approval at run time: the approval queue (the Python API of approvals).

:class:`ApprovalQueue` is the API over an ``ApprovalStore`` (SQLite, so that
``ringfence approvals approve`` in another process answers a caller that waits here; memory for
tests): submit a request, wait for its answer, approve (which signs a receipt), deny, list,
show, cancel by scope (for the kill switch), and redeem a receipt against a call — the binding
is checked (:func:`ringfence.core.approvals.binding_problem`), then single use is enforced by
the store atomically.  The Guard asks through :class:`ringfence.runtime.approver.QueueApprover`.

A queue without the signing key (``open_approval_queue(..., signing=False)``, for the agent
process) can ask, wait, deny and redeem, but not approve.

Every answer is also an audit record.  The store keeps each answer in an outbox in the same
transaction that makes it (:class:`AnswerOutbox`); whoever holds the audit log calls
:meth:`ApprovalQueue.record_answers`, which appends an ``approval_answer`` record
(:mod:`ringfence.core.audit.answer`) and only then marks the answer audited: a crash between
the two records it twice (recognisably: same request, status and answer time), never zero
times.  The holders are a Guard's :class:`~ringfence.runtime.approver.QueueApprover` and
``ringfence approvals`` when no other process holds the log.

Retention (:class:`Retention`): a finished request — denied, expired, cancelled, revoked, used,
or approved with a receipt that has expired — is deleted with its answers and redeemed steps
once it ended more than ``retention_s`` ago (default :data:`DEFAULT_RETENTION_S`, 30 days)
*and* every answer of it is marked audited; one whose answer has not reached the audit log yet
is kept.  Pending requests and unexpired receipts are never deleted.  The store prunes every
200 writes by itself; :meth:`ApprovalQueue.prune` (``ringfence approvals prune``) does
it all at once.  A retention shorter than the caps' ``window_s`` or ``remember_denial_s``
would let pruning lift a cap or forget a denial early, so it is refused.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from nacl.signing import SigningKey, VerifyKey

from ringfence.core.action import Action, Resource
from ringfence.core.approvals import (
    PLAN_KIND,
    ApprovalLimits,
    PendingRequest,
    Problem,
    Receipt,
    Scope,
    Status,
    Step,
    Submission,
    binding_problem,
    decode_receipt,
    group_key,
    new_request,
    plan_request,
    sign_receipt,
)
from ringfence.core.audit.answer import Answer, answer_record
from ringfence.core.audit.checkpoint import key_id
from ringfence.core.decision import Decision
from ringfence.core.redact import Redactor
from ringfence.errors import ApprovalError, ConfigError
from ringfence.runtime.ports import ApprovalStore, Clock

__all__ = [
    "DEFAULT_RETENTION_S",
    "SYSTEM",
    "AnswerOutbox",
    "ApprovalQueue",
    "AuditSink",
    "Pruned",
    "Redemption",
    "Retention",
    "open_approval_queue",
]

log = logging.getLogger("ringfence.approvals")
SYSTEM = "ringfence"  # the approver named when Ringfence itself answers (cap, timeout, …)
DEFAULT_RETENTION_S = 30 * 86400.0  # finished requests are kept this long (then pruned)


Requests = list[PendingRequest]
Ids = list[str]
Calls = list[tuple[str, str, dict[str, Any]]]  # a plan: [(kind, tool, args), ...]


@runtime_checkable
class AnswerOutbox(Protocol):
    """What an ``ApprovalStore`` adds so that every answer reaches the audit log: each answer
    is queued in the transaction that makes it (both stores here implement it)."""

    def unaudited(self, limit: int = 100) -> list[tuple[int, Answer]]:
        """Queued answers not yet audited, oldest first, as ``(entry id, answer)``."""
        ...

    def mark_audited(self, entries: Collection[int]) -> None:
        """Mark entries as written to the audit log."""
        ...

    def expire_overdue(self, now_ns: int, *, by: str, note: str) -> list[str]:
        """Mark pending requests past their deadline expired, queueing each answer."""
        ...


class Pruned(NamedTuple):
    """What one prune did: finished requests deleted, the answers deleted with them, and
    ``kept``: requests old enough but kept because an answer is not in the audit log yet."""

    requests: int = 0
    answers: int = 0
    kept: int = 0


@runtime_checkable
class Retention(Protocol):
    """What an ``ApprovalStore`` adds to forget finished requests (both stores here)."""

    def prune(self, before_ns: int, *, limit: int = 500) -> Pruned:
        """Delete at most ``limit`` finished requests that ended before ``before_ns`` and whose
        every answer is audited, with their answers and redeemed steps, in one transaction."""
        ...


class AuditSink(Protocol):
    """Where answers are recorded: an :class:`~ringfence.runtime.audit.AuditLog`."""

    def append(self, record: Any) -> int:
        """Append ``record`` durably (AuditError otherwise); its sequence number."""
        ...


class Redemption(NamedTuple):
    """A receipt used for one call: the receipt and which of its steps."""

    receipt: Receipt
    step: int


def _fail(problem: Problem) -> ApprovalError:
    return ApprovalError(problem.message, code=problem.code)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _check_retention(limits: ApprovalLimits, seconds: float) -> None:
    """ApprovalError (``approval.retention``) unless ``seconds`` keeps every answered request
    that the caps and remembered denials still count."""
    floor = max(limits.window_s, limits.remember_denial_s)
    if not seconds >= floor:  # also refuses NaN
        raise ApprovalError(
            f"a retention of {seconds:g} s is shorter than the caps' window_s or "
            f"remember_denial_s ({floor:g} s): pruning would lift a cap or forget a denial",
            code="approval.retention",
        )


class ApprovalQueue:
    """Approval requests over a store, receipts signed with ``key``; see the module docstring.

    ``key`` None: a queue that can ask, wait, deny and redeem but not approve (an agent
    process that must not hold the signing key); it then verifies with ``verify_keys`` only.
    ``verify_keys`` adds keys whose receipts are accepted (the public key; a rotated-out key);
    ``approvers``, when given, is everyone who may answer.  An agent may never answer its own
    request.  Time, ids and nonces come from ``clock``, ``ids`` and ``nonces``.  ``redactor``
    (a Redactor, or a function returning the current one, e.g. a SecretBroker's ``redactor``)
    finds known secret values too; by default common secret formats are redacted.
    """

    def __init__(
        self,
        store: ApprovalStore,
        key: SigningKey | None,
        *,
        limits: ApprovalLimits | None = None,
        verify_keys: Mapping[str, VerifyKey] | None = None,
        approvers: Collection[str] | None = None,
        clock: Clock = time.time_ns,
        ids: Callable[[str], str] | None = None,
        nonces: Callable[[], str] | None = None,
        redactor: Redactor | Callable[[], Redactor] | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or ApprovalLimits()
        self.clock = clock
        self._key = key
        self.keys: dict[str, VerifyKey] = dict(verify_keys or {})
        if key is not None:
            self.keys[key_id(bytes(key.verify_key))] = key.verify_key
        if not self.keys:
            raise ConfigError("an approval queue needs a signing key or a key to verify with")
        self._approvers = None if approvers is None else frozenset(approvers)
        self._ids = ids or (lambda prefix: f"{prefix}-{secrets.token_hex(6)}")
        self._nonces = nonces or (lambda: secrets.token_hex(16))
        self.redactor = redactor
        self._recording = threading.Lock()  # one drain at a time: no answer appended twice

    def _redactor(self) -> Redactor | None:
        red = self.redactor
        return red() if callable(red) else red

    # -- asking --------------------------------------------------------------------------------

    def submit(
        self,
        action: Action,
        decision: Decision,
        *,
        resources: tuple[Resource, ...] = (),
        timeout_s: float | None = None,
    ) -> Submission:
        """Ask for approval of ``action``: joins an identical pending request, or stores a new
        one within the caps (``refused`` names the cap otherwise)."""
        now = self.clock()
        timeout = self.limits.request_timeout_s if timeout_s is None else timeout_s
        request = new_request(
            action,
            decision,
            request_id=self._ids("ap"),
            now_ns=now,
            timeout_ns=_ns(timeout),
            resources=resources,
            redactor=self._redactor(),
        )
        return self.store.submit(request, self.limits, now)

    def submit_plan(
        self,
        calls: Calls,
        *,
        agent: str,
        session: str | None,
        policy_version: str,
        user: str | None = None,
        reason: str | None = None,
        timeout_s: float | None = None,
        limits: bool = True,
    ) -> Submission:
        """Ask for approval of an exact plan, ``[(kind, tool, args), ...]``, in one session."""
        if not calls:
            raise ApprovalError("a plan needs at least one call", code="approval.plan")
        if len(calls) > self.limits.max_plan_steps:
            raise ApprovalError(
                f"a plan of {len(calls)} calls is longer than max_plan_steps "
                f"({self.limits.max_plan_steps})",
                code="approval.plan",
            )
        now = self.clock()
        timeout = self.limits.request_timeout_s if timeout_s is None else timeout_s
        request = plan_request(
            calls,
            request_id=self._ids("ap"),
            agent=agent,
            user=user,
            session=session,
            policy_version=policy_version,
            now_ns=now,
            timeout_ns=_ns(timeout),
            reason=reason,
            redactor=self._redactor(),
        )
        return self.store.submit(request, self.limits if limits else None, now)

    def wait(
        self,
        request_id: str,
        timeout_s: float,
        *,
        on_change: Callable[[], object] | None = None,
    ) -> PendingRequest:
        """The request once answered, or as it stands after ``timeout_s`` (still pending, or
        past its deadline).  Waiting costs a cheap check every few tens of milliseconds;
        ``on_change`` is called whenever the store changed meanwhile (to record answers)."""
        end = time.monotonic() + timeout_s
        version = self.store.version()
        while True:
            req = self.show(request_id)
            remaining = end - time.monotonic()
            if req.status_at(self.clock()) is not Status.PENDING or remaining <= 0:
                return req
            changed = self.store.wait(version, remaining)
            if changed != version and on_change is not None:
                on_change()
            version = changed

    # -- answering -----------------------------------------------------------------------------

    def show(self, request_id: str) -> PendingRequest:
        """The request (ApprovalError ``approval.not_found`` if there is none)."""
        req = self.store.get(request_id)
        if req is None:
            raise ApprovalError(f"no approval request {request_id!r}", code="approval.not_found")
        return req

    def list(self, status: Status | None = Status.PENDING, *, limit: int = 100) -> Requests:
        """Requests with ``status`` (None: all), newest first."""
        return self.store.requests(status=status, limit=limit, now_ns=self.clock())

    def _check_approver(self, req: PendingRequest, approver: str) -> None:
        if not approver.strip():
            raise ApprovalError("the approver must be named", code="approval.approver")
        if approver == req.agent:
            raise ApprovalError(
                f"{approver!r} is the agent that asked: an agent cannot approve its own request",
                code="approval.approver",
            )
        if self._approvers is not None and approver not in self._approvers:
            raise ApprovalError(f"{approver!r} may not answer approvals", code="approval.approver")

    def approve(
        self, request_id: str, approver: str, *, note: str = "", ttl_s: float | None = None
    ) -> Receipt:
        """Approve a pending request: sign and store its receipt, valid for ``ttl_s``."""
        if self._key is None:
            raise ApprovalError(
                "this approval queue holds no signing key (answer with 'ringfence approvals')",
                code="approval.key",
            )
        req = self.show(request_id)
        self._check_approver(req, approver)
        plan = req.kind == PLAN_KIND
        default = self.limits.max_plan_ttl_s if plan else self.limits.receipt_ttl_s
        ttl = default if ttl_s is None else ttl_s
        most = (
            min(self.limits.max_plan_ttl_s, self.limits.max_receipt_ttl_s)
            if plan
            else (self.limits.max_receipt_ttl_s)
        )
        if not 0 < ttl <= most:
            raise ApprovalError(f"ttl must be in (0, {most:g}] seconds", code="approval.ttl")
        now = self.clock()
        steps = req.steps if plan else (Step(req.kind, req.tool, req.args_hash),)
        receipt = sign_receipt(
            self._key,
            Receipt(
                id=self._ids("rc"),
                request=req.id,
                decision=req.decision_id,
                agent=req.agent,
                user=req.user,
                session=req.session,
                steps=steps,
                policy=req.policy_version,
                approver=approver,
                issued_ns=now,
                expires_ns=now + _ns(ttl),
                nonce=self._nonces(),
            ),
        )
        answered = self.store.decide(
            request_id, Status.APPROVED, by=approver, note=note, now_ns=now, receipt=receipt
        )
        if isinstance(answered, Problem):
            raise _fail(answered)
        return receipt

    def deny(self, request_id: str, approver: str, *, note: str = "") -> PendingRequest:
        """Deny a pending request."""
        req = self.show(request_id)
        self._check_approver(req, approver)
        answered = self.store.decide(
            request_id, Status.DENIED, by=approver, note=note, now_ns=self.clock()
        )
        if isinstance(answered, Problem):
            raise _fail(answered)
        return answered

    def approve_plan(
        self,
        calls: Calls,
        *,
        agent: str,
        session: str | None,
        policy_version: str,
        approver: str,
        user: str | None = None,
        note: str = "",
        ttl_s: float | None = None,
    ) -> Receipt:
        """Approve an exact plan written by a reviewer (no request from the agent needed)."""
        submitted = self.submit_plan(
            calls,
            agent=agent,
            session=session,
            policy_version=policy_version,
            user=user,
            reason=note or None,
            limits=False,
        )
        assert submitted.request is not None  # no limits: never refused
        return self.approve(submitted.request.id, approver, note=note, ttl_s=ttl_s)

    def cancel(self, scope: Scope, *, by: str = SYSTEM, note: str = "") -> Ids:
        """Cancel pending and revoke approved-but-unused requests in ``scope``; their ids.
        ``Scope(everything=True)`` reaches all; an empty scope reaches nothing."""
        return self.store.cancel(scope, by=by, note=note, now_ns=self.clock())

    def expire(self, request_id: str) -> PendingRequest | None:
        """Mark a pending request expired (after its waiter gave up); None if it was not."""
        answered = self.store.decide(
            request_id, Status.EXPIRED, by=SYSTEM, note="no answer in time", now_ns=self.clock()
        )
        return None if isinstance(answered, Problem) else answered

    def expire_overdue(self) -> Ids:
        """Mark every pending request past its deadline expired; their ids."""
        outbox = self.store if isinstance(self.store, AnswerOutbox) else None
        if outbox is None:
            return []
        return outbox.expire_overdue(self.clock(), by=SYSTEM, note="no answer in time")

    def record_answers(self, audit: AuditSink, *, batch: int = 100) -> int:
        """Write every answer not yet audited to ``audit`` as an ``approval_answer`` record,
        oldest first, each marked audited only once the log holds it; how many were written.
        Requests past their deadline are marked expired first.  AuditError propagates: what
        was not written stays queued for the next call (here or in the next process)."""
        outbox = self.store if isinstance(self.store, AnswerOutbox) else None
        if outbox is None:
            return 0
        written = 0
        with self._recording:
            self.expire_overdue()
            while entries := outbox.unaudited(batch):
                for entry, answer in entries:
                    # The log first, then the mark: a crash between them repeats the record.
                    audit.append(answer_record(answer, time_ns=self.clock()))
                    outbox.mark_audited((entry,))
                    written += 1
                if len(entries) < batch:
                    break
        return written

    def prune(self, older_than_s: float = DEFAULT_RETENTION_S, *, batch: int = 500) -> Pruned:
        """Delete every finished request that ended more than ``older_than_s`` ago and whose
        answers are all in the audit log (record them first: :meth:`record_answers`), in
        transactions of ``batch``; what was deleted and what was kept."""
        _check_retention(self.limits, older_than_s)
        store = self.store
        if not isinstance(store, Retention):
            return Pruned()
        before = self.clock() - _ns(older_than_s)
        total = Pruned()
        while True:
            done = store.prune(before, limit=batch)
            total = Pruned(total.requests + done.requests, total.answers + done.answers, done.kept)
            if not done.requests:  # (not "fewer than batch": a batch may skip usable receipts)
                return total

    def latest_for(self, action: Action) -> PendingRequest | None:
        """The newest request for exactly this call (agent, user, session, tool, arguments):
        what an adapter shows a client whose call is waiting for approval."""
        return self.store.latest(group_key(action))

    # -- using ---------------------------------------------------------------------------------

    def redeem(
        self,
        receipt: Receipt | str,
        action: Action,
        *,
        policy_version: str,
        decision_id: str = "",
    ) -> Redemption:
        """Use ``receipt`` (or its token) for ``action``: ApprovalError unless it was signed by
        a known key, covers exactly this call (agent, user, session, tool, arguments, policy
        version), has not expired, was not revoked, and this step was not used before."""
        if isinstance(receipt, str):
            decoded = decode_receipt(receipt)
            if isinstance(decoded, Problem):
                raise _fail(decoded)
            receipt = decoded
        now = self.clock()
        steps, problem = binding_problem(
            receipt, action, policy_version=policy_version, now_ns=now, keys=self.keys
        )
        if problem is not None:
            raise _fail(problem)
        step = self.store.redeem(receipt, steps, decision_id=decision_id, now_ns=now)
        if isinstance(step, Problem):
            raise _fail(step)
        return Redemption(receipt, step)


def open_approval_queue(
    data_dir: str | Path = ".ringfence",
    *,
    signing: bool = True,
    limits: ApprovalLimits | None = None,
    poll_s: float = 0.02,
    retention_s: float | None = DEFAULT_RETENTION_S,
    **options: Any,
) -> ApprovalQueue:
    """The approval queue of a data folder: ``approvals.sqlite`` and the receipt key pair in
    ``keys/`` (created if needed), shared by the agent process and ``ringfence approvals``.

    ``signing=False`` (for the agent process) reads only the public key: that process can
    ask, wait and redeem, and needs no read access to the private key.  ``retention_s``: how
    long finished requests are kept before the store prunes them (None: for ever; see the
    module doc); ApprovalError if it is shorter than the caps need.
    """
    from ringfence.stores.approvals import (
        SQLiteApprovalStore,
        load_approval_public_key,
        load_or_create_approval_key,
    )

    if retention_s is not None:
        _check_retention(limits or ApprovalLimits(), retention_s)
    folder = Path(data_dir)
    key: SigningKey | None = None
    if signing:
        key = load_or_create_approval_key(folder / "keys")
    else:
        public = load_approval_public_key(folder / "keys")
        options["verify_keys"] = {key_id(bytes(public)): public, **options.get("verify_keys", {})}
    store = SQLiteApprovalStore(folder / "approvals.sqlite", poll_s=poll_s, retention_s=retention_s)
    return ApprovalQueue(store, key, limits=limits, **options)
