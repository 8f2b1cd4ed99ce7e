"""The Decision: what a policy says about an action, as data.

A decision carries the effect, the ids of the rules that decided, readable reasons, the
obligations attached by those rules, the policy version and a decision id.  ``allowed`` is
the bool helper; :meth:`Decision.raise_for_effect` is the raising helper.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = ["Decision", "Effect", "Obligations"]


class Effect(StrEnum):
    """What happens to an action.  Precedence when combining: deny > require_approval > allow."""

    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"


class Obligations(msgspec.Struct, frozen=True, gc=False):
    """Duties that come with a decision: fields to redact in the audit record, session labels,
    session counters to add to, the sandbox profile the action must run in."""

    # Fields in code-point order: records encode them unsorted.
    counts: tuple[tuple[str, int], ...] = ()  # session counters an allow adds to
    labels: tuple[str, ...] = ()
    redact: tuple[str, ...] = ()
    sandbox: str | None = None  # run only in this sandbox profile (ringfence.runtime.sandbox)

    def __bool__(self) -> bool:
        return bool(self.redact or self.labels or self.counts or self.sandbox)


NO_OBLIGATIONS = Obligations()


class Decision(msgspec.Struct, frozen=True, gc=False):
    """The outcome of evaluating one action against one policy version.

    Positional construction is allowed (the engine uses it: it is several times cheaper);
    callers should prefer keywords.
    """

    effect: Effect
    rules: tuple[str, ...]
    reasons: tuple[str, ...]
    policy_version: str
    decision_id: str = ""
    obligations: Obligations = NO_OBLIGATIONS
    errors: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """True only when the effect is allow."""
        return self.effect is Effect.ALLOW

    def raise_for_effect(self) -> Decision:
        """Return self if allowed; otherwise raise :class:`~ringfence.errors.DeniedError`."""
        if self.effect is not Effect.ALLOW:
            from ringfence.errors import DeniedError

            raise DeniedError(self)
        return self

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict of this decision."""
        out: dict[str, object] = msgspec.to_builtins(self)
        return out
