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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec

from ringfence.core.action import Action, ActionKind
from ringfence.core.audit.record import approval_record, decision_record, outcome_record
from ringfence.core.decision import Decision, Effect
from ringfence.core.policy.engine import INPUT_RULE, Policy
from ringfence.errors import AuditError, DeniedError, IdentityError
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.binding import make_binder
from ringfence.runtime.ids import IdSource, new_id_source
from ringfence.runtime.ports import ApprovalAnswer, Approver, Clock, SessionStore
from ringfence.runtime.sessions import Sessions

if TYPE_CHECKING:
    from ringfence.runtime.broker import SecretBroker
    from ringfence.runtime.controls import Controls
    from ringfence.runtime.identity import Verifier
    from ringfence.runtime.sandbox.executor import SandboxExecutor

__all__ = ["CallContext", "Enforcement", "Guard"]

log = logging.getLogger("ringfence.guard")
F = TypeVar("F", bound=Callable[..., Any])

AUDIT_RULE = "ringfence:audit"
INTERNAL_RULE = "ringfence:internal"
APPROVAL_RULE = "ringfence:approval"
IDENTITY_RULE = "ringfence:identity"
SECRET_RULE = "ringfence:secret"  # noqa: S105 - a rule id (= runtime.broker.SECRET_RULE)
SANDBOX_RULE = "ringfence:sandbox"  # = runtime.sandbox.executor.SANDBOX_RULE
# Refusals that stop an action in every mode, audit-only included: it could not be decided
# or recorded, or (with a verifier) nobody verifiably asked for it.
_UNRECORDED = frozenset({AUDIT_RULE, INTERNAL_RULE, IDENTITY_RULE})


class Enforcement(StrEnum):
    """How decisions are applied.  There is no mode that allows without deciding and recording."""

    ENFORCE = "enforce"
    UNSAFE_AUDIT_ONLY = "unsafe_audit_only"  # decide and record, but run everything (dry run)


@dataclass(frozen=True)
class CallContext:
    """Who is acting and why, for the actions a Guard builds."""

    agent: str = "anonymous"
    roles: tuple[str, ...] = ()
    user: str | None = None
    delegation: tuple[str, ...] = ()
    session: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    request: str | None = None
    reason: str | None = None
    credential: str | None = field(default=None, repr=False)  # checked by a Verifier


_CONTEXT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "ringfence_context", default=None
)
_result_encoder = msgspec.json.Encoder(enc_hook=repr, order="sorted")
_encode_result = _result_encoder.encode
_sha256 = hashlib.sha256
_perf_ns = time.perf_counter_ns


class Guard:
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
        return self.sessions.state(session).labels

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
            controls = self.controls
            if controls is not None and decision.effect is not Effect.DENY:
                hit = controls.check(action, self._clock())  # never raises; fails closed
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
                time_ns=self._clock(),
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

    def _secret_problem(self, action: Action) -> str | None:
        """Why the secret handles (or values) in ``action`` may not be used, or None."""
        from ringfence.runtime.broker import destinations

        assert self.secrets is not None
        try:
            hosts = destinations(self.policy, action)
            problem = self.secrets.check(action.tool, action.args, hosts)
        except Exception:  # a broker failure is never an allow
            log.exception("secret check failed for %s %r", action.kind, action.tool)
            return "secret.error: the secret check failed"
        return None if problem is None else f"{problem.code}: {problem.message}"

    def _with_secrets(
        self,
        tool: str,
        action: Action,
        decision: Decision,
        a: tuple[Any, ...],
        kw: dict[str, Any],
        started_ns: int,
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's arguments with secret handles replaced by their values, right before
        it runs (the decision, holding only handles, is already on record)."""
        from ringfence.runtime.broker import destinations

        assert self.secrets is not None
        try:
            hosts = destinations(self.policy, action)
            new_a, new_kw = self.secrets.substitute(tool, (list(a), kw), hosts)
        except BaseException as exc:
            self.record_outcome(action, decision, started_ns=started_ns, error=exc)
            raise
        return tuple(new_a), dict(new_kw)

    def _scrubbed(self, exc: BaseException) -> BaseException:
        """``exc``, or a stand-in whose message has the secrets redacted."""
        assert self.secrets is not None
        return self.secrets.scrub(exc)

    def _redacted_ok(self, action: Action, decision: Decision, started_ns: int, result: Any) -> Any:
        """Record a successful call whose result may hold a secret; the result redacted."""
        assert self.secrets is not None
        redaction = self.secrets.redact(result)
        labels: tuple[str, ...] = ()
        if redaction.findings:
            result, labels = redaction.value, ("secret",)
        self.record_outcome(action, decision, started_ns=started_ns, result=result, labels=labels)
        return result

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

    # -- executing ---------------------------------------------------------------------------

    def record_outcome(
        self,
        action: Action,
        decision: Decision,
        *,
        started_ns: int,
        result: Any = None,
        error: BaseException | None = None,
        content: Any = None,
        labels: tuple[str, ...] = (),
    ) -> None:
        """Record what happened when an allowed action ran (ok/error, duration, result hash).

        ``content``, if given, is stored in the record as is (redact it first); ``labels``
        are the session labels the result brought, recorded and added to the session.
        """
        duration = time.perf_counter_ns() - started_ns
        if self.controls is not None:  # circuit breakers learn from outcomes
            self.controls.record(action, error is None, duration, self._clock())
        session = action.session
        if session is not None and error is None:
            declared = self.policy.tools.get(action.tool)
            named = None
            if declared is not None:
                if declared.labels:
                    labels = tuple(sorted({*labels, *declared.labels}))
                named = declared.user_named
            try:
                labels = self.sessions.observed(session, result, labels, named)
            except Exception:
                log.exception("session store failed observing %s", decision.decision_id)
        elif session is not None and labels:
            self.sessions.add_labels(session, labels)
        digest = size = None
        if error is None:
            try:
                data = _result_encoder.encode(result)
            except Exception:
                data = repr(result).encode("utf-8", "replace")
            digest, size = hashlib.sha256(data).hexdigest(), len(data)
        text = "" if error is None else str(error)
        if error is not None and self.secrets is not None:
            text = self.secrets.redact_text(text)  # before cutting: no half-secret kept
        message = None if error is None else f"{type(error).__name__}: {text[:500]}"
        try:
            self.audit.append(
                outcome_record(
                    decision.decision_id,
                    action,
                    time_ns=self._clock(),
                    status="ok" if error is None else "error",
                    duration_ns=duration,
                    result_sha256=digest,
                    result_size=size,
                    error=message,
                    content=content,
                    labels=labels,
                ),
                checked=content is not None,
            )
        except AuditError:
            # The action has already run and its decision is on record; the next check
            # against this log will be refused, so nothing further runs unrecorded.
            log.exception("could not record the outcome of decision %s", decision.decision_id)

    def _record_ok(self, action: Action, decision: Decision, started_ns: int, result: Any) -> None:
        """record_outcome for a plain successful call: the wrappers' hot path (positional)."""
        if action.session is not None:  # the result is observed into the session
            self.record_outcome(action, decision, started_ns=started_ns, result=result)
            return
        duration = _perf_ns() - started_ns
        if self.controls is not None:
            self.controls.record(action, True, duration, self._clock())
        try:
            data = _encode_result(result)
        except Exception:
            data = repr(result).encode("utf-8", "replace")
        try:
            self.audit.append(
                outcome_record(
                    decision.decision_id,
                    action,
                    self._clock(),
                    "ok",
                    duration,
                    _sha256(data).hexdigest(),
                    len(data),
                    None,
                ),
                checked=False,
            )
        except AuditError:
            log.exception("could not record the outcome of decision %s", decision.decision_id)

    @overload
    def protect(self, fn: F, /) -> F: ...

    @overload
    def protect(
        self, *, tool: str | None = None, kind: str = ActionKind.TOOL_CALL
    ) -> Callable[[F], F]: ...

    def protect(  # type: ignore[misc]  # one implementation serves both forms
        self, fn: F | None = None, /, *, tool: str | None = None, kind: str = ActionKind.TOOL_CALL
    ) -> F | Callable[[F], F]:
        """Decorator: every call of the function is checked (all arguments bound) and recorded."""
        if fn is None:
            return lambda f: self.wrap(f, tool=tool, kind=kind)
        return self.wrap(fn, tool=tool, kind=kind)

    def wrap(self, fn: F, *, tool: str | None = None, kind: str = ActionKind.TOOL_CALL) -> F:
        """``fn`` behind this Guard, under the tool name ``tool`` (default: its ``__name__``)."""
        binder = make_binder(fn)
        name: str = tool or str(getattr(fn, "__name__", "tool"))
        guard = self

        identify = guard._verifier is not None

        def admit(a: tuple[Any, ...], kw: dict[str, Any]) -> tuple[Action, Decision]:
            action = guard.action(name, binder(*a, **kw), kind)
            if identify:  # the outcome record must name the verified identity too
                action, decision = guard._identified(action, None)
            else:
                decision = guard._check(action)
            if decision.effect is not Effect.ALLOW and guard._stops(decision):
                raise DeniedError(decision)
            return action, decision

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*a: Any, **kw: Any) -> Any:
                action, decision = (
                    await asyncio.to_thread(admit, a, kw) if guard.approver else admit(a, kw)
                )
                t0 = time.perf_counter_ns()
                if guard.secrets is not None:
                    a, kw = guard._with_secrets(name, action, decision, a, kw, t0)
                try:
                    result = await fn(*a, **kw)
                except BaseException as exc:
                    guard.record_outcome(action, decision, started_ns=t0, error=exc)
                    scrubbed = guard._scrubbed(exc) if guard.secrets is not None else exc
                    if scrubbed is not exc:
                        raise scrubbed from None
                    raise
                if guard.secrets is not None:
                    return guard._redacted_ok(action, decision, t0, result)
                guard._record_ok(action, decision, t0, result)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            action, decision = admit(a, kw)
            t0 = _perf_ns()
            if guard.secrets is not None:
                a, kw = guard._with_secrets(name, action, decision, a, kw, t0)
            try:
                result = fn(*a, **kw)
            except BaseException as exc:
                guard.record_outcome(action, decision, started_ns=t0, error=exc)
                scrubbed = guard._scrubbed(exc) if guard.secrets is not None else exc
                if scrubbed is not exc:
                    raise scrubbed from None
                raise
            if guard.secrets is not None:
                return guard._redacted_ok(action, decision, t0, result)
            guard._record_ok(action, decision, t0, result)
            return result

        return wrapper  # type: ignore[return-value]
