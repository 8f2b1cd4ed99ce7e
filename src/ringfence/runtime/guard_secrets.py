"""The Guard's secret-broker wiring: handles checked before deciding, values substituted late.

:class:`SecretWiring` is a mixin of :class:`~ringfence.runtime.guard.Guard`.  With a
:class:`~ringfence.runtime.broker.SecretBroker`, the secret handles (or raw values) in an
action are checked before the policy is asked (``_secret_problem``; a problem is a deny by
``ringfence:secret``), replaced by their values only right before the protected function runs
(``_with_secrets``: the decision on record holds handles only), and redacted from what comes
back: the result (``_redacted_ok``) and any exception's message (``_scrubbed``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringfence.core.action import Action
    from ringfence.core.decision import Decision

from ringfence.runtime.guard_outcomes import OutcomeRecording

__all__ = ["SecretWiring"]

log = logging.getLogger("ringfence.guard")


class SecretWiring(OutcomeRecording):
    """Guard methods that bring the secret broker into a call (mixin of Guard)."""

    __slots__ = ()

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
