"""The Guard's function wrappers: ``guard.protect`` / ``guard.wrap``.

:class:`Wrapping` is a mixin of :class:`~ringfence.runtime.guard.Guard`.  A wrapped function
binds *every* argument (positional, keyword, defaults) to its parameter name with a binder
generated once (ringfence.runtime.binding), is checked like ``guard.check`` (identity first,
with a verifier), runs only if the decision lets it, and has its outcome recorded.  Each call
is the hot path: the closures call the Guard's methods positionally and directly, with no
further layers.  Coroutine functions get an async wrapper that asks a (blocking) approver in a
worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from ringfence.core.action import ActionKind
from ringfence.core.decision import Effect
from ringfence.errors import DeniedError
from ringfence.runtime.binding import make_binder

if TYPE_CHECKING:
    from ringfence.core.action import Action
    from ringfence.core.decision import Decision
    from ringfence.runtime.guard import Guard

__all__ = ["F", "Wrapping"]

F = TypeVar("F", bound=Callable[..., Any])

_perf_ns = time.perf_counter_ns


class Wrapping:
    """Guard methods that put a function behind the Guard (mixin of Guard)."""

    __slots__ = ()

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
        guard = cast("Guard", self)  # this mixin is only ever part of a Guard

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
                    raised = _failed(guard, action, decision, t0, exc)
                    if raised is not exc:
                        raise raised from None
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
                raised = _failed(guard, action, decision, t0, exc)
                if raised is not exc:
                    raise raised from None
                raise
            if guard.secrets is not None:
                return guard._redacted_ok(action, decision, t0, result)
            guard._record_ok(action, decision, t0, result)
            return result

        return wrapper  # type: ignore[return-value]


def _failed(
    guard: Guard, action: Action, decision: Decision, started_ns: int, exc: BaseException
) -> BaseException:
    """Record a guarded function's failure; what to raise (``exc``, or a copy with secrets
    redacted from its message)."""
    guard.record_outcome(action, decision, started_ns=started_ns, error=exc)
    return guard._scrubbed(exc) if guard.secrets is not None else exc
