"""The decisions a Guard makes itself, not the policy: refusals and the approval verdict.

:class:`Verdicts` is a mixin of :class:`~ringfence.runtime.guard.Guard`.  ``refuse`` denies
an action under a pseudo-rule id (``ringfence:quarantine``, ``ringfence:identity``, ...)
without asking the policy, and records that decision like any other; ``_approve`` asks the
approver about a ``require_approval`` decision, records the answer, and turns the decision
into an allow or a deny by ``ringfence:approval``.  An approver that fails, answers wrongly
or is missing is a deny; an audit write that fails is a deny by ``ringfence:audit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from ringfence.core.audit.record import approval_record, decision_record
from ringfence.core.decision import Decision, Effect
from ringfence.errors import AuditError
from ringfence.runtime.guard_types import APPROVAL_RULE, AUDIT_RULE
from ringfence.runtime.ports import ApprovalAnswer

if TYPE_CHECKING:
    from ringfence.core.action import Action
    from ringfence.core.policy.engine import Policy
    from ringfence.runtime.audit import AuditLog
    from ringfence.runtime.ids import IdSource
    from ringfence.runtime.ports import Approver, Clock

__all__ = ["Verdicts"]

log = logging.getLogger("ringfence.guard")


class Verdicts:
    """Guard methods that refuse an action or resolve its approval (mixin of Guard)."""

    __slots__ = ()

    # Set by Guard.__init__ (declared here for the type checker only).
    policy: Policy
    audit: AuditLog
    approver: Approver | None
    on_decision: Callable[[Action, Decision], None] | None
    _clock: Clock
    _ids: IdSource

    def refuse(self, action: Action, rule: str, reason: str) -> Decision:
        """Deny ``action`` without consulting the policy, and record that decision.

        For refusals an adapter makes before the policy is asked (a quarantined MCP tool,
        arguments that break the server's own schema): ``rule`` is a pseudo-rule id such as
        ``ringfence:quarantine``.  The record is written like any decision's; if it cannot
        be, the deny stands and says so.
        """
        decision = self._refuse(self._ids(), rule, reason)
        try:
            self.audit.append(
                decision_record(
                    action,
                    decision,
                    action.resources,
                    time_ns=self._clock(),
                    policy_name=self.policy.name,
                    enforced=True,
                ),
                checked=False,
            )
        except AuditError as exc:
            log.error("audit log unavailable while refusing %r: %s", action.tool, exc)
            return self._refuse(
                decision.decision_id, AUDIT_RULE, f"audit log unavailable: {exc.message}"
            )
        if self.on_decision is not None:
            try:
                self.on_decision(action, decision)
            except Exception:
                log.exception("on_decision hook failed for %s", decision.decision_id)
        return decision

    def _refuse(self, decision_id: str, rule: str, reason: str) -> Decision:
        return Decision(
            effect=Effect.DENY,
            rules=(rule,),
            reasons=(reason,),
            policy_version=self.policy.version,
            decision_id=decision_id,
        )

    def _approve(self, action: Action, decision: Decision) -> Decision:
        if self.approver is None:
            answer = ApprovalAnswer(
                False, "ringfence", "approval required but no approver is configured"
            )
        else:
            try:
                answer = self.approver(action, decision)
                if not isinstance(answer, ApprovalAnswer):
                    raise TypeError(
                        f"approver returned {type(answer).__name__}, not ApprovalAnswer"
                    )
            except Exception as exc:
                log.exception("approver failed for %s", decision.decision_id)
                answer = ApprovalAnswer(
                    False, "ringfence", f"approver failed: {type(exc).__name__}"
                )
        try:
            self.audit.append(
                approval_record(
                    decision.decision_id,
                    action,
                    time_ns=self._clock(),
                    approved=answer.approved,
                    approver=answer.approver,
                    note=answer.note,
                ),
                checked=False,
            )
        except AuditError as exc:
            return self._refuse(
                decision.decision_id, AUDIT_RULE, f"audit log unavailable: {exc.message}"
            )
        verdict = "approved" if answer.approved else "not approved"
        reason = f"{verdict} by {answer.approver}" + (f": {answer.note}" if answer.note else "")
        return msgspec.structs.replace(
            decision,
            effect=Effect.ALLOW if answer.approved else Effect.DENY,
            rules=(*decision.rules, APPROVAL_RULE),
            reasons=(*decision.reasons, reason),
        )
