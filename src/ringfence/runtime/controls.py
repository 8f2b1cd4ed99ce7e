"""Runtime controls: kill switch, rate limits, budgets, circuit breakers, loop limit.

A :class:`Controls` sits beside the policy in the Guard.  ``check(action, now_ns)`` returns
None when nothing stops the action, or ``(rule id, reason)`` naming what did:

``ringfence:kill``     a kill switch covers the action's agent (or one in its delegation
                       chain), tool, session, user, or everything
``ringfence:loop``     the same call (tool and arguments) already allowed ``max_repeats``
                       times among the session's recent calls (``limits.loop``)
``ringfence:breaker``  the tool's circuit breaker is open (or half-open with its probes out)
``ringfence:budget``   a budget's calls, tokens or cost are used up
``ringfence:rate``     a rate limit's bucket is empty
``ringfence:internal`` the store failed (fail closed)

``record(action, ok, duration_ns, now_ns)`` feeds outcomes to the breakers;
``report_usage(...)`` adds tokens and cost to budgets; ``kill`` / ``unkill`` / ``killed``
/ ``kills`` / ``on_kill`` are the kill switch's API (also ``ringfence kill``).

State lives in a :class:`~ringfence.runtime.ports.ControlStore` (SQLite shared by every
process on the machine, or memory).  The per-decision cost when nothing is tripped is one
read of the store's generation word, dictionary lookups, and for each rate limit or call
budget that applies one atomic take from a lease this process holds
(:mod:`ringfence.runtime.leases`).
Kills, used-up budgets and non-closed breakers are re-read only when the generation moves;
a watcher thread also polls it (every ``watch_seconds``) so that kills made elsewhere reach
the ``on_kill`` hooks and the audit log even while no action is being checked.

docs/controls.md is the user-facing description.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ringfence.core.action import Action
from ringfence.core.killswitch import Kill, KillEvent, KillScope, KillSet
from ringfence.core.limits import (
    MICROS,
    NO_LIMITS,
    Breaker,
    BreakerPhase,
    BucketSpec,
    Budget,
    LimitSet,
    Usage,
    breaker_admit,
)
from ringfence.errors import InputError
from ringfence.runtime.breakers import Breakers, breaker_cell
from ringfence.runtime.ids import IdSource, new_id_source
from ringfence.runtime.killswitch import KillSwitch
from ringfence.runtime.leases import LEASE_NS, Lease, Leases
from ringfence.runtime.plans import Plan, Plans
from ringfence.runtime.ports import Cell, Clock, ControlStore

if TYPE_CHECKING:
    from ringfence.runtime.audit import AuditLog

__all__ = [
    "BREAKER_RULE",
    "BUDGET_RULE",
    "KILL_RULE",
    "LOOP_RULE",
    "RATE_RULE",
    "Controls",
    "Hit",
    "open_controls",
]

log = logging.getLogger("ringfence.controls")

KILL_RULE = "ringfence:kill"
LOOP_RULE = "ringfence:loop"
BREAKER_RULE = "ringfence:breaker"
BUDGET_RULE = "ringfence:budget"
_CREDENTIAL_GRACE_NS = 60 * 1_000_000_000  # a spent credential's count outlives it by this
RATE_RULE = "ringfence:rate"
INTERNAL_RULE = "ringfence:internal"  # the Guard's: an internal error is never an allow

POLL_SECONDS = 0.25  # how often the watcher asks a shared store to repair its generation word

Hit = tuple[str, str]
"""``(rule id, reason)``: what stopped an action."""

_encode = msgspec.msgpack.Encoder().encode
_decode_usage = msgspec.msgpack.Decoder(Usage).decode
_decode_breaker = msgspec.msgpack.Decoder(Breaker).decode


def _seconds(ns: int) -> str:
    return f"{max(0, ns) / 1e9:.0f}s" if ns >= 10**9 else f"{max(0, ns) / 1e6:.0f}ms"


class Controls:
    """The kill switch and the limits of one policy over one store; see the module docstring."""

    def __init__(
        self,
        limits: LimitSet = NO_LIMITS,
        *,
        store: ControlStore | None = None,
        audit: AuditLog | None = None,
        clock: Clock = time.time_ns,
        ids: IdSource | None = None,
        watch_seconds: float | None = 0.1,
        lease_ns: int = LEASE_NS,
        owns_store: bool = False,
    ) -> None:
        if store is None:
            from ringfence.stores.controls import MemoryControlStore

            store, owns_store = MemoryControlStore(), True
        self.store = store
        self._limits = limits
        self.learns = bool(limits.breakers)  # whether outcomes matter (record() does work)
        self._clock = clock
        self._owns_store = owns_store
        self._generation = store.generation
        self._plans = Plans(limits)
        self._leases = Leases(store, lease_ns=lease_ns)
        self._breakers = Breakers(store)
        self._refresh_lock = threading.RLock()
        self._switch = KillSwitch(
            store,
            audit=audit,
            clock=clock,
            ids=ids or new_id_source("k"),
            lock=self._refresh_lock,
            refresh=self._refresh,
        )
        self._kills = KillSet()
        self._exhausted: dict[str, str] = {}
        self._open: dict[str, Breaker] = {}
        self._gen = -1
        self._refresh()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if watch_seconds:
            self._watcher = threading.Thread(
                target=self._watch, args=(watch_seconds,), name="ringfence-controls", daemon=True
            )
            self._watcher.start()

    @property
    def audit(self) -> AuditLog | None:
        """Where kills and unkills are recorded (the Guard's log; may be set once made)."""
        return self._switch.audit

    @audit.setter
    def audit(self, log: AuditLog | None) -> None:
        self._switch.audit = log

    @property
    def limits(self) -> LimitSet:
        """The limits this Controls applies (the policy's ``limits:`` section)."""
        return self._limits

    # -- the per-decision check ------------------------------------------------------------

    def check(self, action: Action, now_ns: int) -> Hit | None:
        """What stops ``action`` now, as ``(rule id, reason)``, or None.

        Takes a token from every rate limit and call budget that applies, but only when
        nothing stops the action: a refused call costs no tokens.  Never raises: if the
        store fails, the answer is a deny (``ringfence:internal``).
        """
        try:
            # The common case inline (one call per decision): nothing killed, no limits.
            if self._generation() != self._gen:
                self._refresh()
            kills = self._kills
            if kills:
                kill = kills.hit(
                    action.agent, action.tool, action.session, action.user, action.delegation
                )
                if kill is not None:
                    return KILL_RULE, (
                        f"kill switch on {kill.scope}: {kill.reason or 'no reason given'} "
                        f"(kill {kill.id} by {kill.by})"
                    )
            if not self._limits:
                return None
            plan = self._plans.get(action.kind, action.tool)
            return None if plan is None else self._check_limits(plan, action, now_ns)
        except Exception as exc:
            log.exception("controls failed while checking %s %r", action.kind, action.tool)
            return INTERNAL_RULE, f"limits and kill switch unavailable: {type(exc).__name__}"

    def _check_limits(self, plan: Plan, action: Action, now_ns: int) -> Hit | None:
        loop = plan.loop
        if loop is not None and action.session is not None:
            repeats = getattr(action.state, "repeats", 0)
            if repeats >= loop.max_repeats:
                return LOOP_RULE, (
                    f"loop limit: this exact {action.tool} call was already allowed {repeats} "
                    f"times among the session's recent calls (max_repeats {loop.max_repeats})"
                )
        if self._open:
            for spec, key in plan.breakers:
                state = self._open.get(key)
                if state is not None:
                    hit = self._breaker_hit(spec.id, key, state, action.tool, now_ns)
                    if hit is not None:
                        return hit
        if self._exhausted and plan.usage:
            for budget in plan.usage:
                value = Plans.value(budget.per, action)
                if value is None or not Plans.admits(budget.select, action):
                    continue
                key = f"{budget.key}use|{budget.window(now_ns)[0]}|{value}"
                used = self._exhausted.get(key)
                if used is not None:
                    return BUDGET_RULE, (
                        f"budget {budget.id} ({budget.per}={value}): {used} used"
                        f"{budget.describe_window()}"
                    )
        if not plan.meters:
            return None
        held = self._leases.held
        taken: list[Lease] = []
        agent, user = action.agent, action.user
        for meter in plan.meters:
            field = meter.field
            value = "*" if field is None else getattr(action, field)
            if value is None:
                continue
            select = meter.select
            if select is not None and not select.admits_caller(agent, user):
                continue
            key = meter.prefix + value if meter.budget is None else meter.key(value, now_ns)
            lease = held.get(key)
            # The fast path: one atomic C call on a lease this process holds.
            if lease is None or now_ns >= lease.until or not next(lease.tokens, 0):
                lease = self._leases.take(key, meter.spec, now_ns, meter.expires(now_ns))
                if lease is None:
                    for t in taken:  # all or nothing: a refused call costs no tokens
                        t.put_back()
                    return meter.rule, meter.reason(value)
            taken.append(lease)
        return None

    def _breaker_hit(
        self, breaker_id: str, key: str, state: Breaker, tool: str, now_ns: int
    ) -> Hit | None:
        spec = self._plans.breaker(key)
        if spec is None:
            return None
        if state.phase == BreakerPhase.OPEN and now_ns < state.since_ns + spec.open_ns:
            wait = _seconds(state.since_ns + spec.open_ns - now_ns)
            return BREAKER_RULE, (
                f"circuit breaker {breaker_id} (tool={tool}) is open: {state.why}; "
                f"probing again in {wait}"
            )
        if (
            state.phase == BreakerPhase.HALF_OPEN
            and state.probes >= spec.probes
            and now_ns < state.since_ns + spec.open_ns
        ):
            return BREAKER_RULE, (
                f"circuit breaker {breaker_id} (tool={tool}) is half-open: "
                f"waiting for {state.probes} probe call(s) ({state.why})"
            )
        admitted: list[bool] = []

        def change(data: bytes | None) -> Cell:
            current = Breaker() if data is None else _decode_breaker(data)
            new, ok = breaker_admit(spec, current, now_ns)
            admitted.append(ok)
            return breaker_cell(new)

        self.store.update(key, change)
        if admitted[-1]:
            return None
        return (
            BREAKER_RULE,
            f"circuit breaker {breaker_id} (tool={tool}) is not closed ({state.why})",
        )

    # -- outcomes and usage ----------------------------------------------------------------

    def record(self, action: Action, ok: bool, duration_ns: int, now_ns: int) -> None:
        """Feed the outcome of an allowed action to the breakers that guard its tool.

        Never raises (the action has run already): a store failure is logged.
        """
        if not self._limits.breakers:
            return
        plan = self._plans.get(action.kind, action.tool)
        if plan is None or not plan.breakers:
            return
        try:
            if self._generation() != self._gen:
                self._refresh()
            self._breakers.record(plan.breakers, self._open, ok, duration_ns, now_ns)
        except Exception:
            log.exception("controls failed while recording an outcome of %r", action.tool)

    def spend_credential(
        self, calls: tuple[tuple[str, int | float], ...], until_ns: int, now_ns: int
    ) -> str | None:
        """One call from each credential's ``max_calls`` budget, ``(jti, limit)``, in the
        shared store: every process using it spends from the same budgets (leased like rate
        limits, so a dead process's unspent share is lost, never added).  All or none: the
        jti of the first used-up budget (nothing is taken then), or None.  Store errors
        propagate; the Guard turns them into a deny."""
        taken: list[Lease] = []
        for jti, limit in calls:
            # A fractional limit is rounded down: fewer calls, never more.
            spec = BucketSpec(capacity=max(0, int(limit)), refill=0, window_ns=1000)
            got = self._leases.take(f"cred|{jti}", spec, now_ns, until_ns + _CREDENTIAL_GRACE_NS)
            if got is None:
                for lease_ in taken:
                    lease_.put_back()
                return jti
            taken.append(got)
        return None

    def report_usage(
        self,
        *,
        session: str | None = None,
        agent: str | None = None,
        user: str | None = None,
        tokens: int = 0,
        cost: float | Decimal | int = 0,
        now_ns: int | None = None,
    ) -> list[str]:
        """Add ``tokens`` and ``cost`` to every budget these ids fall under; the ids of the
        budgets that are used up afterwards (their next checks are refused)."""
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise InputError("tokens must be a whole number >= 0", code="input.usage")
        micros = self._micros(cost)
        now = self._clock() if now_ns is None else now_ns
        used_up: list[str] = []
        for budget in self._limits.budgets:
            if budget.tokens is None and budget.cost_micros is None:
                continue
            value = {"session": session, "agent": agent, "user": user, "global": "*"}[budget.per]
            if value is None or not budget.select.admits_caller(agent, user):
                continue
            if budget.select.agents is not None and agent is None:
                continue
            index, end = budget.window(now)
            key = f"{budget.key}use|{index}|{value}"
            if self._add_usage(budget, key, tokens, micros, end) is not None:
                used_up.append(budget.id)
        return used_up

    def _add_usage(
        self, budget: Budget, key: str, tokens: int, micros: int, end: int | None
    ) -> str | None:
        """Add to one usage cell; what is used up afterwards, or None."""
        outcome: list[str | None] = []

        def change(data: bytes | None) -> Cell:
            usage = (Usage() if data is None else _decode_usage(data)).plus(tokens, micros)
            over = budget.exhausted(usage)
            outcome.append(over)
            return Cell(_encode(usage), over is not None, end)

        self.store.update(key, change)
        return outcome[-1]

    @staticmethod
    def _micros(cost: float | Decimal | int) -> int:
        if isinstance(cost, bool) or not isinstance(cost, int | float | Decimal):
            raise InputError("cost must be a number", code="input.usage")
        try:
            micros = Decimal(str(cost)) * MICROS
        except ArithmeticError:
            raise InputError("cost must be a finite number", code="input.usage") from None
        if not micros.is_finite() or micros < 0:
            raise InputError("cost must be a finite number >= 0", code="input.usage")
        return int(micros.to_integral_value())

    # -- kill switch -----------------------------------------------------------------------

    def kill(self, scope: KillScope, reason: str = "", by: str = "unknown") -> Kill:
        """Stop every action in ``scope`` from the next check on, in every process using the
        store, until :meth:`unkill`.  Killing a killed scope returns the kill in force.

        The kill is recorded in this Controls' audit log (if it has one); if that write
        fails the kill is in force all the same and AuditError says the record is missing.
        """
        return self._switch.kill(scope, reason, by)

    def unkill(self, scope: KillScope, reason: str = "", by: str = "unknown") -> KillEvent | None:
        """Lift the kill of exactly ``scope``; None if there was none."""
        return self._switch.unkill(scope, reason, by)

    def killed(
        self,
        *,
        agent: str = "",
        tool: str = "",
        session: str | None = None,
        user: str | None = None,
    ) -> Kill | None:
        """The kill in force for these ids (an action by ``agent`` calling ``tool`` …), or None."""
        if self._generation() != self._gen:
            self._refresh()
        return self._kills.hit(agent, tool, session, user)

    def kills(self) -> tuple[Kill, ...]:
        """Every kill in force."""
        return self.store.kills()

    def on_kill(self, hook: Callable[[Kill], None]) -> None:
        """Call ``hook(kill)`` for every kill made from now on — here, or elsewhere and seen
        by this process (within ``watch_seconds``) — e.g. to cancel pending approvals in its
        scope.  Called once per kill per process; an exception is logged, never raised."""
        self._switch.on_kill(hook)

    # -- refreshing ------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Re-read kills, used-up budgets and open breakers; audit and hook new kill events."""
        with self._refresh_lock:
            generation = self._generation()
            seen = self._switch.load()
            exhausted: dict[str, str] = {}
            opened: dict[str, Breaker] = {}
            for key, data in self.store.flagged().items():
                if key.startswith("breaker|"):
                    opened[key] = _decode_breaker(data)
                elif key.startswith("budget|"):
                    exhausted[key] = self._plans.used_up(key, _decode_usage(data))
            self._kills = self._switch.in_force
            self._exhausted = exhausted
            self._open = opened
            self._gen = generation
        self._switch.announce(seen)

    def _watch(self, interval: float) -> None:
        poll = getattr(self.store, "poll", None)
        polled = time.monotonic()
        while not self._stop.wait(interval):
            try:
                if poll is not None and time.monotonic() - polled >= POLL_SECONDS:
                    polled = time.monotonic()
                    poll()
                if self._generation() != self._gen:
                    self._refresh()
            except Exception:
                log.exception("controls watcher: refresh failed")

    def close(self) -> None:
        """Stop the watcher, return unspent leased tokens, close the store if this owns it."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        try:
            self._leases.give_back(self._clock())
        finally:
            if self._owns_store:
                close = getattr(self.store, "close", None)
                if close is not None:
                    close()

    def __enter__(self) -> Controls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_controls(
    data_dir: str | os.PathLike[str] = ".ringfence",
    limits: LimitSet = NO_LIMITS,
    *,
    store_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Controls:
    """Controls over the SQLite controls store ``data_dir/controls`` (or ``store_dir``: point
    every process that must share kills and limits at the same folder)."""
    from ringfence.stores.controls import SQLiteControlStore

    store = SQLiteControlStore(Path(data_dir) / "controls" if store_dir is None else store_dir)
    try:
        return Controls(limits, store=store, owns_store=True, **options)
    except BaseException:
        store.close()
        raise
