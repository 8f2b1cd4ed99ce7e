"""The Guard's approver over an approval queue: plans, earlier answers, asking, waiting.

:class:`QueueApprover` implements the ``Approver`` port.  For a require_approval call:

1. a step of an approved plan for this agent and session that covers the exact call is used;
2. else, if the newest identical request (same agent, user, session, tool and argument hash)
   was approved and its receipt is unused, unexpired and was issued under this policy
   version, the receipt is redeemed; if it was *denied* less than ``remember_denial_s`` ago
   the call is denied again without asking anyone;
3. else the call is submitted: it joins an identical pending request, or becomes a new one
   if the caps allow (beyond a cap: deny, naming it);
4. blocking mode (``wait_s > 0``): the caller waits; approval → the receipt is redeemed for
   this very call and it runs; a "no", a cancel or no answer in time → deny.  Non-blocking mode
   (``wait_s=0``, for the MCP gateway, whose event loop must not block): the answer is a deny
   saying "approval pending: request ap-…"; the client retries the same call after a reviewer
   approved, and step 2 lets it through once.

Every redemption (and every refused one) is written to the Guard's audit log as a ``receipt``
record carrying the whole signed receipt, before the approver returns; if that write fails the
call is denied (the receipt is spent: fail closed).  The Guard itself writes the ``approval``
record for the answer (approver, note with the receipt id) — this module does not.

The approver also records every answer given to the queue — by a reviewer in another
process, a kill switch, a timeout — as an ``approval_answer`` record
(:meth:`ApprovalQueue.record_answers`): when it is bound to a log and a call waits (each time
the store changes), before a receipt is redeemed or refused, and, once :meth:`QueueApprover.watch`
started it (``open_guard`` does), from a background thread within a poll interval of the answer
and once more on :meth:`QueueApprover.close`.  Failing to record an answer never changes a
decision: the answer stays queued, and this process or the next one to open the log records it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ringfence.core.action import Action, Resource
from ringfence.core.approvals import (
    PendingRequest,
    Problem,
    Receipt,
    Status,
    args_hash,
    binding_problem,
    group_key,
    receipt_record,
)
from ringfence.core.decision import Decision
from ringfence.errors import AuditError
from ringfence.runtime.approvals import SYSTEM, ApprovalQueue
from ringfence.runtime.ports import ApprovalAnswer

__all__ = ["Outcome", "QueueApprover"]

log = logging.getLogger("ringfence.approvals")


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


@dataclass(frozen=True)
class Outcome:
    """What :meth:`QueueApprover.resolve` came to: the answer for the Guard, the request it
    concerned (if any), the receipt it used (if any), and whether the request is pending."""

    answer: ApprovalAnswer
    request: str | None = None
    receipt: Receipt | None = None
    pending: bool = False


class QueueApprover:
    """The Guard's ``Approver`` over an :class:`ApprovalQueue`; see the module docstring.

    ``wait_s``: how long a caller waits for an answer (default the queue's
    ``request_timeout_s``); 0 for the non-blocking mode.  ``audit``: where ``receipt`` records
    go (normally the Guard's log; :meth:`bind_audit` sets it later).  ``resources``: how to
    list what a call touches for the reviewer (``policy.resources_of``).
    """

    def __init__(
        self,
        queue: ApprovalQueue,
        *,
        wait_s: float | None = None,
        audit: Any = None,
        resources: Callable[[Action], tuple[Resource, ...]] | None = None,
    ) -> None:
        self.queue = queue
        self.wait_s = queue.limits.request_timeout_s if wait_s is None else wait_s
        self.audit = audit
        self.resources = resources
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._watch_lock = threading.Lock()

    def bind_audit(self, audit: Any) -> None:
        """Write ``receipt`` and ``approval_answer`` records to ``audit`` (an AuditLog) from
        now on; a Guard given this approver calls it with its own log."""
        self.audit = audit

    # -- recording answers ---------------------------------------------------------------------

    def record_answers(self) -> int:
        """Record the answers not yet in the bound audit log now; how many.  Never raises: an
        answer that could not be written stays queued (and the failure is logged)."""
        audit = self.audit
        if audit is None:
            return 0
        try:
            return self.queue.record_answers(audit)
        except AuditError as exc:
            log.warning("approval answers not recorded yet (they stay queued): %s", exc.message)
        except Exception:
            log.exception("approval answers not recorded yet (they stay queued)")
        return 0

    def watch(self, tick_s: float = 0.25) -> None:
        """Record answers now, then from a background thread whenever the approval store
        changes (and every ``tick_s``, for requests running past their deadline), until
        :meth:`close`.  An answer given in another process reaches the log within the store's
        poll interval.  Calling it again does nothing."""
        with self._watch_lock:
            if self._watcher is not None:
                return
            self.record_answers()
            self._watcher = threading.Thread(
                target=self._watch, args=(tick_s,), name="ringfence-approval-answers", daemon=True
            )
            self._watcher.start()

    def _watch(self, tick_s: float) -> None:
        store, queue = self.queue.store, self.queue
        try:
            version = store.version()
            while not self._stop.is_set():
                version = store.wait(version, tick_s)
                if self._stop.is_set() or self.audit is None:
                    continue
                try:
                    queue.record_answers(self.audit)
                except AuditError as exc:
                    # A log that fails (or was closed) keeps failing: stop; answers stay queued.
                    log.warning("approval answers: stopped recording (they stay queued): %s", exc)
                    return
                except Exception:
                    log.exception("approval answers not recorded yet (they stay queued)")
        except Exception:
            log.exception("approval answers: watching the store failed; stopped")

    def close(self) -> None:
        """Stop the watcher and record what is left (before the audit log closes)."""
        self._stop.set()
        watcher = self._watcher
        if watcher is not None:
            watcher.join(timeout=5)
        self.record_answers()

    def __call__(self, action: Action, decision: Decision) -> ApprovalAnswer:
        return self.resolve(action, decision).answer

    def resolve(self, action: Action, decision: Decision) -> Outcome:
        """Answer a require_approval decision (plan, earlier answer, or ask; see the module)."""
        queue = self.queue
        now = queue.clock()
        hashed = args_hash(action.args)
        for plan in queue.store.plans(action.agent, action.session, now):
            assert plan.receipt is not None
            used = self._use(plan.receipt, action, decision, hashed, quiet=True)
            if isinstance(used, Outcome):
                return used
        latest = queue.store.latest(group_key(action, hashed))
        if latest is not None:
            status = latest.status_at(now)
            if status is Status.APPROVED and latest.receipt is not None:
                used = self._use(latest.receipt, action, decision, hashed)
                if isinstance(used, Outcome):
                    return used
            elif status is Status.DENIED and now < (latest.decided_ns or 0) + _ns(
                queue.limits.remember_denial_s
            ):
                return self._denied(latest, again=True)
        submitted = queue.submit(
            action, decision, resources=self._resources(action), timeout_s=self.wait_s or None
        )
        if submitted.request is None:
            return Outcome(ApprovalAnswer(False, SYSTEM, submitted.refused or "approval refused"))
        req = submitted.request
        if self.wait_s <= 0:
            asked = f"; asked {req.count} times" if submitted.joined else ""
            note = (
                f"approval pending: request {req.id}{asked}; a reviewer answers with "
                f"'ringfence approvals approve {req.id}' (or deny); retry the same call once "
                "it is approved"
            )
            return Outcome(ApprovalAnswer(False, SYSTEM, note), req.id, pending=True)
        final = queue.wait(req.id, self.wait_s, on_change=self.record_answers)
        status = final.status_at(queue.clock())
        if status is Status.APPROVED and final.receipt is not None:
            used = self._use(final.receipt, action, decision, hashed)
            if isinstance(used, Outcome):
                return used
            return Outcome(ApprovalAnswer(False, SYSTEM, f"approval unusable: {used.message}"))
        if status in (Status.DENIED, Status.CANCELLED, Status.REVOKED):
            self.record_answers()  # the answer is in the log before the deny
            return self._denied(final, again=False)
        if status is Status.USED:
            note = f"the approval of request {final.id} was used by an identical call"
            return Outcome(ApprovalAnswer(False, SYSTEM, note), final.id)
        if status is Status.EXPIRED:
            queue.expire(final.id)
        self.record_answers()  # the timeout (or the answer) is in the log before the deny
        note = f"no answer within {self.wait_s:g} s (request {final.id}): a timeout is a deny"
        return Outcome(ApprovalAnswer(False, SYSTEM, note), final.id)

    def _resources(self, action: Action) -> tuple[Resource, ...]:
        if self.resources is None:
            return action.resources
        try:
            # The Guard already puts the derived resources on the action: no duplicates.
            return tuple(dict.fromkeys(self.resources(action)))
        except Exception:  # the reviewer sees fewer resources; the decision is unaffected
            log.exception("could not derive resources for the approval request")
            return action.resources

    @staticmethod
    def _denied(req: PendingRequest, *, again: bool) -> Outcome:
        verb = {Status.DENIED: "denied", Status.CANCELLED: "cancelled"}.get(req.status, "revoked")
        text = f"request {req.id} {verb}" + (f": {req.note}" if req.note else "")
        if again:
            text = f"an identical call was {verb} (request {req.id}); not asked again"
        return Outcome(ApprovalAnswer(False, req.decided_by or SYSTEM, text), req.id)

    def _use(
        self,
        receipt: Receipt,
        action: Action,
        decision: Decision,
        hashed: str,
        *,
        quiet: bool = False,
    ) -> Outcome | Problem:
        """Redeem ``receipt`` for this call and record it; an Outcome, or why it was not used
        (a refusal is recorded unless ``quiet``: plans that do not cover a call are normal)."""
        queue = self.queue
        now = queue.clock()
        steps, problem = binding_problem(
            receipt,
            action,
            policy_version=decision.policy_version,
            now_ns=now,
            keys=queue.keys,
            hashed=hashed,
        )
        step = -1
        if problem is None:
            redeemed = queue.store.redeem(
                receipt, steps, decision_id=decision.decision_id, now_ns=now
            )
            if isinstance(redeemed, Problem):
                problem = redeemed
            else:
                step = redeemed
        if problem is not None:
            if not quiet:
                self._record("refused", receipt, action, decision, None, problem.code)
            return problem
        try:
            self._record("redeemed", receipt, action, decision, step, None)
        except AuditError as exc:
            note = f"audit log unavailable: {exc.message}"
            return Outcome(ApprovalAnswer(False, SYSTEM, note), receipt.request, receipt)
        where = f" step {step + 1}/{len(receipt.steps)}" if len(receipt.steps) > 1 else ""
        req = queue.store.get(receipt.request)
        said = f": {req.note}" if req is not None and req.note else ""
        note = f"receipt {receipt.id}{where} (request {receipt.request}){said}"
        return Outcome(ApprovalAnswer(True, receipt.approver, note), receipt.request, receipt)

    def _record(
        self,
        event: str,
        receipt: Receipt,
        action: Action,
        decision: Decision,
        step: int | None,
        problem: str | None,
    ) -> None:
        if self.audit is None:
            return
        self.record_answers()  # the answer comes before its redemption in the log
        record = receipt_record(
            event,
            receipt,
            action,
            decision_id=decision.decision_id,
            time_ns=self.queue.clock(),
            step=step,
            problem=problem,
        )
        if event == "redeemed":
            self.audit.append(record)  # AuditError propagates: the caller denies
            return
        try:
            self.audit.append(record)
        except AuditError:
            log.exception("could not record a refused receipt for %s", decision.decision_id)
