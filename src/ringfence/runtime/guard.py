"""The Guard: check → (approve) → execute → record, for actions and for plain functions.

``guard.check(action)`` decides, asks the approver when the policy requires approval, and
writes the decision to the audit log before it returns; if that write fails the decision is
a deny.  ``guard.protect`` / ``guard.wrap`` put a function behind the same path, binding
*every* argument (positional, keyword, defaults) to its parameter name first.

Identity and context for the actions a Guard builds come from the Guard's defaults and from
``with guard.context(agent=..., user=..., session=...)`` (a contextvar, so it follows
threads and asyncio tasks that copy the context).

With a ``verifier`` (ringfence.runtime.identity), identity is not taken on trust: every check
verifies the credential presented (``guard.check(action, credential)`` or
``guard.context(credential=...)``).  A missing or invalid one, or an action outside its
scope or budget, is a recorded deny by ``ringfence:identity`` with a coded reason; a valid
one sets the action's agent, user, roles, delegation chain and ``credential`` claims.

This module holds the Guard itself: construction, context, and the deciding path
(``check``, identity, policy, controls, sandbox, the decision record).  The rest of the
Guard lives beside it, in mixins it inherits (one class, so no extra call on the hot path):

    guard_types.py     Enforcement, CallContext, the pseudo-rule ids (re-exported here)
    guard_verdicts.py  Verdicts: ``refuse`` and the approval step, ``_approve``
    guard_wrappers.py  Wrapping: ``protect`` / ``wrap`` and their per-call wrappers
    guard_secrets.py   SecretWiring: secret handles checked, substituted and redacted
    guard_outcomes.py  OutcomeRecording (SecretWiring's base): ``record_outcome`` and the
                       wrappers' fast path for a plain successful call, ``_record_ok``
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import msgspec

from ringfence.core.action import Action, ActionKind
from ringfence.core.audit.record import decision_record
from ringfence.core.decision import Decision, Effect
from ringfence.core.policy.engine import INPUT_RULE, Policy
from ringfence.errors import AuditError, DeniedError, IdentityError
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.guard_secrets import SecretWiring

# The pseudo-rule ids are imported from this module too: re-exported as they always were.
from ringfence.runtime.guard_types import APPROVAL_RULE as APPROVAL_RULE  # noqa: PLC0414
from ringfence.runtime.guard_types import AUDIT_RULE as AUDIT_RULE  # noqa: PLC0414
from ringfence.runtime.guard_types import CALL_CONTEXT as _CONTEXT
from ringfence.runtime.guard_types import IDENTITY_RULE as IDENTITY_RULE  # noqa: PLC0414
from ringfence.runtime.guard_types import INTERNAL_RULE as INTERNAL_RULE  # noqa: PLC0414
from ringfence.runtime.guard_types import SANDBOX_RULE as SANDBOX_RULE  # noqa: PLC0414
from ringfence.runtime.guard_types import SECRET_RULE as SECRET_RULE  # noqa: PLC0414
from ringfence.runtime.guard_types import UNRECORDED as _UNRECORDED
from ringfence.runtime.guard_types import CallContext, Enforcement
from ringfence.runtime.guard_verdicts import Verdicts
from ringfence.runtime.guard_wrappers import Wrapping
from ringfence.runtime.ids import IdSource, new_id_source
from ringfence.runtime.ports import Approver, Clock, SessionStore
from ringfence.runtime.sessions import Sessions

if TYPE_CHECKING:
    from ringfence.runtime.broker import SecretBroker
    from ringfence.runtime.controls import Controls
    from ringfence.runtime.identity import Verifier
    from ringfence.runtime.sandbox.executor import SandboxExecutor

__all__ = ["CallContext", "Enforcement", "Guard"]

log = logging.getLogger("ringfence.guard")


class Guard(Wrapping, Verdicts, SecretWiring):
    """Enforces one policy, records to one audit log."""

    def __init__(
        self,
        policy: Policy,
        *,
        audit: AuditLog,
        approver: Approver | None = None,
        agent: str = "anonymous",
        roles: tuple[str, ...] = (),
        user: str | None = None,
        clock: Clock = time.time_ns,
        ids: IdSource | None = None,
        enforcement: Enforcement = Enforcement.ENFORCE,
        on_decision: Callable[[Action, Decision], None] | None = None,
        sessions: SessionStore | None = None,
        tripwires: bool = True,
        verifier: Verifier | None = None,
        controls: Controls | None = None,
        secrets: SecretBroker | None = None,
        sandbox: SandboxExecutor | None = None,
    ) -> None:
        self.policy = policy
        self.on_decision = on_decision
        self.audit = audit
        self.approver = approver
        self._closers: list[Callable[[], None]] = []
        bind = getattr(approver, "bind_audit", None)
        if bind is not None:
            bind(audit)  # the approver's receipt records go to this Guard's log
        # Secret handles are checked before deciding and substituted right before running;
        # every audit record is redacted before it is hashed (runtime/broker.py).
        self.secrets = secrets
        if secrets is not None:
            from ringfence.runtime.broker import install_audit_redaction

            install_audit_redaction(audit, secrets)
        # Where a decision names a sandbox profile, the profile must be runnable here, or
        # the decision is a deny (runtime/sandbox/executor.py).
        self.sandbox = sandbox
        if sandbox is not None:
            sandbox.check_policy(policy)
        self.defaults = CallContext(agent=agent, roles=roles, user=user)
        self._clock = clock
        self._ids = ids or new_id_source()
        self._enforcement = Enforcement(enforcement)
        self._enforced = self._enforcement is Enforcement.ENFORCE
        self.sessions = Sessions(sessions, tripwires=tripwires)
        self._verifier = verifier
        limit_set = getattr(getattr(policy, "spec", None), "limit_set", None)
        if controls is None and limit_set:
            # The policy states limits: they are enforced, per process, unless a shared
            # store is given (ringfence.runtime.controls.open_controls).
            from ringfence.runtime.controls import Controls

            controls = Controls(limit_set, clock=clock, watch_seconds=None)
        if controls is not None and controls.audit is None:
            controls.audit = audit  # kills made through this Guard's controls are recorded
        # Kill switch, rate limits, budgets, breakers, loop limit (runtime/controls.py).
        self.controls = controls
        if not self._enforced:
            log.warning(
                "UNSAFE audit-only mode: decisions are recorded but NOT enforced; "
                "every action will run whatever the policy says"
            )

    @property
    def verifier(self) -> Verifier | None:
        """The credential verifier, if identity is checked; fixed when the Guard is made."""
        return self._verifier

    @property
    def enforcement(self) -> Enforcement:
        """How this Guard applies decisions; fixed when it is made."""
        return self._enforcement

    def closing(self, close: Callable[[], None]) -> None:
        """Call ``close`` when this Guard closes (before its audit log): for components
        opened with it, such as an approval queue's store."""
        self._closers.append(close)

    def close(self) -> None:
        """Close what was registered with :meth:`closing`, the controls, the audit log (final
        signed checkpoint) and the session store."""
        try:
            for closer in reversed(self._closers):
                try:
                    closer()
                except Exception:
                    log.exception("closing %r failed", closer)
            self._closers.clear()
            if self.controls is not None:
                self.controls.close()
            self.audit.close()
        finally:
            close = getattr(self.sessions.store, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- context -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def context(self, **fields: Any) -> Iterator[CallContext]:
        """Set agent / roles / user / session / trace ids / request / reason for this block."""
        base = _CONTEXT.get() or self.defaults
        changes: dict[str, Any] = {
            k: tuple(v) if k in ("roles", "delegation") else v for k, v in fields.items()
        }
        ctx = replace(base, **changes)
        token = _CONTEXT.set(ctx)
        try:
            yield ctx
        finally:
            _CONTEXT.reset(token)

    def session_labels(self, session: str) -> frozenset[str]:
        """Labels the session has gathered so far (obligations, tool results, tripwires)."""
        return self.sessions.labels(session)

    def label_session(self, session: str, labels: tuple[str, ...]) -> None:
        """Add labels to a session (say, ``untrusted`` after a tool returned web content)."""
        if labels:
            self.sessions.add_labels(session, labels)

    def action(self, tool: str, args: dict[str, Any], kind: str = ActionKind.TOOL_CALL) -> Action:
        """An Action for ``tool`` with the current context and the Guard's clock."""
        ctx = _CONTEXT.get() or self.defaults
        # Positional, in Action's field order (kind, tool, args, agent, roles, user,
        # delegation, resources, session, trace_id, span_id, request, reason, time_ns).
        return Action(
            kind,
            tool,
            args,
            ctx.agent,
            ctx.roles,
            ctx.user,
            ctx.delegation,
            (),
            ctx.session,
            ctx.trace_id,
            ctx.span_id,
            ctx.request,
            ctx.reason,
            self._clock(),
        )

    # -- deciding ----------------------------------------------------------------------------

    def check(self, action: Action, credential: str | None = None) -> Decision:
        """Decide ``action``, resolve approval, record the decision durably; never raises.

        With a verifier, ``credential`` (default: the one in :meth:`context`) is verified
        first and the action takes its identity; without one, claims an action carries are
        dropped: they only ever come from a verifier.
        """
        if self._verifier is not None:
            return self._identified(action, credential)[1]
        if action.credential is not None:
            action = msgspec.structs.replace(action, credential=None)
        return self._check(action)

    def _identified(self, action: Action, credential: str | None) -> tuple[Action, Decision]:
        """Verify the credential, take its identity, check scope and budget, then decide."""
        verifier = self._verifier
        assert verifier is not None
        if credential is None:
            credential = (_CONTEXT.get() or self.defaults).credential
        try:
            verified = verifier.verify(credential, self._clock())
            action = verified.identify(action)
            try:
                resources = self.policy.resources_of(action)
            except Exception:  # arguments the policy cannot read: it denies them itself
                problem = None
            else:
                controls = self.controls
                problem = verifier.admit(
                    verified,
                    action.tool,
                    resources,
                    spend=None if controls is None else controls.spend_credential,
                    now_ns=self._clock(),
                )
                if problem is not None:
                    action = msgspec.structs.replace(action, resources=resources)
        except IdentityError as exc:
            problem = exc
        except Exception:  # a verifier failure is never an allow
            log.exception("credential verification failed for %s %r", action.kind, action.tool)
            problem = IdentityError("verification failed", code="credential.error")
        if problem is not None:
            return action, self.refuse(action, IDENTITY_RULE, problem.reason)
        return action, self._check(action)

    def _check(self, action: Action) -> Decision:
        if self.secrets is not None:
            problem = self._secret_problem(action)
            if problem is not None:
                return self.refuse(action, SECRET_RULE, problem)
        decision_id = self._ids()
        try:
            if action.session is not None:
                action = self.sessions.prepare(action)
            decision, resources = self.policy.decide(action, decision_id)
            now = self._clock()
            controls = self.controls
            if controls is not None and decision.effect is not Effect.DENY:
                hit = controls.check(action, now)  # never raises; fails closed
                if hit is not None:  # obligations kept: the record is still redacted
                    decision = msgspec.structs.replace(
                        decision, effect=Effect.DENY, rules=(hit[0],), reasons=(hit[1],)
                    )
            if (
                self.sandbox is not None
                and decision.effect is not Effect.DENY
                and decision.obligations.sandbox is not None
            ):
                refusal = self.sandbox.refusal(action, decision)
                if refusal is not None:  # the profile cannot run here: fail closed
                    decision = msgspec.structs.replace(
                        decision, effect=Effect.DENY, rules=(SANDBOX_RULE,), reasons=(refusal,)
                    )
            record = decision_record(
                action,
                decision,
                resources,
                time_ns=now,
                policy_name=self.policy.name,
                enforced=self._enforced,
            )
            if decision.rules and decision.rules[0] == INPUT_RULE:
                record.args = {"[invalid]": decision.reasons[0]}
            self.audit.append(record, checked=False)
        except AuditError as exc:
            log.error("audit log unavailable, denying %s %r: %s", action.kind, action.tool, exc)
            return self._refuse(decision_id, AUDIT_RULE, f"audit log unavailable: {exc.message}")
        except Exception:  # an internal error is never an allow
            log.exception("internal error while deciding %s %r", action.kind, action.tool)
            return self._refuse(decision_id, INTERNAL_RULE, "internal error while deciding")
        if decision.effect is Effect.REQUIRE_APPROVAL:
            # The reviewer sees the resources the policy derived, not only those named.
            asked = msgspec.structs.replace(action, resources=resources) if resources else action
            decision = self._approve(asked, decision)
        if decision.effect is Effect.ALLOW and action.session is not None:
            try:
                self.sessions.allowed(action, decision)
            except Exception:  # the session store failed: the action must not run uncounted
                log.exception("session store failed for %s", decision.decision_id)
                return self._refuse(decision.decision_id, INTERNAL_RULE, "session store failed")
        if self.on_decision is not None:
            try:
                self.on_decision(action, decision)
            except Exception:  # an observer must not change or break the decision
                log.exception("on_decision hook failed for %s", decision.decision_id)
        if not self._enforced:
            log.warning(
                "UNSAFE audit-only mode: %s %r would be %s (rules %s); NOT enforced [%s]",
                action.kind,
                action.tool,
                decision.effect.value,
                ", ".join(decision.rules),
                decision.decision_id,
            )
        return decision

    def authorize(self, action: Action) -> Decision:
        """:meth:`check`, raising DeniedError unless the action may run."""
        decision = self.check(action)
        if self._stops(decision):
            raise DeniedError(decision)
        return decision

    def _stops(self, decision: Decision) -> bool:
        """Whether ``decision`` keeps the action from running.

        Audit-only mode runs denied actions, but not ones that could not be decided or
        recorded: no mode lets an action run without a decision on record.
        """
        if decision.effect is Effect.ALLOW:
            return False
        return self._enforced or not _UNRECORDED.isdisjoint(decision.rules)
