"""Which limits apply to an action: worked out once per (kind, tool), then cached.

A :class:`Plan` lists the loop limit, the breakers guarding the tool (with their state
keys), the budgets that count tokens or cost, and the *meters* — token buckets to take one
token from: rate limits and call budgets.  Agent and user scopes are checked per call
(:meth:`Plans.admits`); everything that depends only on the kind and tool is settled here.

State keys (``LimitStore`` cells):

``rate|<id>@<digest>|<value>``              a rate limit's bucket for one agent/session/…
``budget|<id>@<digest>|calls|<window>|<value>``   a budget's calls (a bucket that never refills)
``budget|<id>@<digest>|use|<window>|<value>``     a budget's tokens and cost (flagged when used up)
``breaker|<id>@<digest>|<tool or *>``       a breaker's shared state (flagged unless closed)

The digest covers the limit's numbers, so a changed limit starts from fresh state; the value
comes last and may contain ``|``.
"""

from __future__ import annotations

from ringfence.core.action import Action
from ringfence.core.limits import (
    BreakerSpec,
    Budget,
    LimitSet,
    LoopLimit,
    RateLimit,
    Selector,
    Usage,
)

__all__ = ["Meter", "Plan", "Plans"]

MAX_PLANS = 10_000
_FIELDS = {"agent": "agent", "session": "session", "tool": "tool", "user": "user"}


class Meter:
    """One bucket an action takes a token from: a rate limit or a budget's calls."""

    __slots__ = ("budget", "field", "limit", "per", "prefix", "rule", "select", "spec")

    def __init__(self, limit: RateLimit | None, budget: Budget | None) -> None:
        self.limit = limit
        self.budget = budget
        if limit is not None:
            self.per, select, self.spec = limit.per, limit.select, limit.bucket
            self.prefix, self.rule = limit.key, "ringfence:rate"
        else:
            assert budget is not None and budget.calls_bucket is not None
            self.per, select, self.spec = budget.per, budget.select, budget.calls_bucket
            self.prefix, self.rule = f"{budget.key}calls|", "ringfence:budget"
        self.select: Selector | None = select if select.by_caller else None
        self.field = _FIELDS.get(self.per)  # the Action attribute counted; None: global

    def key(self, value: str, now_ns: int) -> str:
        """The state key of ``value``'s bucket (a budget's window is part of it)."""
        if self.budget is None:
            return self.prefix + value
        return f"{self.prefix}{self.budget.window(now_ns)[0]}|{value}"

    def expires(self, now_ns: int) -> int | None:
        """When the store may forget the bucket: a budget's window end (None: when full)."""
        return None if self.budget is None else self.budget.window(now_ns)[1]

    def reason(self, value: str) -> str:
        """Why a call was refused by this meter."""
        who = "all callers" if self.per == "global" else f"{self.per}={value}"
        if self.limit is not None:
            return f"rate limit {self.limit.id} ({who}): {self.limit.describe()} exceeded"
        assert self.budget is not None
        return (
            f"budget {self.budget.id} ({who}): all {self.budget.calls} calls used"
            f"{self.budget.describe_window()}"
        )


class Plan:
    """The limits that apply to one (kind, tool)."""

    __slots__ = ("breakers", "loop", "meters", "usage")

    def __init__(
        self,
        loop: LoopLimit | None,
        breakers: tuple[tuple[BreakerSpec, str], ...],
        usage: tuple[Budget, ...],
        meters: tuple[Meter, ...],
    ) -> None:
        self.loop = loop
        self.breakers = breakers
        self.usage = usage
        self.meters = meters


class Plans:
    """Plans per (kind, tool) for one :class:`LimitSet`, and the reverse lookups by key."""

    def __init__(self, limits: LimitSet) -> None:
        self.limits = limits
        self._cache: dict[tuple[str, str], Plan | None] = {}
        self._budgets = {b.key: b for b in limits.budgets}
        self._breakers = {b.key: b for b in limits.breakers}
        self._usage = tuple(b for b in limits.budgets if b.tokens or b.cost_micros)

    def get(self, kind: str, tool: str) -> Plan | None:
        """The plan of ``(kind, tool)``; None if no limit applies to it."""
        try:
            return self._cache[kind, tool]
        except KeyError:
            pass
        plan = self._build(kind, tool)
        if len(self._cache) < MAX_PLANS:
            self._cache[kind, tool] = plan
        return plan

    def _build(self, kind: str, tool: str) -> Plan | None:
        limits = self.limits
        meters = [Meter(r, None) for r in limits.rates if r.select.admits_tool(kind, tool)]
        meters += [Meter(None, b) for b in limits.budgets if b.calls is not None]
        breakers = tuple(
            (b, b.key + (tool if b.per == "tool" else "*"))
            for b in limits.breakers
            if b.select.admits_tool(kind, tool)
        )
        if not (meters or breakers or self._usage or limits.loop):
            return None
        return Plan(limits.loop, breakers, self._usage, tuple(meters))

    @staticmethod
    def value(per: str, action: Action) -> str | None:
        """The value a ``per`` scope counts for ``action`` (None: the limit does not apply)."""
        field = _FIELDS.get(per)
        if field is None:
            return "*"
        value: str | None = getattr(action, field)
        return value

    @staticmethod
    def admits(select: Selector, action: Action) -> bool:
        """The agent / user part of a selector."""
        return select.admits_caller(action.agent, action.user)

    def budget(self, key: str) -> Budget | None:
        """The budget a state key belongs to (None: not one of this policy's)."""
        return self._budgets.get(_prefix(key))

    def breaker(self, key: str) -> BreakerSpec | None:
        """The breaker a state key belongs to (None: not one of this policy's)."""
        return self._breakers.get(_prefix(key))

    def used_up(self, key: str, usage: Usage) -> str:
        """What is used up in a flagged budget cell (``tokens 1200 of 1000``)."""
        budget = self.budget(key)
        text = None if budget is None else budget.exhausted(usage)
        return text or "budget"


def _prefix(key: str) -> str:
    """``budget|id@fp|`` of ``budget|id@fp|use|3|s-1``."""
    first = key.find("|")
    second = key.find("|", first + 1)
    return key[: second + 1]
